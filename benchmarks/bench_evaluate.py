"""Wall time of `irdistill evaluate` against sentence-transformers' InformationRetrievalEvaluator.

Same model (all-MiniLM-L6-v2), same SciFact test data and texts ("title text"), same batch
size, each in a fresh Python process timed from outside (start-up and imports included):

1. `irdistill evaluate` with an empty embedding cache (encodes the corpus);
2. the same command again (embeddings cached: the cached re-run);
3. a script that builds InformationRetrievalEvaluator and calls it on the model.

`--backend` (torch, onnx, onnx-O2, openvino, auto ...; :mod:`irdistill.backends`) is the
encoder's inference backend for the headline irdistill runs, `--also` adds rows for more backends
(a quantised one such as onnx-int8 is labelled so); the JSON records the backend used (``auto``
resolved, from perf.json) and the nDCG@10 each reached. Every side runs --repeats times,
interleaved, and the median is kept. Each finished run is kept in bench_evaluate.partial.json
beside the results, so a stopped benchmark resumes at the next run (removed once the table is written).

Usage:  IRDISTILL_DATA=../shared/data python benchmarks/bench_evaluate.py [--backend auto] [--also torch]
Writes eval/results/bench_evaluate.json and eval/results/bench_evaluate.md (or under --results).
Run it on an idle machine: it measures wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from irdistill.paths import write_text_atomic

RESULTS = Path(__file__).resolve().parent.parent / "eval" / "results"

ST_SCRIPT = r"""
import json, sys
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from irdistill.data import load_collection
from irdistill.paths import resolve_model
model_name, dataset, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = load_collection(dataset)
model = SentenceTransformer(resolve_model(model_name))
ev = InformationRetrievalEvaluator(
    queries=c.queries, corpus=dict(zip(c.doc_ids, c.doc_texts())),
    relevant_docs={q: {d for d, r in j.items() if r > 0} for q, j in c.qrels.items()},
    batch_size=batch_size, show_progress_bar=False, write_csv=False, name="scifact",
)
scores = ev(model)
print(json.dumps({k: float(v) for k, v in scores.items()}))
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return seconds, proc.stdout


def _cli(args: argparse.Namespace, backend: str, out: Path) -> list[str]:
    return [
        sys.executable,
        *("-m", "irdistill.cli.main", "-q", "evaluate", "--model", args.model, "--dataset", args.dataset),
        *("--batch-size", str(args.batch_size), "--backend", backend, "--out", str(out)),
    ]


PREPARE_SCRIPT = r"""
import sys
from irdistill.backends import load_model
from irdistill.paths import resolve_model
load_model("sentence-transformer", resolve_model(sys.argv[1]), backend=sys.argv[2])
"""


