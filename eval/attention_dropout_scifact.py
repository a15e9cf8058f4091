"""Training without attention dropout against MiniLM's own 0.1: SciFact dev, the same cells paired.

Reads the dev cells of ``eval/students_scifact.py --on dev --precision bf16`` (keyed
``<method>|e3-len128-eval256-bf16|seed<S>``) and of the same command with ``--attention-dropout 0``
(``...-bf16-attn0|seed<S>``). Every (method, seed) measured both ways is one pair; the pairs are the
replicates of :func:`irdistill.evaluation.seeds.compare_over_seeds` (a two-level bootstrap over pairs
and the 156 dev queries, and a t-interval over the pairs), so the difference ``attn0 - 0.1`` is read
across methods and seeds at once. Level: both 90 % intervals inside ±0.01 nDCG@10 (TOST), the margin
of the students table.

    python eval/attention_dropout_scifact.py [--methods bm25-lists hybrid-kl-v2]
Writes eval/results/attention_dropout_scifact.{md,json}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from irdistill.evaluation.seeds import compare_over_seeds
from irdistill.paths import write_text_atomic

HERE = Path(__file__).parent
RESULTS = HERE / "results"
BUDGET = "e3-len128-eval256-bf16"
MARGIN = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["bm25-lists", "hybrid-kl-v2"])
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    results = Path(args.results)
    cells = json.loads((results / "students_scifact_dev_cells.json").read_text())
    base: dict[int, dict[str, float]] = {}
    off: dict[int, dict[str, float]] = {}
    rows = []
    for method in args.methods:
        for key, cell in sorted(cells.items()):
            prefix = f"{method}|{BUDGET}|seed"
            if not key.startswith(prefix):
                continue
            twin = cells.get(f"{method}|{BUDGET}-attn0|seed{key[len(prefix) :]}")
            if twin is None:
                continue
            pair = len(rows)
            base[pair], off[pair] = cell["per_query_ndcg@10"], twin["per_query_ndcg@10"]
            rows.append(
                {
                    "method": method,
                    "seed": int(key[len(prefix) :]),
                    "ndcg@10_dropout0.1": round(cell["ndcg@10"], 4),
                    "ndcg@10_dropout0": round(twin["ndcg@10"], 4),
                    "train_seconds_dropout0.1": cell.get("train_seconds"),
                    "train_seconds_dropout0": twin.get("train_seconds"),
                }
            )
    if len(rows) < 2:
        raise SystemExit(f"{len(rows)} paired cell(s): a comparison needs at least 2")
    found = compare_over_seeds(off, base, margin=MARGIN)
    out = {"pairs": rows, "attn0_minus_0.1": found.to_dict()}
    write_text_atomic(results / "attention_dropout_scifact.json", json.dumps(out, indent=1) + "\n")
    low, high = found.ci95
    lines = [
        "# Attention dropout 0 against MiniLM's 0.1: SciFact dev, paired cells",
        "",
        f"`python eval/attention_dropout_scifact.py --methods {' '.join(args.methods)}`: the dev cells of "
        "`eval/students_scifact.py --on dev --precision bf16` with and without `--attention-dropout 0` (3 epochs, "
        "128 tokens in training, 256 in evaluation, bf16), each (method, seed) measured both ways a pair. "
        "Difference: dropout 0 minus 0.1, nDCG@10 over the pairs and the 156 dev queries "
        "(`irdistill.evaluation.seeds`: two-level bootstrap and t over pairs, the wider reported); level: both 90 % "
        f"intervals inside ±{MARGIN}. Training seconds come from cells run beside other work: not a timing "
        "(`eval/results/precision_steps_attention.md` is).",
        "",
        "| method | seed | nDCG@10 dropout 0.1 | nDCG@10 dropout 0 | train s 0.1 | train s 0 |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['seed']} | {row['ndcg@10_dropout0.1']:.4f} | {row['ndcg@10_dropout0']:.4f} | "
            f"{row['train_seconds_dropout0.1']} | {row['train_seconds_dropout0']} |"
        )
    lines += [
        "",
        f"Dropout 0 minus 0.1 over {len(rows)} pairs: {found.difference:+.4f} nDCG@10, 95 % CI [{low:+.4f}, "
        f"{high:+.4f}], p {found.p:.3g}; 90 % intervals bootstrap [{found.ci90_bootstrap[0]:+.4f}, "
        f"{found.ci90_bootstrap[1]:+.4f}], t [{found.ci90_seeds_t[0]:+.4f}, {found.ci90_seeds_t[1]:+.4f}]: "
        + ("level within ±0.01." if found.equivalent else "not shown level within ±0.01."),
    ]
    write_text_atomic(results / "attention_dropout_scifact.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
