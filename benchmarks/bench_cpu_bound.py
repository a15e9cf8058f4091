"""How fast could any fp32 backend score the teacher benchmark's pairs on this CPU?

bench_teacher_scoring.py measures backends; this script bounds them. It counts the floating-point
operations the cross-encoder needs for the same pairs and sets them against what this machine's
matrix units deliver:

1. **Work.** Every pair is tokenised as the teacher tokenises it (the model's max length, truncation),
   and its multiply-adds are counted from the config: per layer ``2·L·(4·H² + 2·H·I)`` for the
   projections and the feed-forward block plus ``4·L²·H`` for attention, over the pair's real
   length ``L`` (no padding: a perfect backend pads nothing). ``useful_gflop`` is their sum;
   ``padded_gflop`` is the same with every batch of --batch-size pairs (in the benchmark's
   order) padded to its longest pair, which is what CrossEncoder.predict computes.
2. **Peak.** torch matrix products of the model's own shapes (``tokens x H @ H x I`` and back,
   ``tokens x H @ H x H``) at fp32 and at bf16, with the benchmark's thread count: best GFLOP/s of
   --repeats timed calls after a warm-up. That is oneDNN / MKL at its best on this CPU, the
   ceiling no runtime's GEMMs exceed by much.
3. **Bound.** ``fp32_bound_pairs_per_s`` = pairs / (useful_gflop / fp32 peak): a backend that pads
   nothing and runs every product at the fp32 GEMM peak, with attention softmax, layer norms and
   GELU for free. ``max_fp32_speedup`` is that bound over CrossEncoder.predict's measured pairs/s
   (read from bench_teacher_scoring.json, run that first). When it is below a speed-up goal, no fp32
   backend reaches the goal here; only reduced precision (bf16, int8) can.

Usage:  IRDISTILL_DATA=../shared/data python benchmarks/bench_cpu_bound.py [--threads 2]
Writes eval/results/cpu_bound.{json,md} (or under --results).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "eval" / "results"


def layer_flops(length: int, hidden: int, intermediate: int) -> float:
    """FLOPs (2 per multiply-add) of one BERT layer on a sequence of ``length`` tokens."""
    projections = 2 * length * (4 * hidden * hidden + 2 * hidden * intermediate)
    attention = 4 * length * length * hidden
    return float(projections + attention)


def model_flops(
    lengths: list[int], batch_size: int, hidden: int, intermediate: int, layers: int
) -> tuple[float, float]:
    """(useful, padded) FLOPs of the encoder over sequences of ``lengths`` scored in batches of ``batch_size``."""
    useful = layers * sum(layer_flops(n, hidden, intermediate) for n in lengths)
    padded = 0.0
    for start in range(0, len(lengths), batch_size):
        batch = lengths[start : start + batch_size]
        padded += layers * len(batch) * layer_flops(max(batch), hidden, intermediate)
    return useful, padded


def gemm_peak(tokens: int, hidden: int, intermediate: int, dtype: str, repeats: int) -> float:
    """Best GFLOP/s of the model's three product shapes at ``dtype`` (torch, current thread count)."""
    import torch

    kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, hidden, generator=generator).to(kind)
    up = torch.randn(hidden, intermediate, generator=generator).to(kind)
    square = torch.randn(hidden, hidden, generator=generator).to(kind)
    down = torch.randn(intermediate, hidden, generator=generator).to(kind)
    h = torch.randn(tokens, intermediate, generator=generator).to(kind)
    flops = 2 * tokens * (hidden * intermediate * 2 + hidden * hidden)
    best = float("inf")
    with torch.inference_mode():
        for attempt in range(repeats + 1):
            start = time.perf_counter()
            x @ up
            h @ down
            x @ square
            elapsed = time.perf_counter() - start
            if attempt:
                best = min(best, elapsed)
    return flops / best / 1e9


