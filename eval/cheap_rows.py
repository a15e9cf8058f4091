"""Re-measure the cheap rows of the committed SciFact tables and compare them with the tables.

A check that a change which should not move any number (a refactor) did not: each row is
recomputed with the current code and set beside the committed value.

Rows (SciFact test, 300 queries):

- BM25 through the evaluation harness (``eval/results/scifact_baselines.json``);
- all-MiniLM-L6-v2 through the harness, flat index, texts cut at 256 tokens (the same table; its
  embeddings come from the cache once a run has encoded them, else about 5 CPU minutes);
- the teacher (BM25 + mpnet z-score ensemble) reranking the test BM25 top 100, from the
  committed store ``eval/teacher_scores/scifact/test`` (``eval/results/teachers_scifact.json``);
- BM25 candidates: recall@100 of the BM25 top 100 mined by the candidate miner (the same as the
  harness's, through the other caller of the retrieval layer).

Usage::

    IRDISTILL_DATA=../shared/data python eval/cheap_rows.py   # writes eval/results/cheap_rows.{md,json}
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from irdistill.candidates import mine_candidates
from irdistill.data import load_collection
from irdistill.evaluation import evaluate_retrieval, evaluate_run
from irdistill.paths import write_text_atomic
from irdistill.scores import scores_to_run

HERE = Path(__file__).parent
RESULTS = HERE / "results"
METRICS = ["ndcg@10", "recall@100", "mrr@10"]


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    test = load_collection("beir/scifact", split="test")
    baselines = json.loads((RESULTS / "scifact_baselines.json").read_text())
    teachers = json.loads((RESULTS / "teachers_scifact.json").read_text())
    rows = []

    bm25 = evaluate_retrieval("bm25", test, metrics=METRICS, k=1000, show_progress_bar=False).metrics
    rows += [("bm25 (harness)", m, bm25[m], baselines["bm25"][m]) for m in METRICS]
    minilm = evaluate_retrieval(
        "sentence-transformers/all-MiniLM-L6-v2",
        test,
        metrics=METRICS,
        k=1000,
        max_seq_length=256,
        show_progress_bar=False,
    ).metrics
    rows += [("all-MiniLM-L6-v2 (harness, flat)", m, minilm[m], baselines["all-MiniLM-L6-v2"][m]) for m in METRICS]
    teacher = evaluate_run(
        test.qrels, scores_to_run(HERE / "teacher_scores" / "scifact" / "test"), ["ndcg@10", "recall@10"]
    )
    rows += [
        ("teacher reranking the BM25 top 100 (store)", m, teacher[m], teachers["ensemble-zscore"][m])
        for m in ("ndcg@10", "recall@10")
    ]
    mined = mine_candidates(test, "bm25", k=100, exclude_positives=False, show_progress_bar=False)
    recall = evaluate_run(test.qrels, mined, ["recall@100"])["recall@100"]
    rows.append(("bm25 candidates (miner)", "recall@100", recall, baselines["bm25"]["recall@100"]))

    table = [
        {"row": r, "metric": m, "now": round(v, 4), "committed": c, "same": round(v, 4) == c} for r, m, v, c in rows
    ]
    write_text_atomic(RESULTS / "cheap_rows.json", json.dumps(table, indent=2) + "\n")
    lines = [
        "# Cheap rows re-measured against the committed tables",
        "",
        "Produced by `python eval/cheap_rows.py`: each value recomputed with the current code beside the "
        "value the committed table holds (rounded to 4 places).",
        "",
        "| row | metric | now | committed | same |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {t['row']} | {t['metric']} | {t['now']:.4f} | {t['committed']:.4f} | {'yes' if t['same'] else 'NO'} |"
        for t in table
    ]
    write_text_atomic(RESULTS / "cheap_rows.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
