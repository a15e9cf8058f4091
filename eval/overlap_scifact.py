"""SciFact test queries whose judged abstract is also a train positive, and the others.

196 of SciFact's 300 test claims have a judged abstract that is also the judged abstract of some
train claim (82 of the 156 dev claims share one with ``train:fit``). A student trained on the train
judgements can score well on those by having learnt the abstract itself, which says little about
retrieving an abstract it never trained on; a static student, whose every token is a trained row,
can do so more than a transformer. This script splits the recorded cells of
``eval/students_scifact.py`` into the two subsets and gives each row's nDCG@10 on both, and each
trained row's seed-aware difference from the label-only reference on each subset
(:func:`irdistill.evaluation.seeds.compare_over_seeds`, Holm over the rows of a subset).

    python eval/overlap_scifact.py --budget e10-len128-eval256-minilm-scifact-lr0.03 \\
        --methods bm25-lists hybrid-kl-v2-a3 [--budget e3-len128-eval256 --methods ...]
Writes eval/results/overlap_scifact.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path
from typing import Any

from irdistill.evaluation.seeds import compare_over_seeds, holm
from irdistill.paths import write_text_atomic

HERE = Path(__file__).parent
RESULTS = HERE / "results"
LABEL_ONLY = "bm25-lists"


def overlapping_queries(dataset: str) -> tuple[set[str], set[str]]:
    """Test queries with a judged abstract that is a train positive, and the rest."""
    from irdistill.data import load_collection

    train = load_collection(dataset, split="train")
    test = load_collection(dataset, split="test")
    seen = {d for judged in train.qrels.values() for d, rel in judged.items() if rel > 0}
    shared = {q for q, judged in test.qrels.items() if any(rel > 0 and d in seen for d, rel in judged.items())}
    return shared, set(test.qrels) - shared


def subset(scores: dict[str, float], queries: set[str]) -> dict[str, float]:
    return {q: scores.get(q, 0.0) for q in queries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beir/scifact")
    parser.add_argument("--budget", action="append", required=True, help="a budget tag of the cells; repeatable")
    parser.add_argument(
        "--methods", action="append", nargs="+", required=True, help="its trained rows; one per --budget"
    )
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    if len(args.budget) != len(args.methods):
        parser.error("give one --methods list per --budget")
    results = Path(args.results)
    cells = json.loads((results / "students_scifact_cells.json").read_text())
    shared, fresh = overlapping_queries(args.dataset)
    parts = {"shared positive": shared, "no shared positive": fresh}
    out: dict[str, Any] = {"queries": {k: len(v) for k, v in parts.items()}, "budgets": {}}
    lines = [
        "# SciFact test: queries whose judged abstract is also a train positive, and the others",
        "",
        "`python eval/overlap_scifact.py "
        + " ".join(f"--budget {b} --methods {' '.join(m)}" for b, m in zip(args.budget, args.methods, strict=True))
        + f"`: the recorded cells of `eval/students_scifact.py` split by whether a test query's judged abstract "
        f"is also judged for some SciFact train claim ({len(shared)} of {len(shared) | len(fresh)} test queries) or "
        f"not ({len(fresh)}). nDCG@10 mean over the seeds; Δ: minus `{LABEL_ONLY}` over the seeds both have and the "
        "subset's queries (`irdistill.evaluation.seeds`), 95 % CI, p (Holm over the rows of the subset).",
        "",
    ]
    for budget, methods in zip(args.budget, args.methods, strict=True):
        rows: dict[str, Any] = {}
        for fixed in ("untrained", "teacher"):
            cell = cells.get(f"{fixed}|{re.sub(r'(-bf16|-attn[0-9.]+|-lr[0-9.e+-]+)+$', '', budget)}")
            if cell:
                rows[fixed] = {"seeds": [], "runs": {0: cell["per_query_ndcg@10"]}}
        for method in methods:
            runs = {
                int(k.rsplit("seed", 1)[1]): c["per_query_ndcg@10"]
                for k, c in cells.items()
                if k.startswith(f"{method}|{budget}|seed")
            }
            if runs:
                rows[method] = {"seeds": sorted(runs), "runs": runs}
        table: dict[str, Any] = {}
        for name, row in rows.items():
            table[name] = {"seeds": row["seeds"]}
            for part, queries in parts.items():
                means = [statistics.fmean(subset(r, queries).values()) for r in row["runs"].values()]
                table[name][part] = round(statistics.fmean(means), 4)
        for part, queries in parts.items():
            found = {}
            reference = rows.get(LABEL_ONLY)
            for name, row in rows.items():
                if name == LABEL_ONLY or not row["seeds"] or reference is None:
                    continue
                a = {s: subset(r, queries) for s, r in row["runs"].items()}
                b = {s: subset(r, queries) for s, r in reference["runs"].items()}
                if len(set(a) & set(b)) >= 2:
                    found[name] = compare_over_seeds(a, b, margin=0.01).brief()
            adjusted = holm({k: v["p"] for k, v in found.items()})
            for name, versus in found.items():
                table[name][f"vs_{LABEL_ONLY} ({part})"] = {**versus, "p_holm": round(adjusted[name], 4)}
        out["budgets"][budget] = table
        lines += [
            f"## `{budget}`",
            "",
            "| row | seeds | nDCG@10 shared positive | nDCG@10 no shared positive | Δ shared [95 % CI] p (Holm) | "
            "Δ no shared [95 % CI] p (Holm) |",
            "|---|---|---|---|---|---|",
        ]

        def versus(found: dict[str, Any] | None) -> str:
            if not found:
                return "-"
            low, high = found["ci95"]
            return f"{found['diff']:+.4f} [{low:+.4f}, {high:+.4f}] {found['p']:.3g} ({found['p_holm']:.3g})"

        for name, row in table.items():
            lines.append(
                f"| {name} | {len(row['seeds']) or '-'} | {row['shared positive']:.4f} | "
                f"{row['no shared positive']:.4f} | {versus(row.get(f'vs_{LABEL_ONLY} (shared positive)'))} | "
                f"{versus(row.get(f'vs_{LABEL_ONLY} (no shared positive)'))} |"
            )
        lines.append("")
    write_text_atomic(results / "overlap_scifact.json", json.dumps(out, indent=1) + "\n")
    write_text_atomic(results / "overlap_scifact.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