def main() -> None:
    from bench_teacher_scoring import add_pair_arguments, load_pairs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pair_arguments(parser, queries=20, help="the teacher benchmark's --queries")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10, help="timed GEMM calls per precision (best kept)")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    import torch

    torch.set_num_threads(args.threads)
    from sentence_transformers import CrossEncoder

    queries, passages = load_pairs(args.dataset, args.queries, args.depth)
    model = CrossEncoder(args.model, device="cpu")
    config = model.model.config if hasattr(model, "model") else model[0].model.config
    max_length = int(getattr(model, "max_seq_length", None) or config.max_position_embeddings)
    encoded = model.tokenizer(queries, passages, truncation=True, max_length=max_length)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    hidden, intermediate, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    useful, padded = model_flops(lengths, args.batch_size, hidden, intermediate, layers)
    tokens = args.batch_size * int(sum(lengths) / len(lengths))
    peaks = {dtype: gemm_peak(tokens, hidden, intermediate, dtype, args.repeats) for dtype in ("fp32", "bf16")}

    measured_file = Path(args.results) / "bench_teacher_scoring.json"
    measured = json.loads(measured_file.read_text()) if measured_file.is_file() else {}
    pairs = len(lengths)
    bound = pairs / (useful / 1e9 / peaks["fp32"])
    result = {
        "pairs": pairs,
        "threads": args.threads,
        "max_length": max_length,
        "mean_tokens": round(sum(lengths) / pairs, 1),
        "useful_gflop": round(useful / 1e9, 1),
        "padded_gflop": round(padded / 1e9, 1),
        "fp32_gemm_gflops": round(peaks["fp32"], 1),
        "bf16_gemm_gflops": round(peaks["bf16"], 1),
        "fp32_bound_pairs_per_s": round(bound, 1),
    }
    rows = []
    for label, key in (
        ("CrossEncoder.predict (torch fp32)", "st_predict_pairs_per_s"),
        (f"CrossEncoderTeacher ({measured.get('backend', '?')})", "irdistill_pairs_per_s"),
    ):
        if key in measured:
            rate = measured[key]
            rows.append((label, rate, useful / 1e9 * rate / pairs))
    for backend, row in measured.get("also", {}).items():
        rows.append((f"CrossEncoderTeacher ({backend})", row["pairs_per_s"], useful / 1e9 * row["pairs_per_s"] / pairs))
    if "st_predict_pairs_per_s" in measured:
        result["st_predict_pairs_per_s"] = measured["st_predict_pairs_per_s"]
        result["max_fp32_speedup"] = round(bound / measured["st_predict_pairs_per_s"], 2)
    result["achieved_gflops"] = {label: round(gflops, 1) for label, _, gflops in rows}

    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "cpu_bound.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"The teacher benchmark's {pairs:,} pairs (BM25 top {args.depth} of {args.queries} SciFact test queries), "
        f"{Path(args.model).name} ({layers} layers, hidden {hidden}, FFN {intermediate}, max length {max_length}), "
        f"{args.threads} threads on {os.cpu_count()} CPU cores. Produced by "
        f"`python benchmarks/bench_cpu_bound.py --queries {args.queries} --threads {args.threads}`.",
        "",
        f"- Work: mean {result['mean_tokens']} tokens per pair; {result['useful_gflop']} GFLOP without padding, "
        f"{result['padded_gflop']} GFLOP padded to each batch of {args.batch_size}'s longest pair.",
        f"- Peak of torch GEMMs of the model's shapes: fp32 {result['fp32_gemm_gflops']} GFLOP/s, "
        f"bf16 {result['bf16_gemm_gflops']} GFLOP/s.",
        f"- fp32 bound (no padding, every product at the fp32 peak, the rest free): "
        f"{result['fp32_bound_pairs_per_s']} pairs/s"
        + (
            f", {result['max_fp32_speedup']}x CrossEncoder.predict's measured "
            f"{result['st_predict_pairs_per_s']} pairs/s."
            if "max_fp32_speedup" in result
            else " (run bench_teacher_scoring.py for the measured rates)."
        ),
        "",
        "| scorer (bench_teacher_scoring.json) | pairs/s | useful GFLOP/s | % of fp32 GEMM peak |",
        "|---|---|---|---|",
        *(
            f"| {label} | {rate:.1f} | {gflops:.1f} | {100 * gflops / peaks['fp32']:.0f}% |"
            for label, rate, gflops in rows
        ),
    ]
    (results / "cpu_bound.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
