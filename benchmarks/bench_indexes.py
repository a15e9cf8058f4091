"""Flat vs HNSW vs IVF-PQ on SciFact test with all-MiniLM-L6-v2 embeddings.

For each index: recall@100 relative to the flat index (share of flat's top 100 that the index
also returns in its top 100), nDCG@10 and recall@100 against the qrels, serialised bytes,
build seconds, and queries/s (search of all test queries at k=100, best of 5 repeats, faiss
using every core).

Usage:  IRDISTILL_DATA=../shared/data python benchmarks/bench_indexes.py
Embeddings come from the irdistill cache (computed once if missing). Writes
eval/results/indexes_scifact.json and eval/results/indexes_scifact.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from irdistill.data import load_collection
from irdistill.encoding import DenseEncoder
from irdistill.evaluation import evaluate_run
from irdistill.indexes import make_index

RESULTS = Path(__file__).resolve().parent.parent / "eval" / "results"
CONFIGS = {
    "flat": ("flat", {}),
    "hnsw (M=32, efSearch=256)": ("hnsw", {"m": 32, "ef_search": 256}),
    "hnsw (M=16, efSearch=128)": ("hnsw", {"m": 16, "ef_search": 128}),
    "ivfpq (m=48x8, nprobe=16)": ("ivfpq", {"m": 48, "nprobe": 16}),
    "ivfpq (m=96x8, nprobe=32)": ("ivfpq", {"m": 96, "nprobe": 32}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--dataset", default="beir/scifact/test")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    collection = load_collection(args.dataset)
    encoder = DenseEncoder(args.model, show_progress_bar=False)
    docs = encoder.encode(collection.doc_ids, collection.doc_texts(), side="document").embeddings
    queries = encoder.encode(collection.query_ids, collection.query_texts(), side="query").embeddings
    doc_ids = np.array(collection.doc_ids)
    rows: dict[str, dict] = {}
    flat_top = None
    for label, (kind, params) in CONFIGS.items():
        index = make_index(kind, docs.shape[1], device="cpu", **params)
        t0 = time.perf_counter()
        index.add(docs)
        build = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            scores, ids = index.search(queries, 100)
            times.append(time.perf_counter() - t0)
        if flat_top is None:
            flat_top = ids
        overlap = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(ids, flat_top, strict=True)])
        run = {
            q: {doc_ids[i]: float(s) for s, i in zip(scores[r], ids[r], strict=True) if i >= 0}
            for r, q in enumerate(collection.query_ids)
        }
        metrics = evaluate_run(collection.qrels, run, ["ndcg@10", "recall@100"])
        rows[label] = {
            "kind": kind,
            "params": params,
            "recall@100_vs_flat": round(float(overlap), 4),
            "ndcg@10": round(metrics["ndcg@10"], 4),
            "recall@100": round(metrics["recall@100"], 4),
            "bytes": index.nbytes,
            "bytes_per_vector": round(index.nbytes / len(docs), 1),
            "build_s": round(build, 3),
            "queries_per_s": round(len(queries) / min(times), 1),
        }
        print(label, rows[label], flush=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "indexes_scifact.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        f"FAISS index kinds on {args.dataset} ({len(queries)} queries, {len(docs)} documents), "
        f"{Path(args.model).name} embeddings ({docs.shape[1]}-d), top 100 per query. "
        "Produced by `python benchmarks/bench_indexes.py`.",
        "",
        "| index | recall@100 vs flat | nDCG@10 | recall@100 | bytes | bytes/vector | build s | queries/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in rows.items():
        lines.append(
            f"| {label} | {r['recall@100_vs_flat']:.4f} | {r['ndcg@10']:.4f} | {r['recall@100']:.4f} | "
            f"{r['bytes']:,} | {r['bytes_per_vector']:.0f} | {r['build_s']:.2f} | {r['queries_per_s']:.0f} |"
        )
    (RESULTS / "indexes_scifact.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
