"""CrossEncoderTeacher vs plain CrossEncoder.predict: the same 10k SciFact pairs, the same model.

Pairs: the BM25 (bm25s) top-100 of the first 100 SciFact test queries (10,000 pairs).
Model: the cross-encoder fine-tuned by `irdistill train-teacher` (runs/teachers/ce-minilm-scifact,
made by eval/teachers_scifact.py), or --model. Both sides get the same batch size and return raw
logits (predict with an identity activation); each is timed twice, the better time is kept.

Usage:  IRDISTILL_DATA=../shared/data python benchmarks/bench_teacher_scoring.py
Writes eval/results/bench_teacher_scoring.json
({"irdistill_pairs_per_s", "st_predict_pairs_per_s", "max_abs_diff"}) and a .md table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from irdistill.candidates import mine_candidates
from irdistill.data import load_collection
from irdistill.teachers.cross_encoder import CrossEncoderTeacher

RESULTS = Path(__file__).resolve().parent.parent / "eval" / "results"


def best_of(repeats: int, fn) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, np.asarray(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/teachers/ce-minilm-scifact")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    collection = load_collection("beir/scifact/test")
    subset = collection.subset(query_ids=collection.query_ids[: args.queries])
    run = mine_candidates(subset, "bm25", k=args.depth, exclude_positives=False, show_progress_bar=False)
    pairs = [(subset.queries[q], subset.corpus[d].full_text()) for q, docs in run.items() for d in docs]
    queries, passages = [p[0] for p in pairs], [p[1] for p in pairs]

    import torch

    teacher = CrossEncoderTeacher(args.model, batch_size=args.batch_size)
    ce = teacher.cross_encoder
    st_s, st_scores = best_of(
        args.repeats,
        lambda: ce.predict(
            pairs, batch_size=args.batch_size, activation_fn=torch.nn.Identity(), show_progress_bar=False
        ),
    )
    ours_s, ours = best_of(args.repeats, lambda: teacher.score(queries, passages))
    diff = float(np.max(np.abs(ours - st_scores)))
    result = {
        "irdistill_pairs_per_s": round(len(pairs) / ours_s, 1),
        "st_predict_pairs_per_s": round(len(pairs) / st_s, 1),
        "max_abs_diff": diff,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_teacher_scoring.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"{len(pairs):,} SciFact pairs (BM25 top {args.depth} of {args.queries} test queries), model "
        f"{Path(args.model).name}, batch size {args.batch_size}, {torch.get_num_threads()} torch thread(s) on "
        f"{os.cpu_count()} CPU cores, best of "
        f"{args.repeats}. Produced by `python benchmarks/bench_teacher_scoring.py`.",
        "",
        "| scorer | seconds | pairs/s |",
        "|---|---|---|",
        f"| CrossEncoder.predict | {st_s:.1f} | {result['st_predict_pairs_per_s']:.1f} |",
        f"| CrossEncoderTeacher | {ours_s:.1f} | {result['irdistill_pairs_per_s']:.1f} |",
        "",
        f"Ratio {st_s / ours_s:.2f}x; max |score difference| {diff:.2e}.",
    ]
    (RESULTS / "bench_teacher_scoring.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
