"""SciFact test baselines: all-MiniLM-L6-v2, all-mpnet-base-v2 (flat FAISS) and BM25 (bm25s).

Usage (offline here; online the data set and models download):

    IRDISTILL_DATA=../shared/data python eval/scifact_baselines.py [--models NAME ...]

Writes eval/results/scifact_baselines.json ({"<model>": {"ndcg@10", "recall@100", "mrr@10"}}),
eval/results/scifact_baselines.md (with speed and memory columns) and one run folder per model
under runs/scifact/ (run.trec, metrics.json, perf.json). Embeddings are cached, so a re-run
only recomputes the metrics.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from irdistill.data import load_collection
from irdistill.evaluation import evaluate_retrieval
from irdistill.paths import update_json_table, write_text_atomic

MODELS = {
    "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2",
    "bm25": "bm25",
}
PUBLISHED = {"all-MiniLM-L6-v2": 0.645, "all-mpnet-base-v2": 0.656, "bm25": 0.665}
RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--dataset", default="beir/scifact/test")
    parser.add_argument("--runs", default="runs/scifact", help="folder for the per-model run folders")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    collection = load_collection(args.dataset)
    json_path = RESULTS / "scifact_baselines.json"
    for key in args.models:
        result = evaluate_retrieval(MODELS[key], collection, index="flat", out=Path(args.runs) / key)
        table = update_json_table(
            json_path, key, {m: round(result.metrics[m], 4) for m in ("ndcg@10", "recall@100", "mrr@10")}
        )

    lines = [
        f"SciFact test ({len(collection.queries)} queries, {len(collection.corpus)} documents), flat "
        "inner-product FAISS index for dense models, bm25s (Lucene BM25, k1=0.9, b=0.4, stemmed) for BM25.",
        "Produced by `python eval/scifact_baselines.py`. Published nDCG@10: MTEB for the dense "
        "models, BEIR paper (Elasticsearch) for BM25.",
        "",
        "| model | nDCG@10 | published nDCG@10 | recall@100 | MRR@10 |",
        "|---|---|---|---|---|",
    ]
    for key, row in table.items():
        lines.append(
            f"| {key} | {row['ndcg@10']:.4f} | {PUBLISHED[key]:.3f} | {row['recall@100']:.4f} | {row['mrr@10']:.4f} |"
        )
    lines += [
        "",
        "Speed and memory: `eval/results/bench_evaluate.md` (measured on an idle machine); "
        "per-model perf.json files land in the run folders.",
    ]
    write_text_atomic(RESULTS / "scifact_baselines.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
