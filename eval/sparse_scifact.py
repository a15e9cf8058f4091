"""SciFact test: learned sparse students against BM25.

Usage:  IRDISTILL_DATA=../shared/data python eval/sparse_scifact.py --scores runs/scores/scifact-train-ensemble

Rows:
- ``bm25``: bm25s (k1 0.9, b 0.4, English stemmer); non-zeros = distinct stemmed terms.
- ``splade-tiny``: the shipped SPLADE model as it is (2 layers, 128-d, MS MARCO trained).
- ``splade-tiny-distilled``: that model distilled on SciFact train from the teacher store
  (``--scores``, the strongest teacher of issue 3) with Margin-MSE and FLOPS regularisers
  (document weight ``--flops-weight``, 3e-5). ``splade-tiny-distilled-strong-flops`` (not in the
  default rows) scales both FLOPS weights by ``label_scale²``, the factor by which scaling the
  margins grows the Margin-MSE term, so FLOPS keeps the weight it has against unscaled margins.
- ``inference-free``: documents through splade-tiny, queries = tokenizer + IDF lookup (no
  transformer; arXiv 2411.04403), trained the same way; the frozen IDF query tower with plain
  FLOPS on the documents is the paper's IDF-aware penalty. ``inference-free-untrained`` is the
  same model before training; ``inference-free-idf-weighted`` (not in the default rows) adds
  irdistill's extra 1/IDF weighting of the FLOPS term (``IDFWeightedFlopsLoss``), an ablation.

Each row: nDCG@10 (ranx), average non-zeros per document and per query, and queries/s end to
end (query encoding + inverted-index search over the 5,183 documents, one process on this CPU).
Trained models are kept under ``--runs`` and reused on a re-run.

Writes eval/results/sparse_scifact.json
(``{"<model>": {"ndcg@10", "doc_nnz", "query_nnz", "queries_per_s", ...}}``) and .md.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from irdistill.data import load_collection
from irdistill.evaluation import evaluate_run
from irdistill.paths import update_json_table, write_text_atomic

RESULTS = Path(__file__).parent / "results"
METRICS = ["ndcg@10", "recall@100"]


def bm25_row(test) -> dict:
    from irdistill.retrieval import BM25Retriever, hits_to_run

    bm25 = BM25Retriever(show_progress_bar=False)
    bm25.index(test)
    doc_tokens = bm25.tokenize(test.doc_texts())
    query_tokens = bm25.tokenize(test.query_texts())
    start = time.perf_counter()
    scores, ids = bm25.search(test.query_ids, test.query_texts(), 1000)
    seconds = time.perf_counter() - start
    run = hits_to_run(bm25.doc_ids, test.query_ids, scores, ids)
    metrics = evaluate_run(test.qrels, run, METRICS)
    return {
        **{m: round(v, 4) for m, v in metrics.items()},
        "doc_nnz": round(float(np.mean([len(set(d)) for d in doc_tokens.ids])), 2),
        "query_nnz": round(float(np.mean([len(set(q)) for q in query_tokens.ids])), 2),
        "queries_per_s": round(len(test.queries) / seconds, 1),
    }


def sparse_row(model, test, batch_size: int) -> dict:
    from irdistill.evaluation import evaluate_retrieval
    from irdistill.retrieval import SparseRetriever

    result = evaluate_retrieval(
        SparseRetriever(model, batch_size=batch_size), test, k=1000, metrics=METRICS, show_progress_bar=False
    )
    metrics = result.metrics
    perf = {**asdict(result.performance), **result.performance.figures}
    nq = perf["num_queries"]
    return {
        **{m: round(v, 4) for m, v in metrics.items()},
        "doc_nnz": perf["doc_nnz"],
        "query_nnz": perf["query_nnz"],
        "queries_per_s": round(nq / (perf["query_encode_seconds"] + perf["search_seconds"]), 1),
        "search_only_queries_per_s": perf["queries_per_second"],
        "docs_per_s": perf["docs_per_second"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scores", required=True, help="teacher-score store of the SciFact train candidates")
    parser.add_argument("--model", default="splade-tiny")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--negatives", type=int, default=1, help="negatives per training row")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument(
        "--label-scale",
        type=float,
        default=7.5,
        help="multiply the teacher margins onto SPLADE's dot-product scale (z-scored ensemble: "
        "splade-tiny margins have 7.7x their spread on train pairs)",
    )
    parser.add_argument("--flops-weight", type=float, default=3e-5, help="FLOPS weight on documents")
    parser.add_argument("--query-flops-weight", type=float, default=5e-5, help="FLOPS weight on SPLADE queries")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument(
        "--rows",
        nargs="+",
        default=["bm25", "splade-tiny", "splade-tiny-distilled", "inference-free-untrained", "inference-free"],
    )
    parser.add_argument("--runs", default="runs/sparse/scifact")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from irdistill.scores.hf import to_hf_dataset
    from irdistill.students.sparse import (
        build_inference_free_student,
        build_splade_student,
        load_sparse_student,
        train_sparse_student,
    )

    test = load_collection("beir/scifact/test")
    train = load_collection("beir/scifact/train")
    json_path = RESULTS / "sparse_scifact.json"
    runs = Path(args.runs)

    def dataset():
        ds = to_hf_dataset(args.scores, train, negatives_per_query=args.negatives, seed=42)
        return ds.map(lambda row: {"label": [x * args.label_scale for x in row["label"]]})

    def trained(name: str, build, **kw) -> object:
        folder = runs / name
        if (folder / "config.json").is_file() or (folder / "modules.json").is_file():
            return load_sparse_student(str(folder))
        student = build()
        start = time.perf_counter()
        train_sparse_student(
            student,
            dataset(),
            loss="margin-mse",
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_steps=10,
            output_dir=folder,
            show_progress_bar=False,
            **kw,
        )
        (folder / "train_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
        return load_sparse_student(str(folder))

    for name in args.rows:
        start = time.perf_counter()
        if name == "bm25":
            row = bm25_row(test)
        elif name == "splade-tiny":
            row = sparse_row(
                build_splade_student(args.model, max_seq_length=args.max_seq_length), test, args.batch_size
            )
        elif name in ("splade-tiny-distilled", "splade-tiny-distilled-strong-flops"):
            factor = args.label_scale**2 if name.endswith("strong-flops") else 1.0
            row = sparse_row(
                trained(
                    name,
                    lambda: build_splade_student(args.model, max_seq_length=args.max_seq_length),
                    document_regularizer_weight=args.flops_weight * factor,
                    query_regularizer_weight=args.query_flops_weight * factor,
                ),
                test,
                args.batch_size,
            )
        elif name == "inference-free-untrained":
            row = sparse_row(
                build_inference_free_student(args.model, test, max_seq_length=args.max_seq_length),
                test,
                args.batch_size,
            )
        elif name in ("inference-free", "inference-free-idf-weighted"):
            extra = {"flops_weights": "idf"} if name.endswith("idf-weighted") else {}
            row = sparse_row(
                trained(
                    name,
                    lambda: build_inference_free_student(args.model, test, max_seq_length=args.max_seq_length),
                    document_regularizer_weight=args.flops_weight,
                    **extra,
                ),
                test,
                args.batch_size,
            )
        else:
            raise SystemExit(f"unknown row {name!r}")
        seconds_file = runs / name / "train_seconds.txt"
        if seconds_file.is_file():
            row["train_seconds"] = float(seconds_file.read_text())
        row["seconds"] = round(time.perf_counter() - start, 1)
        table = update_json_table(json_path, name, row)  # keeps rows another run added meanwhile
        logging.info("%s: %s", name, row)

    lines = [
        f"SciFact test (300 queries, 5,183 docs). Distilled rows: {args.epochs:g} epochs of Margin-MSE on the "
        f"SciFact train teacher store (margins x {args.label_scale:g}), {args.negatives} negatives per row, "
        f"lr {args.lr:g}, batch {args.batch_size}, max length {args.max_seq_length}, "
        f"FLOPS weights {args.flops_weight:g} (documents) and {args.query_flops_weight:g} (SPLADE queries; "
        f"x{args.label_scale**2:g} in the strong-flops row). queries/s = query encoding + search, end to end, "
        "on this 2-core CPU (single-threaded jobs sharing it). Produced by "
        "`python eval/sparse_scifact.py --scores ...`.",
        "",
        "| model | nDCG@10 | recall@100 | doc non-zeros | query non-zeros | queries/s |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {k} | {v['ndcg@10']:.4f} | {v['recall@100']:.4f} | {v['doc_nnz']:.1f} | {v['query_nnz']:.1f} | "
        f"{v['queries_per_s']:.0f} |"
        for k, v in table.items()
    ]
    write_text_atomic(RESULTS / "sparse_scifact.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
