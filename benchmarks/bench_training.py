"""Training throughput: `irdistill train` (Margin-MSE) vs the plain sentence-transformers trainer.

Both sides train the same student (all-MiniLM-L6-v2) on the same rows, in the same order, with
the same batch size, learning rate, sequence length and one epoch, on this machine's CPU:

- irdistill: `train_student` with ``loss: margin-mse, sampler: random`` (its pair sampler plans
  the batches; irdistill's MarginMSELoss subclass checks the label shapes).
- plain ST: ``SentenceTransformerTrainer`` + ``sentence_transformers...losses.MarginMSELoss``
  on the identical ``(query, positive, negative, label)`` dataset (its default batch sampler,
  the same batch size).

Each side runs in its own fresh process (``--side``), alternating, ``--repeats`` times; the best
examples/s of each side is kept (the trainer's own ``train_samples_per_second``).

Usage:  IRDISTILL_DATA=../shared/data python benchmarks/bench_training.py --scores runs/scores/scifact-train-ensemble
Writes eval/results/bench_training.json ({"irdistill_examples_per_s", "st_examples_per_s"}) and .md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "eval" / "results"
STUDENT = "sentence-transformers/all-MiniLM-L6-v2"


def config(scores: str, out: str, batch_size: int) -> dict:
    return {
        "student": STUDENT,
        "dataset": "beir/scifact",
        "split": "train",
        "scores": scores,
        "loss": "margin-mse",
        "sampler": "random",
        "epochs": 1,
        "batch_size": batch_size,
        "learning_rate": 2e-5,
        "max_seq_length": 256,
        "seed": 42,
        "resume": False,
        "out": out,
        # the plain-ST side saves nothing; irdistill's resumable checkpoints (every half epoch by
        # default, i.e. every step on a short run) are switched off to time the same loop
        "save_steps": 10**9,
    }


def run_side(side: str, scores: str, batch_size: int) -> dict:
    """One timed training run in this process; prints a JSON line."""
    import logging

    from irdistill.config import build_config
    from irdistill.workflows.training import TrainConfig, train_student

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        raw = config(scores, str(Path(tmp) / "model"), batch_size)
        cfg = build_config(TrainConfig, raw, source="bench")
        if side == "irdistill":
            result = train_student(cfg, show_progress_bar=False)
            return {
                "side": side,
                "examples": result.examples,
                "seconds": result.seconds,
                "examples_per_s": result.examples_per_second,
            }
        return _plain_st(cfg, Path(tmp))


def _plain_st(cfg, tmp: Path) -> dict:
    import time

    import torch
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MarginMSELoss

    from irdistill.data import load_collection
    from irdistill.paths import resolve_model
    from irdistill.workflows.training import build_train_dataset

    collection = load_collection(cfg.dataset, split=cfg.split)
    torch.manual_seed(cfg.seed)
    dataset, sized = build_train_dataset(cfg, collection)  # the very rows irdistill trains on
    model = SentenceTransformer(str(resolve_model(cfg.student)), device="cpu")
    model.max_seq_length = cfg.max_seq_length
    steps = max(1, len(dataset) // cfg.batch_size)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp / "st"),
        learning_rate=cfg.learning_rate,
        warmup_steps=int(cfg.warmup_ratio * steps),
        seed=cfg.seed,
        per_device_train_batch_size=cfg.batch_size,
        num_train_epochs=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        logging_steps=cfg.logging_steps,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=MarginMSELoss(model))
    start = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - start
    return {
        "side": "st",
        "examples": len(dataset),
        "seconds": seconds,
        "examples_per_s": float(output.metrics["train_samples_per_second"]),
    }


def subset_scores(scores: str, n: int) -> str:
    """The teacher scores of the first ``n`` query ids, written to a temporary Parquet file."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from irdistill.scores.table import read_scores

    table = read_scores(Path(scores) / "scores.parquet" if Path(scores).is_dir() else scores)
    keep = sorted(set(table.column("qid").to_pylist()))[:n]
    path = Path(tempfile.mkdtemp(prefix="bench-training-")) / "scores.parquet"
    pq.write_table(table.filter(pc.is_in(table.column("qid"), value_set=pa.array(keep))), path)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scores", required=True, help="teacher-score store of the SciFact train candidates")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--queries", type=int, default=320, help="train queries whose scores are used (the first N by id; 0: all 809)"
    )
    parser.add_argument("--side", choices=["irdistill", "st"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, args.scores, args.batch_size)))
        return
    if args.queries:
        args.scores = subset_scores(args.scores, args.queries)

    results: dict[str, list[dict]] = {"irdistill": [], "st": []}
    for _ in range(args.repeats):
        for side in ("st", "irdistill"):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--side",
                    side,
                    "--scores",
                    args.scores,
                    "--batch-size",
                    str(args.batch_size),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            print(row, flush=True)
            results[side].append(row)
    best = {side: max(r["examples_per_s"] for r in rows) for side, rows in results.items()}
    summary = {"irdistill_examples_per_s": round(best["irdistill"], 2), "st_examples_per_s": round(best["st"], 2)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_training.json").write_text(json.dumps(summary, indent=2) + "\n")
    examples = results["st"][0]["examples"]
    runs = {side: ", ".join(f"{r['examples_per_s']:.2f}" for r in rows) for side, rows in results.items()}
    lines = [
        f"all-MiniLM-L6-v2, Margin-MSE, {examples} SciFact train rows (one epoch; the teacher scores of "
        f"{args.queries or 'all'} train queries), batch {args.batch_size}, "
        f"max_seq_length 256, CPU, no checkpoint saving on either side; best of {args.repeats} fresh-process runs "
        "per side. "
        "Produced by `python benchmarks/bench_training.py --scores ...`.",
        "",
        "| trainer | examples/s | runs (examples/s) |",
        "|---|---|---|",
        f"| irdistill train (margin-mse, random sampler) | {best['irdistill']:.2f} | {runs['irdistill']} |",
        f"| sentence-transformers trainer + MarginMSELoss | {best['st']:.2f} | {runs['st']} |",
        "",
        f"Ratio irdistill / ST: {best['irdistill'] / best['st']:.3f}.",
    ]
    (RESULTS / "bench_training.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
