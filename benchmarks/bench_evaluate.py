"""Wall time of `irdistill evaluate` against sentence-transformers' InformationRetrievalEvaluator.

Same model (all-MiniLM-L6-v2), same SciFact test data and texts ("title text"), same batch
size, each in a fresh Python process timed from outside (start-up and imports included):

1. `irdistill evaluate` with an empty embedding cache (encodes the corpus);
2. the same command again (embeddings cached: the cached re-run);
3. a script that builds InformationRetrievalEvaluator and calls it on the model.

`--backend` (torch, onnx, onnx-O2, openvino, auto ...; :mod:`irdistill.backends`) is the
encoder's inference backend for the irdistill runs; the JSON records the backend used (``auto``
resolved, from perf.json) and the nDCG@10 it reached.

Usage:  IRDISTILL_DATA=../shared/data python benchmarks/bench_evaluate.py [--backend auto]
Writes eval/results/bench_evaluate.json and eval/results/bench_evaluate.md (or under --results).
Run it on an idle machine: it measures wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--dataset", default="beir/scifact/test")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backend", default="torch", help="the irdistill encoder's inference backend")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the .json / .md (default eval/results)")
    args = parser.parse_args()
    results = Path(args.results)

    with tempfile.TemporaryDirectory(prefix="irdistill-bench-") as tmp:
        env = dict(os.environ, IRDISTILL_CACHE=str(Path(tmp) / "cache"), TOKENIZERS_PARALLELISM="false")
        cli = [
            sys.executable,
            "-m",
            "irdistill.cli.main",
            "-q",
            "evaluate",
            "--model",
            args.model,
            "--dataset",
            args.dataset,
            "--batch-size",
            str(args.batch_size),
            "--backend",
            args.backend,
            "--out",
        ]
        first_s, _ = timed(cli + [str(Path(tmp) / "first")], env)
        perf = json.loads((Path(tmp) / "first" / "perf.json").read_text())
        first_metrics = json.loads((Path(tmp) / "first" / "metrics.json").read_text())["metrics"]
        cached_s, _ = timed(cli + [str(Path(tmp) / "cached")], env)
        cached_metrics = json.loads((Path(tmp) / "cached" / "metrics.json").read_text())["metrics"]
        if cached_metrics != first_metrics:
            raise SystemExit(f"cached run differs: {cached_metrics} vs {first_metrics}")
        st_s, st_out = timed([sys.executable, "-c", ST_SCRIPT, args.model, args.dataset, str(args.batch_size)], env)
        st_scores = json.loads(st_out.strip().splitlines()[-1])

    st_ndcg = next(v for k, v in st_scores.items() if k.endswith("cosine_ndcg@10"))
    result = {
        "irdistill_s": round(first_s, 2),
        "st_evaluator_s": round(st_s, 2),
        "cached_rerun_s": round(cached_s, 2),
        "peak_rss_mb": perf["peak_rss_mb"],
        "ndcg@10": round(first_metrics["ndcg@10"], 4),
        "backend": perf.get("backend") or args.backend,
    }
    details = {
        **result,
        "cached_rerun_fraction": round(cached_s / first_s, 4),
        "speedup_vs_st": round(st_s / first_s, 3),
        "irdistill_ndcg@10": round(first_metrics["ndcg@10"], 4),
        "st_evaluator_ndcg@10": round(st_ndcg, 4),
        "docs_per_second": perf["docs_per_second"],
        "model": args.model,
        "dataset": args.dataset,
        "batch_size": args.batch_size,
        "cpu_count": os.cpu_count(),
    }
    results.mkdir(parents=True, exist_ok=True)
    (results / "bench_evaluate.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"`irdistill evaluate` vs sentence-transformers InformationRetrievalEvaluator: {args.model} on "
        f"{args.dataset}, batch size {args.batch_size}, backend {result['backend']}, {os.cpu_count()} CPU cores, "
        "wall time of a fresh process each. Produced by "
        f"`python benchmarks/bench_evaluate.py{' --backend ' + args.backend if args.backend != 'torch' else ''}`.",
        "",
        "| run | wall s | nDCG@10 |",
        "|---|---|---|",
        f"| irdistill evaluate (empty cache) | {first_s:.1f} | {first_metrics['ndcg@10']:.4f} |",
        f"| irdistill evaluate (cached embeddings) | {cached_s:.1f} | {cached_metrics['ndcg@10']:.4f} |",
        f"| InformationRetrievalEvaluator | {st_s:.1f} | {st_ndcg:.4f} |",
        "",
        f"Cached re-run: {100 * cached_s / first_s:.1f} % of the first run. irdistill vs ST evaluator: "
        f"{st_s / first_s:.2f}x. Peak RSS of the first irdistill run: {perf['peak_rss_mb']:.0f} MiB; "
        f"corpus encoded at {perf['docs_per_second']:.1f} docs/s.",
    ]
    (results / "bench_evaluate.md").write_text("\n".join(lines) + "\n")
    (results / "bench_evaluate_details.json").write_text(json.dumps(details, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