def measure(args: argparse.Namespace, backends: list[str], tmp: Path, partial: Path) -> tuple[dict, dict]:
    """Every side --repeats times, interleaved (ST evaluator, then each backend, then again), each in
    a fresh process; every irdistill run starts from an empty embedding cache of its own and is
    followed by a cached re-run on that cache.

    A backend's graph export (and ``auto``'s probe) is a one-time cost per model, like downloading
    it: it is made once beforehand, timed on its own (``prepare_s``, the first sitting's), and every
    run's cache links to it. Each finished run is kept in ``partial`` at once, so a stopped
    benchmark resumes at the next run (with the same settings; other settings start afresh).
    """
    config = {k: getattr(args, k) for k in ("model", "dataset", "batch_size", "threads")} | {"backends": backends}
    state: dict = json.loads(partial.read_text()) if partial.is_file() else {}
    if state.get("config") != config:
        state = {
            "config": config,
            "st": {"times": [], "scores": None},
            "runs": {
                b: {"times": [], "cached_times": [], "metrics": None, "perf": None, "prepare_s": None} for b in backends
            },
        }
    elif state["st"]["times"]:
        print(f"resuming: {len(state['st']['times'])} repeat(s) of the ST evaluator kept in {partial}", flush=True)
    st, runs = state["st"], state["runs"]

    def keep() -> None:
        write_text_atomic(partial, json.dumps(state, indent=1))

    base_env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    if args.threads:
        base_env["OMP_NUM_THREADS"] = str(args.threads)
    graphs = tmp / "graphs"
    (graphs / "backends").mkdir(parents=True)
    for backend in backends:
        if backend != "torch":
            seconds, _ = timed(
                [sys.executable, "-c", PREPARE_SCRIPT, args.model, backend], dict(base_env, IRDISTILL_CACHE=str(graphs))
            )
            if runs[backend]["prepare_s"] is None:
                runs[backend]["prepare_s"] = round(seconds, 2)
            print(f"{backend}: graphs exported / auto decided once in {seconds:.1f} s", flush=True)
    for repeat in range(args.repeats):
        if len(st["times"]) <= repeat:
            seconds, out = timed(
                [sys.executable, "-c", ST_SCRIPT, args.model, args.dataset, str(args.batch_size)],
                dict(base_env, IRDISTILL_CACHE=str(tmp / f"st-{repeat}")),
            )
            st["times"].append(seconds)
            st["scores"] = json.loads(out.strip().splitlines()[-1])
            keep()
        for backend in backends:
            side = runs[backend]
            if len(side["times"]) > repeat:
                continue
            cache = tmp / f"cache-{backend}-{repeat}"
            cache.mkdir()
            (cache / "backends").symlink_to(graphs / "backends")
            env = dict(base_env, IRDISTILL_CACHE=str(cache))
            first = tmp / f"{backend}-{repeat}-first"
            seconds, _ = timed(_cli(args, backend, first), env)
            metrics = json.loads((first / "metrics.json").read_text())["metrics"]
            cached = tmp / f"{backend}-{repeat}-cached"
            cached_s, _ = timed(_cli(args, backend, cached), env)
            if json.loads((cached / "metrics.json").read_text())["metrics"] != metrics:
                raise SystemExit(f"{backend}: the cached re-run's metrics differ from the first run's")
            side["times"].append(seconds)
            side["cached_times"].append(cached_s)
            side["metrics"], side["perf"] = metrics, json.loads((first / "perf.json").read_text())
            keep()
            shutil.rmtree(cache, ignore_errors=True)
            st_s = st["times"][repeat]
            print(f"repeat {repeat + 1}: {backend} {seconds:.1f} s (ST evaluator {st_s:.1f} s)", flush=True)
    return st, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--dataset", default="beir/scifact/test")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backend", default="auto", help="the irdistill encoder's inference backend (the headline)")
    parser.add_argument(
        "--also", nargs="*", default=[], help="more backends measured as extra rows (e.g. torch onnx-int8)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process runs per side (>= 1); median kept")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of every side (default: unset)")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the .json / .md (default eval/results)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    results = Path(args.results)
    backends = list(dict.fromkeys([args.backend, *args.also]))

    partial = results / "bench_evaluate.partial.json"
    with tempfile.TemporaryDirectory(prefix="irdistill-bench-") as tmp:
        st, runs = measure(args, backends, Path(tmp), partial)

    st_s = statistics.median(st["times"])
    st_ndcg = next(v for k, v in st["scores"].items() if k.endswith("cosine_ndcg@10"))
    rows = {}
    for backend, side in runs.items():
        first_s = statistics.median(side["times"])
        rows[backend] = {
            "backend_used": side["perf"].get("backend") or backend,
            "irdistill_s": round(first_s, 2),
            "cached_rerun_s": round(statistics.median(side["cached_times"]), 2),
            "ratio_to_st": round(first_s / st_s, 3),
            "ndcg@10": round(side["metrics"]["ndcg@10"], 4),
            "peak_rss_mb": side["perf"]["peak_rss_mb"],
            "docs_per_second": side["perf"]["docs_per_second"],
            "times": [round(t, 2) for t in side["times"]],
            "prepare_s": side["prepare_s"] or 0.0,
        }
    head = rows[args.backend]
    result = {
        "irdistill_s": head["irdistill_s"],
        "st_evaluator_s": round(st_s, 2),
        "cached_rerun_s": head["cached_rerun_s"],
        "peak_rss_mb": head["peak_rss_mb"],
        "ndcg@10": head["ndcg@10"],
        "backend": head["backend_used"],
        "ratio_to_st": head["ratio_to_st"],
        "st_evaluator_ndcg@10": round(st_ndcg, 4),
        "st_evaluator_times": [round(t, 2) for t in st["times"]],
        "repeats": args.repeats,
        "backends": rows,
        "model": args.model,
        "dataset": args.dataset,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
    }
    results.mkdir(parents=True, exist_ok=True)
    (results / "bench_evaluate.json").write_text(json.dumps(result, indent=2) + "\n")
    command = (
        f"python benchmarks/bench_evaluate.py --backend {args.backend}"
        + (f" --also {' '.join(args.also)}" if args.also else "")
        + f" --repeats {args.repeats}"
        + (f" --threads {args.threads}" if args.threads else "")
    )
    lines = [
        f"`irdistill evaluate` vs sentence-transformers InformationRetrievalEvaluator: {args.model} on "
        f"{args.dataset}, batch size {args.batch_size}, {os.cpu_count()} CPU cores, wall time of a fresh "
        f"process each (imports included), median of {args.repeats} interleaved runs per side; every irdistill "
        f"run starts from an empty embedding cache. Produced by `{command}`.",
        "",
        "| run | backend | wall s (median) | x ST evaluator | cached re-run s | nDCG@10 | peak RSS MiB "
        "| one-time export s |",
        "|---|---|---|---|---|---|---|---|",
        f"| InformationRetrievalEvaluator | torch | {st_s:.1f} | 1.00 | | {st_ndcg:.4f} | | |",
    ]
    for backend, row in rows.items():
        quantised = " (int8, quantised)" if "int8" in row["backend_used"] else ""
        lines.append(
            f"| irdistill evaluate --backend {backend} | {row['backend_used']}{quantised} | {row['irdistill_s']:.1f} "
            f"| {row['ratio_to_st']:.2f} | {row['cached_rerun_s']:.1f} | {row['ndcg@10']:.4f} "
            f"| {row['peak_rss_mb']:.0f} | {row['prepare_s']:.1f} |"
        )
    lines += [
        "",
        f"Headline (--backend {args.backend}, ran {head['backend_used']}): {head['ratio_to_st']:.2f}x the ST "
        f"evaluator's wall time, nDCG@10 {head['ndcg@10']:.4f} (ST evaluator {st_ndcg:.4f}).",
    ]
    (results / "bench_evaluate.md").write_text("\n".join(lines) + "\n")
    partial.unlink(missing_ok=True)  # the table holds every run now
    print("\n".join(lines))


if __name__ == "__main__":
    main()
