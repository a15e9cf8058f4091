"""Time and peak memory of every stage at a fraction of the MS MARCO passage shape.

MS MARCO passage: 8,841,823 passages, 502,939 train queries, 6,980 dev queries and published
teacher-score files of about 40M ``score_pos score_neg qid pid_pos pid_neg`` lines. This script
writes a collection of that shape times ``--fraction`` (random words with MS MARCO's lengths:
passages of 20 to 110 words, queries of 3 to 10), one judged passage per train and dev query, a
teacher-score TSV of 40M x fraction lines, random 384-d passage vectors (where encoding would
take days on a CPU) and a 6,980 x 1,000 dev run (the full dev shape at every fraction). Then it
runs each stage through the public API in a fresh process and records its wall time and peak
resident memory (``ru_maxrss`` of the child):

- ``import_scores``: :func:`irdistill.scores.msmarco.import_msmarco_scores` of the score TSV
  into the store ``scores.parquet`` (what ``irdistill import-scores`` runs);
- ``corpus_store``: the first :func:`irdistill.data.load_collection` of a collection builds its
  memory-mapped corpus store from ``collection.tsv`` (:mod:`irdistill.data.store`): this stage
  builds it from scratch;
- ``open_corpus``: :func:`irdistill.data.load_collection` of the collection (train split), its
  store already built, then the texts of 10,000 random passages fetched by row;
- ``build_training_data``: the Margin-MSE training rows from the imported store
  (:func:`irdistill.workflows.training.build_train_dataset`, random sampler, one epoch);
- ``ivfpq_build``: an IVF-PQ index (m=48, the library's defaults: nlist = 4 sqrt(n), trained on
  64 points a list, coarse level by two-level k-means from 1024 lists up) filled block by block
  with the vectors, read from a memory map;
- ``evaluate``: ranx metrics of the 6,980 x 1,000 run (:func:`irdistill.evaluation.evaluate_run`);
- ``main_job``: the README's main job on SciFact (fraction 1.0), read from
  ``eval/results/fresh_run.json`` (``benchmarks/fresh_run.sh`` measures it; it takes an hour).

``seconds_full`` and ``peak_rss_gib_full`` extrapolate linearly to the full shape: time / F, and
the memory above a bare interpreter with the package imported (measured as stage ``baseline``)
divided by F. ``evaluate`` is already at full shape (factor 1). A stage that runs past
``--timeout`` is recorded with ``"timed_out": true`` and the time it was given.

Usage::

    python benchmarks/bench_scale.py --fraction 0.1 [--stages import_scores open_corpus ...]

Resumable: every (stage, fraction) is written to ``eval/results/bench_scale.json`` as soon as it
is measured and skipped when present (``--again`` measures again); the generated data stay under
``--work`` (default ``runs/bench_scale``) for the next sitting.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results"
FULL = {"passages": 8_841_823, "train_queries": 502_939, "dev_queries": 6_980, "score_lines": 40_000_000}
DIM = 384
STAGES = ("baseline", "import_scores", "corpus_store", "open_corpus", "build_training_data", "ivfpq_build", "evaluate")
FULL_SHAPE_STAGES = {"evaluate"}  # measured at the full dev shape whatever the fraction
# the goals at the full shape: (peak RSS GiB, seconds); ivfpq_build's memory goal is beyond
# the memory-mapped vectors
GOALS: dict[str, tuple[float, float | None]] = {
    "import_scores": (2.0, 300.0),
    "open_corpus": (1.0, None),
    "build_training_data": (4.0, None),
    "ivfpq_build": (6.0, 1200.0),
    "evaluate": (5.0, None),
    "main_job": (3.0, None),
}


# --------------------------------------------------------------------------------------------
# synthetic data


def _words(rng: np.random.Generator, vocabulary: np.ndarray, lengths: np.ndarray) -> list[str]:
    ids = rng.integers(0, len(vocabulary), size=int(lengths.sum()))
    out, start = [], 0
    for n in lengths:
        out.append(" ".join(vocabulary[ids[start : start + n]]))
        start += n
    return out


def generate(folder: Path, fraction: float, seed: int = 0) -> dict[str, int]:
    """Write the collection, qrels, score TSV, vectors and dev run of one fraction (once)."""
    shape = {k: max(1, int(v * fraction)) for k, v in FULL.items()}
    shape["dev_queries"] = FULL["dev_queries"]
    done = folder / "shape.json"
    if done.is_file() and json.loads(done.read_text()) == shape:
        return shape
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocabulary = np.array(["".join(rng.choice(letters, size=rng.integers(3, 10))) for _ in range(30_000)])
    n, block = shape["passages"], 200_000
    with (folder / "collection.tsv").open("w", encoding="utf-8") as out:
        for start in range(0, n, block):
            count = min(block, n - start)
            texts = _words(rng, vocabulary, rng.integers(20, 111, size=count))
            out.writelines(f"{start + i}\t{t}\n" for i, t in enumerate(texts))
    for split, count, offset in (("train", shape["train_queries"], 0), ("dev", shape["dev_queries"], 10_000_000)):
        texts = _words(rng, vocabulary, rng.integers(3, 11, size=count))
        with (folder / f"queries.{split}.tsv").open("w", encoding="utf-8") as out:
            out.writelines(f"{offset + i}\t{t}\n" for i, t in enumerate(texts))
        positives = rng.integers(0, n, size=count)
        with (folder / f"qrels.{split}.tsv").open("w", encoding="utf-8") as out:
            out.writelines(f"{offset + i}\t0\t{p}\t1\n" for i, p in enumerate(positives))
        if split == "train":
            train_positives = positives
    lines, per_query = shape["score_lines"], max(1, shape["score_lines"] // shape["train_queries"])
    with (folder / "scores.tsv").open("w", encoding="utf-8") as out:
        for start in range(0, lines, 1_000_000):
            count = min(1_000_000, lines - start)
            rows = (start + np.arange(count)) // per_query % shape["train_queries"]
            pos, neg = train_positives[rows], rng.integers(0, n, size=count)
            neg = np.where(neg == pos, (neg + 1) % n, neg)  # a query's positive is never its negative
            # a pair's score is a function of (query, passage), as in a real file: the same pair on
            # two lines has the same score
            s_pos = 2.0 + (rows % 97) / 97.0
            s_neg = ((rows * 2_654_435_761 + neg) % 10_007) / 10_007.0 * 2.0 - 1.0
            out.writelines(
                f"{a:.4f}\t{b:.4f}\t{q}\t{p}\t{m}\n" for a, b, q, p, m in zip(s_pos, s_neg, rows, pos, neg, strict=True)
            )
    vectors = np.lib.format.open_memmap(folder / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, DIM))
    for start in range(0, n, block):
        vectors[start : start + block] = rng.standard_normal((min(block, n - start), DIM), dtype=np.float32)
    vectors.flush()
    del vectors
    dev_run = rng.integers(0, n, size=(shape["dev_queries"], 1000))
    np.save(folder / "dev_run.npy", dev_run)
    done.write_text(json.dumps(shape))
    return shape


# --------------------------------------------------------------------------------------------
# stages, each run in a fresh process (``--stage NAME --work DIR``)


def run_stage(name: str, folder: Path) -> None:
    import irdistill  # noqa: F401  (the baseline: the interpreter with the package imported)

    os.environ["IRDISTILL_CACHE"] = str(folder / "cache")  # the corpus store lives with the data

    if name == "import_scores":
        from irdistill.scores.msmarco import import_msmarco_scores

        import_msmarco_scores(folder / "scores.tsv", folder / "scores.parquet", teacher="synthetic")
    elif name == "corpus_store":
        import shutil

        from irdistill.data.msmarco import passage_records
        from irdistill.data.store import cached_corpus_store, store_folder

        shutil.rmtree(store_folder(""), ignore_errors=True)  # build from the TSV, as on first use
        tsv = folder / "collection.tsv"
        assert len(cached_corpus_store(tsv, passage_records(tsv), name=folder.name)) > 0
    elif name == "open_corpus":
        from irdistill.data import load_collection

        collection = load_collection(folder, split="train")
        rows = np.random.default_rng(0).integers(0, len(collection.corpus), size=10_000)
        assert all(collection.corpus.texts(rows))  # text fetched by row, as a training batch does
    elif name == "build_training_data":
        from irdistill.data import load_collection
        from irdistill.workflows.training import TrainConfig, build_train_dataset

        if not (folder / "scores.parquet").is_file():
            raise SystemExit("run import_scores first: it writes the store this stage reads")
        cfg = TrainConfig(
            student="unused",
            dataset=str(folder),
            split="train",
            scores=str(folder / "scores.parquet"),
            loss="margin-mse",
            sampler="random",
            out=str(folder / "unused"),
        )
        dataset, _ = build_train_dataset(cfg, load_collection(folder, split="train"))
        assert len(dataset) > 0
    elif name == "ivfpq_build":
        from irdistill.indexes import IVFPQIndex

        vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        index = IVFPQIndex(DIM, m=48, device="cpu")
        index.add(vectors)
    elif name == "evaluate":
        from irdistill.evaluation import evaluate_run

        run_ids = np.load(folder / "dev_run.npy")
        offset = 10_000_000
        qrels: dict[str, dict[str, int]] = {}
        for line in (folder / "qrels.dev.tsv").read_text().splitlines():
            qid, _, pid, rel = line.split("\t")
            qrels.setdefault(qid, {})[pid] = int(rel)
        scores = np.linspace(1.0, 0.0, run_ids.shape[1])
        run = {
            str(offset + i): {str(p): float(s) for p, s in zip(row, scores, strict=True)}
            for i, row in enumerate(run_ids)
        }
        evaluate_run(qrels, run, ["ndcg@10", "recall@100", "recall@1000", "mrr@10"])
    elif name != "baseline":
        raise SystemExit(f"unknown stage {name}")


def measure(name: str, folder: Path, timeout: float) -> dict[str, object]:
    """Wall time and peak RSS of one stage in a fresh process. Call it in a process of its own
    (:func:`measure_isolated`): ``RUSAGE_CHILDREN`` then holds this stage's process only."""
    command = [sys.executable, __file__, "--stage", name, "--work", str(folder)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"seconds": round(timeout, 1), "timed_out": True}
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"stage {name} failed:\n{proc.stderr[-3000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"seconds": round(seconds, 2), "peak_rss_gib": round(peak_kib / 2**20, 3)}


