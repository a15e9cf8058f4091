"""How the TAS-Balanced sampler fills its batches on SciFact train: copies of a query inside a
batch, single-topic batches, batches per epoch. No training, no teacher: pairs are the judged
positive against BM25 candidates with random margins (the batch layout does not depend on them);
query clusters on all-MiniLM-L6-v2 query embeddings, as the training driver makes them.

    python benchmarks/tas_batches.py [--src OTHER_CHECKOUT] [--epochs 3]

``--src`` imports irdistill from another checkout (an older commit) for a before / after.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", help="checkout to import irdistill from")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--clusters", type=int, default=32)
    args = parser.parse_args()
    if args.src:
        sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
        sys.path.insert(0, args.src)
    import numpy as np

    from irdistill.candidates import mine_candidates
    from irdistill.data import load_collection
    from irdistill.encoding import DenseEncoder
    from irdistill.sampling import Pair, TASBalancedSampler

    collection = load_collection("beir/scifact", split="train")
    run = mine_candidates(collection, "bm25", k=10, show_progress_bar=False)
    rng = np.random.default_rng(0)
    pairs = {}
    for qid in collection.query_ids:
        positives = sorted(d for d, r in collection.qrels.get(qid, {}).items() if r > 0 and d in collection.corpus)
        if positives and run.get(qid):
            pairs[qid] = [Pair(positives[0], d, float(rng.normal())) for d in run[qid]]
    qids = [q for q in collection.query_ids if q in pairs]
    embeddings = (
        DenseEncoder("sentence-transformers/all-MiniLM-L6-v2", show_progress_bar=False)
        .encode(qids, [collection.queries[q] for q in qids], side="query")
        .embeddings
    )
    sampler = TASBalancedSampler(qids, pairs, embeddings, args.batch_size, n_clusters=args.clusters, seed=42)
    slots = copies = batches = single = 0
    worst = 0
    for epoch in range(args.epochs):
        for batch in sampler.plan(epoch):
            counts = Counter(e.qid for e in batch)
            slots += len(batch)
            copies += len(batch) - len(counts)
            worst = max(worst, max(counts.values()))
            single += len({sampler.assignments[e.qid] for e in batch}) == 1
            batches += 1
    print(
        json.dumps(
            {
                "queries": len(qids),
                "batches_per_epoch": batches // args.epochs,
                "copy_share_of_slots": round(copies / slots, 4),
                "most_copies_of_a_query_in_a_batch": worst,
                "single_topic_batches": round(single / batches, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
