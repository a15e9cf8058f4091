"""CrossEncoderTeacher vs plain CrossEncoder.predict: the same SciFact pairs, the same model.

Pairs: the BM25 (bm25s) top-100 of the first 100 SciFact test queries (10,000 pairs).
Model: the cross-encoder fine-tuned by `irdistill train-teacher` (runs/teachers/ce-minilm-scifact,
made by eval/teachers_scifact.py), or --model. Every side returns raw logits and runs in a fresh
Python process with the same torch thread count (--threads) and batch size; each side scores the
pairs --repeats times (at least 3) and the median time is kept:

- ``st_predict``: ``CrossEncoder.predict`` on torch fp32 (the reference scores);
- ``irdistill``: ``CrossEncoderTeacher`` on --backend (default ``auto``: the fastest installed
  backend whose probe scores match fp32 torch within 1e-4, :mod:`irdistill.backends`); the JSON
  says which backend ran and whether its scores stayed within 1e-4 of the reference;
- ``int8``: ``CrossEncoderTeacher`` on ``onnx-int8`` (dynamic int8 weights): pairs/s, Kendall tau
  of its scores against the reference, max |difference|; reported as quantised, never chosen by
  auto; "skipped: <reason>" when the ONNX backend is not installed.

Usage:  IRDISTILL_DATA=../shared/data python benchmarks/bench_teacher_scoring.py [--backend auto]
Writes eval/results/bench_teacher_scoring.json (``irdistill_pairs_per_s``, ``st_predict_pairs_per_s``,
``max_abs_diff``, ``backend``, ``within_tolerance``, ``int8``) and a .md table (or under --results).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent.parent / "eval" / "results"
TOLERANCE = 1e-4


def load_pairs(dataset: str, queries: int, depth: int) -> tuple[list[str], list[str]]:
    from irdistill.candidates import mine_candidates
    from irdistill.data import load_collection

    collection = load_collection(dataset)
    subset = collection.subset(query_ids=collection.query_ids[:queries])
    run = mine_candidates(subset, "bm25", k=depth, exclude_positives=False, show_progress_bar=False)
    pairs = [(subset.queries[q], subset.corpus[d].full_text()) for q, docs in run.items() for d in docs]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def add_pair_arguments(parser: argparse.ArgumentParser, *, queries: int, help: str) -> None:
    """The options that choose the pairs and the model (this script's, and bench_cpu_bound.py's)."""
    parser.add_argument("--model", default="runs/teachers/ce-minilm-scifact")
    parser.add_argument("--dataset", default="beir/scifact/test")
    parser.add_argument("--queries", type=int, default=queries, help=help)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)


def run_side(args: argparse.Namespace) -> None:
    """One side in this (fresh) process: score the pairs --repeats times, write times and scores."""
    import torch

    torch.set_num_threads(args.threads)
    queries, passages = load_pairs(args.dataset, args.queries, args.depth)
    from irdistill.backends import backend_of
    from irdistill.teachers.cross_encoder import CrossEncoderTeacher

    backend = "torch" if args.side == "st_predict" else args.backend
    teacher = CrossEncoderTeacher(args.model, batch_size=args.batch_size, backend=backend)
    if args.side == "st_predict":
        pairs = list(zip(queries, passages, strict=True))

        def score() -> np.ndarray:
            return teacher.cross_encoder.predict(
                pairs, batch_size=args.batch_size, activation_fn=torch.nn.Identity(), show_progress_bar=False
            )
    else:

        def score() -> np.ndarray:
            return teacher.score(queries, passages)

    times, out = [], None
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = score()
        times.append(time.perf_counter() - start)
    np.save(Path(args.side_out).with_suffix(".npy"), np.asarray(out, dtype=np.float64))
    Path(args.side_out).write_text(
        json.dumps({"times": times, "pairs": len(queries), "backend": backend_of(teacher.cross_encoder)})
    )


def spawn(args: argparse.Namespace, side: str, backend: str, folder: Path) -> tuple[dict, np.ndarray]:
    out = folder / f"{side}-{backend}.json"
    cmd = [
        sys.executable,
        __file__,
        "--side",
        side,
        "--side-out",
        str(out),
        "--backend",
        backend,
        *("--model", args.model, "--dataset", args.dataset),
        *("--queries", str(args.queries), "--depth", str(args.depth), "--batch-size", str(args.batch_size)),
        *("--repeats", str(args.repeats), "--threads", str(args.threads)),
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.read_text()), np.load(out.with_suffix(".npy"))


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pair_arguments(parser, queries=100, help="first N test queries (a small slice: 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per side (>= 3); the median is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of every side (default: torch's)")
    parser.add_argument("--backend", default="auto", help="irdistill side's backend (torch, onnx, openvino, auto ...)")
    parser.add_argument("--no-int8", action="store_true", help="skip the onnx-int8 side")
    parser.add_argument(
        "--also", nargs="*", default=[], help="more CrossEncoderTeacher backends as extra rows (e.g. torch onnx-O2)"
    )
    parser.add_argument("--results", default=str(RESULTS), help="folder for the .json / .md (default eval/results)")
    parser.add_argument("--side", choices=("st_predict", "irdistill", "int8", "also"), help=argparse.SUPPRESS)
    parser.add_argument("--side-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is None:
        import torch

        args.threads = torch.get_num_threads()
    if args.side:
        run_side(args)
        return
    if args.repeats < 3:
        parser.error("--repeats must be at least 3 (the median of the passes is reported)")

    with tempfile.TemporaryDirectory(prefix="irdistill-bench-") as tmp:
        folder = Path(tmp)
        st, reference = spawn(args, "st_predict", "torch", folder)
        ours, scores = spawn(args, "irdistill", args.backend, folder)
        extra = {}
        for backend in args.also:
            side, side_scores = spawn(args, "also", backend, folder)
            extra[backend] = {
                "backend": side["backend"],
                "pairs_per_s": round(side["pairs"] / statistics.median(side["times"]), 1),
                "max_abs_diff": float(np.max(np.abs(side_scores - reference))),
                "kendall_tau": round(kendall_tau(side_scores, reference), 6),
            }
        int8: dict = {"skipped": "--no-int8"}
        if not args.no_int8:
            from irdistill.backends import _import_problem

            problem = _import_problem("onnx")
            if problem:
                int8 = {"skipped": f"the onnx backend is not installed ({problem})"}
            else:
                q8, q8_scores = spawn(args, "int8", "onnx-int8", folder)
                int8 = {
                    "pairs_per_s": round(q8["pairs"] / statistics.median(q8["times"]), 1),
                    "kendall_tau": round(kendall_tau(q8_scores, reference), 4),
                    "max_abs_diff": float(np.max(np.abs(q8_scores - reference))),
                    "backend": q8["backend"],
                    "quantized": True,
                }
    n = st["pairs"]
    st_s, ours_s = statistics.median(st["times"]), statistics.median(ours["times"])
    diff = float(np.max(np.abs(scores - reference)))
    result = {
        "irdistill_pairs_per_s": round(n / ours_s, 1),
        "st_predict_pairs_per_s": round(n / st_s, 1),
        "max_abs_diff": diff,
        "backend": ours["backend"],
        "within_tolerance": diff <= TOLERANCE,
        "kendall_tau": round(kendall_tau(scores, reference), 6),
        "int8": int8,
        "also": extra,
        "pairs": n,
        "threads": args.threads,
        "repeats": args.repeats,
    }
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "bench_teacher_scoring.json").write_text(json.dumps(result, indent=2) + "\n")
    if "skipped" in int8:
        int8_row = f"| CrossEncoderTeacher, onnx-int8 (quantised) | skipped: {int8['skipped']} | | |"
    else:
        int8_row = (
            f"| CrossEncoderTeacher, onnx-int8 (quantised) | {n / int8['pairs_per_s']:.1f} | {int8['pairs_per_s']:.1f} "
            f"| max diff {int8['max_abs_diff']:.2e}, Kendall tau {int8['kendall_tau']:.4f} |"
        )
    lines = [
        f"{n:,} SciFact pairs (BM25 top {args.depth} of {args.queries} test queries), model "
        f"{Path(args.model).name}, batch size {args.batch_size}, {args.threads} torch thread(s) on "
        f"{os.cpu_count()} CPU cores, one fresh process per side, median of {args.repeats}. Produced by "
        f"`python benchmarks/bench_teacher_scoring.py --backend {args.backend}"
        + (f" --also {' '.join(args.also)}" if args.also else "")
        + f" --queries {args.queries} --threads {args.threads} --repeats {args.repeats}`.",
        "",
        "| scorer | seconds | pairs/s | scores vs CrossEncoder.predict (fp32 torch) |",
        "|---|---|---|---|",
        f"| CrossEncoder.predict (torch) | {st_s:.1f} | {result['st_predict_pairs_per_s']:.1f} | reference |",
        f"| CrossEncoderTeacher ({ours['backend']}) | {ours_s:.1f} | {result['irdistill_pairs_per_s']:.1f} "
        f"| max diff {diff:.2e} ({'within' if diff <= TOLERANCE else 'OUTSIDE'} {TOLERANCE:g}), "
        f"Kendall tau {result['kendall_tau']:.4f} |",
        *(
            f"| CrossEncoderTeacher ({row['backend']}) | {n / row['pairs_per_s']:.1f} | {row['pairs_per_s']:.1f} "
            f"| max diff {row['max_abs_diff']:.2e}, Kendall tau {row['kendall_tau']:.4f} |"
            for row in extra.values()
        ),
        int8_row,
        "",
        f"Ratio {st_s / ours_s:.2f}x.",
    ]
    (results / "bench_teacher_scoring.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
