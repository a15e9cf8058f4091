"""How hard the training queries are for the teacher: generated queries against the real ones.

For each query of a teacher-score store, the teacher's rank of its positive among the query's
scored candidates (the judged positive for real queries, the source passage for generated ones)
and the teacher's margin from the positive to the best other candidate. Reads stored scores only
(no model runs), so it takes seconds::

    IRDISTILL_DATA=../shared/data python eval/adapt_difficulty.py [--dataset beir/cisi]

Rows: the collection's train queries' store when there is one
(``eval/teacher_scores/<name>/train``, judged positives; SciFact has one, CISI no train split) and
every generated row of ``eval/adapt.py`` found under ``--runs`` (``<row>/scores.generated`` with the
kept queries of ``<row>/queries.kept.parquet``). Writes
``eval/results/adapt_difficulty_<name>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from irdistill.data import load_collection
from irdistill.paths import write_text_atomic
from irdistill.scores.table import scores_by_query

HERE = Path(__file__).parent


def difficulty(scores: Path, positives: dict[str, set[str]]) -> dict[str, float | int]:
    """Rank of the first positive and margin to the best other candidate, over the queries whose
    positive was scored."""
    ranks, margins = [], []
    for qid, rows in scores_by_query(scores).items():
        wanted = positives.get(qid, set())
        ordered = sorted(rows.items(), key=lambda row: -row[1])
        hits = [i for i, (pid, _) in enumerate(ordered) if pid in wanted]
        others = [score for pid, score in ordered if pid not in wanted]
        if not hits or not others:
            continue
        ranks.append(hits[0] + 1)
        margins.append(ordered[hits[0]][1] - others[0])
    r = np.asarray(ranks)
    return {
        "queries": len(r),
        "positive_first": round(float((r == 1).mean()), 4) if len(r) else float("nan"),
        "mean_rank": round(float(r.mean()), 2) if len(r) else float("nan"),
        "mean_margin": round(float(np.mean(margins)), 3) if margins else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beir/scifact")
    parser.add_argument("--train-scores", help="store of real train queries (default: eval/teacher_scores/NAME/train)")
    parser.add_argument("--runs", help="folder of the adapt rows (default: runs/adapt/NAME/p500-k3-hybrid-e3-s1)")
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()
    name = args.dataset.rsplit("/", 1)[-1]
    rows: dict[str, dict[str, float | int]] = {}
    train = Path(args.train_scores or HERE / "teacher_scores" / name / "train")
    runs = Path(args.runs or f"runs/adapt/{name}/p500-k3-hybrid-e3-s1")
    if train.exists():
        qrels = load_collection(args.dataset, split="train").qrels
        judged = {q: {p for p, rel in docs.items() if rel > 0} for q, docs in qrels.items()}
        rows["real train queries (judged positive)"] = difficulty(train, judged)
    for folder in sorted(runs.glob("*/scores.generated")):
        if not (folder / "scores.parquet").is_file():
            print(f"{folder}: the teacher's scores are not complete yet, left out")
            continue
        kept = pq.read_table(folder.parent / "queries.kept.parquet", columns=["qid", "pid"]).to_pylist()
        rows[f"generated: {folder.parent.name} (source passage)"] = difficulty(
            folder, {row["qid"]: {row["pid"]} for row in kept}
        )
    if not rows:
        raise SystemExit(f"no score store found: {train} and {runs}/*/scores.generated")
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / f"adapt_difficulty_{name}.json", json.dumps(rows, indent=2) + "\n")
    lines = [
        f"# How hard the training queries are for the teacher ({name})",
        "",
        "Produced by `python eval/adapt_difficulty.py`, from stored teacher scores (the BM25 + mpnet "
        "ensemble on each query's BM25 top 100). Positive: the judged one for real queries, the source "
        "passage for generated ones. Margin: teacher score of the positive minus the best other "
        "candidate's (z units).",
        "",
        "| queries | n | positive ranked first | mean rank of the positive | mean margin |",
        "|---|---|---|---|---|",
    ]
    for label, r in rows.items():
        lines.append(
            f"| {label} | {r['queries']} | {float(r['positive_first']):.1%} | {r['mean_rank']} | {r['mean_margin']} |"
        )
    write_text_atomic(out / f"adapt_difficulty_{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