def measure_isolated(name: str, folder: Path, timeout: float) -> dict[str, object]:
    """Run :func:`measure` in a wrapper process so RUSAGE_CHILDREN holds this stage only."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_scale; "
        f"print(json.dumps(bench_scale.measure({name!r}, __import__('pathlib').Path({str(folder)!r}), {timeout})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def extrapolate(record: dict[str, object], fraction: float, baseline_gib: float, full_shape: bool) -> None:
    factor = 1.0 if full_shape else 1.0 / fraction
    record["seconds_full"] = round(float(record["seconds"]) * factor, 1)  # type: ignore[arg-type]
    if "peak_rss_gib" in record:
        above = max(0.0, float(record["peak_rss_gib"]) - baseline_gib)  # type: ignore[arg-type]
        record["peak_rss_gib_full"] = round(baseline_gib + above * factor, 2)


def write_tables(data: dict[str, object], results: Path) -> None:
    from irdistill.paths import write_text_atomic

    results.mkdir(parents=True, exist_ok=True)
    write_text_atomic(results / "bench_scale.json", json.dumps(data, indent=2) + "\n")
    lines = [
        "# Stages at fractions of the MS MARCO passage shape",
        "",
        "Produced by `python benchmarks/bench_scale.py --fraction F` (synthetic data of the shape: "
        f"{FULL['passages']:,} passages, {FULL['train_queries']:,} train queries, {FULL['score_lines']:,} "
        "teacher-score lines, times F; the dev run is 6,980 x 1,000 at every F). Each stage runs in a fresh "
        "process on this 2-core machine; `full` extrapolates linearly (memory: the part above the bare "
        "interpreter with irdistill imported). `main_job` is the README's main job on SciFact, from "
        "`eval/results/fresh_run.json`.",
        "",
        "| stage | fraction | seconds | peak RSS GiB | seconds at full shape | peak RSS GiB at full shape |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in sorted(data["runs"].items()):  # type: ignore[union-attr]
        stage = key.split("@")[0]
        over = " (timed out)" if r.get("timed_out") else ""
        lines.append(
            f"| {stage} | {r['fraction']} | {r['seconds']}{over} | {r.get('peak_rss_gib', '-')} | "
            f"{r.get('seconds_full', '-')} | {r.get('peak_rss_gib_full', '-')} |"
        )
    lines += [
        "",
        "Full shape, per stage (measured when the largest fraction is 1; else from the growth between "
        "the two largest when two were measured, from the largest alone when one was):",
        "",
        "| stage | seconds | peak RSS GiB | from |",
        "|---|---|---|---|",
    ]
    for stage, r in sorted(data["stages"].items()):  # type: ignore[union-attr]
        lines.append(
            f"| {stage} | {r.get('seconds_full', '-')} | {r.get('peak_rss_gib_full', '-')} | "
            f"{r.get('extrapolated_from', '')} |"
        )
    for stage, r in sorted(data["stages"].items()):  # type: ignore[union-attr]
        if "beyond_vectors_gib_full" in r:
            lines += [
                "",
                f"`{stage}` reads its vectors from a memory map, and the pages read count in RSS: at full shape "
                f"the vectors are {r['vectors_gib_full']} GiB and the peak beyond them "
                f"{r['beyond_vectors_gib_full']} GiB ({r['extrapolated_from']}).",
            ]
    lines += ["", "Goals of the issue at the full shape:", "", "| stage | goal | full shape | met |"]
    lines.append("|---|---|---|---|")
    for stage, (memory, seconds) in GOALS.items():
        r = data["stages"].get(stage)  # type: ignore[union-attr]
        goal = f"<= {memory:g} GiB" + (" beyond the vectors" if stage == "ivfpq_build" else "")
        goal += f", <= {seconds / 60:g} min" if seconds else ""
        if r is None:
            lines.append(f"| {stage} | {goal} | not measured | - |")
            continue
        used = float(r.get("beyond_vectors_gib_full", r.get("peak_rss_gib_full", "nan")))
        took = float(r.get("seconds_full", "nan"))
        met = used <= memory and (seconds is None or took <= seconds)
        lines.append(f"| {stage} | {goal} | {used:g} GiB, {took / 60:.1f} min | {'yes' if met else '**no**'} |")
    write_text_atomic(results / "bench_scale.md", "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--stages", nargs="+", default=list(STAGES[1:]), choices=STAGES[1:])
    parser.add_argument("--work", default="runs/bench_scale")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a stage may run")
    parser.add_argument("--again", action="store_true", help="measure stages already recorded again")
    parser.add_argument("--results", default=str(RESULTS), help="folder of bench_scale.{md,json}")
    parser.add_argument(
        "--tables-only", action="store_true", help="rewrite bench_scale.md from the JSON (and a new fresh-run record)"
    )
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        run_stage(args.stage, Path(args.work))
        return
    if args.tables_only:
        path = Path(args.results) / "bench_scale.json"
        data = json.loads(path.read_text())
        data["stages"] = latest_stages(data["runs"])
        write_tables(data, Path(args.results))
        return
    if not 0 < args.fraction <= 1:
        raise SystemExit("--fraction must lie in (0, 1]")
    folder = Path(args.work) / f"f{args.fraction:g}"
    print(f"data for fraction {args.fraction:g} under {folder} ...", flush=True)
    shape = generate(folder, args.fraction)
    results = Path(args.results)
    path = results / "bench_scale.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.setdefault("runs", {})
    baseline = measure_isolated("baseline", folder, args.timeout)["peak_rss_gib"]
    for stage in args.stages:
        key = f"{stage}@{args.fraction:g}"
        if key in data["runs"] and not args.again:
            continue
        record = {"fraction": args.fraction, "shape": shape, **measure_isolated(stage, folder, args.timeout)}
        if stage == "ivfpq_build":  # the memory-mapped vectors count in RSS as they are read
            record["vectors_gib"] = round(shape["passages"] * DIM * 4 / 2**30, 3)
        extrapolate(record, args.fraction, float(baseline), stage in FULL_SHAPE_STAGES)  # type: ignore[arg-type]
        data["runs"][key] = record
        print(key, record, flush=True)
        data["stages"] = latest_stages(data["runs"])
        write_tables(data, results)
    data["stages"] = latest_stages(data["runs"])
    write_tables(data, results)


def latest_stages(runs: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """Per stage, the record of the largest fraction measured (the issue's summary layout), its
    full-shape figures as measured when that fraction is 1.0, else from the growth between the two
    largest fractions when two were measured (a line through both points, evaluated at 1.0), plus
    ``main_job`` from the fresh-run record."""
    by_stage: dict[str, list[dict[str, object]]] = {}
    for key, r in runs.items():
        if not r.get("timed_out"):
            by_stage.setdefault(key.split("@")[0], []).append(r)
    out: dict[str, dict[str, object]] = {}
    for stage, records in by_stage.items():
        records.sort(key=lambda r: float(r["fraction"]))  # type: ignore[arg-type]
        last = records[-1]
        row = {
            k: last[k]
            for k in ("fraction", "seconds", "peak_rss_gib", "seconds_full", "peak_rss_gib_full")
            if k in last
        }
        at_full = float(last["fraction"]) == 1.0 or stage in FULL_SHAPE_STAGES  # type: ignore[arg-type]
        row["extrapolated_from"] = "measured at full shape" if at_full else "one fraction"
        if at_full:  # as measured, not rounded through the extrapolation
            row["seconds_full"], row["peak_rss_gib_full"] = last["seconds"], last["peak_rss_gib"]
        if at_full and "vectors_gib" in last:
            row["beyond_vectors_gib"] = row["beyond_vectors_gib_full"] = round(
                float(last["peak_rss_gib"]) - float(last["vectors_gib"]),  # type: ignore[arg-type]
                3,
            )
            row["vectors_gib_full"] = last["vectors_gib"]
        elif not at_full and len(records) >= 2:
            a, b = records[-2], records[-1]
            fa, fb = float(a["fraction"]), float(b["fraction"])  # type: ignore[arg-type]
            for value, full in (("seconds", "seconds_full"), ("peak_rss_gib", "peak_rss_gib_full")):
                va, vb = float(a[value]), float(b[value])  # type: ignore[arg-type]
                row[full] = round(vb + (vb - va) / (fb - fa) * (1.0 - fb), 2)
            row["extrapolated_from"] = f"growth between fractions {fa:g} and {fb:g}"
            if "vectors_gib" in a and "vectors_gib" in b:
                va = float(a["peak_rss_gib"]) - float(a["vectors_gib"])  # type: ignore[arg-type]
                vb = float(b["peak_rss_gib"]) - float(b["vectors_gib"])  # type: ignore[arg-type]
                row["beyond_vectors_gib"] = round(vb, 3)
                row["beyond_vectors_gib_full"] = round(vb + (vb - va) / (fb - fa) * (1.0 - fb), 2)
                row["vectors_gib_full"] = round(FULL["passages"] * DIM * 4 / 2**30, 2)
        out[stage] = row
    fresh = RESULTS / "fresh_run.json"
    if fresh.is_file():
        rows = json.loads(fresh.read_text())
        recipe = "eval/recipes/scifact_distill.yaml"
        for key, source in (
            (recipe, "the whole job, measured on SciFact"),
            (f"{recipe} (teacher scores reused)", "stages after the teacher's, measured on SciFact"),
        ):
            main = rows.get(key)
            if main and "peak_rss_gib" in main:
                seconds = float(main["wall_s"])
                out["main_job"] = {
                    "fraction": 1.0,
                    "seconds": seconds,
                    "peak_rss_gib": main["peak_rss_gib"],
                    "seconds_full": seconds,
                    "peak_rss_gib_full": main["peak_rss_gib"],
                    "extrapolated_from": f"{source}, benchmarks/fresh_run.sh",
                }
                break
    return out


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
