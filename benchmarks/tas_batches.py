"""What TAS-Balanced's batches hold on SciFact train: false in-batch negatives and topic purity.

Builds the sampler the students table trains with (all-MiniLM-L6-v2 query embeddings, batches of
32, the committed teacher's pairs of ``eval/teacher_scores/scifact/train``) in two versions and
plans 3 epochs of each:

- ``first``: 32 clusters, passages may repeat in a batch (the ``tas-balanced`` cells' sampler);
- ``now``: clusters of about 4 batches (``n_clusters`` unset: 6 here), no passage twice in a batch.

Per version and epoch: batches, single-topic batches (all queries in one k-means cluster), rows
whose judged positive is another row's passage in the same batch (an in-batch false negative),
a passage's extra copies in a batch (summed), and the queries deferred, topped up and left out.

    python benchmarks/tas_batches.py [--split train] [--epochs 3]

Writes ``eval/results/tas_batches_scifact.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "eval" / "results"
SCORES = ROOT / "eval" / "teacher_scores" / "scifact" / "train" / "scores.parquet"
VERSIONS = {"first": {"n_clusters": 32, "distinct_passages": False}, "now": {}}


def false_negatives(batch: list[Any]) -> int:
    """Rows whose judged positive is another row's positive or negative in ``batch``."""
    count = 0
    for i, row in enumerate(batch):
        others = {p for j, e in enumerate(batch) if j != i for p in (e.positive, e.negative)}
        count += row.positive in others
    return count


def measure(split: str, epochs: int, seed: int) -> dict[str, Any]:
    from irdistill.data import load_collection
    from irdistill.sampling import TASBalancedSampler
    from irdistill.sampling.pairs import pairs_from_scores

    collection = load_collection("beir/scifact", split=split)
    pairs = pairs_from_scores(SCORES, collection.qrels)
    qids = [q for q in collection.query_ids if q in pairs]
    shared = {}
    for q in qids:
        for p in collection.positives(q):
            shared.setdefault(p, set()).add(q)
    out: dict[str, Any] = {
        "split": split,
        "queries": len(qids),
        "positives_of_several_queries": sum(len(v) > 1 for v in shared.values()),
        "versions": {},
    }
    for name, options in VERSIONS.items():
        sampler = TASBalancedSampler.for_training(
            qids,
            pairs,
            32,
            seed,
            query_texts=collection.queries,
            encoder="sentence-transformers/all-MiniLM-L6-v2",
            **options,
        )
        rows = []
        for epoch in range(epochs):
            plan = sampler.plan(epoch)
            rows.append(
                {
                    **sampler.last_plan,
                    "rows": sum(len(b) for b in plan),
                    "false_negative_rows": sum(false_negatives(b) for b in plan),
                }
            )
        out["versions"][name] = {"n_clusters": sampler.n_clusters, "epochs": rows}
    return out


def write_md(result: dict[str, Any]) -> None:
    lines = [
        "# TAS-Balanced batches on SciFact train",
        "",
        "Produced by `python benchmarks/tas_batches.py` (see its docstring). "
        f"{result['queries']} training queries with pairs; {result['positives_of_several_queries']} abstracts "
        "are the judged positive of two or more of them. Batches of 32, all-MiniLM-L6-v2 query clusters; per epoch.",
        "",
        "| version | clusters | epoch | batches | single-topic | rows with their positive elsewhere in the batch "
        "| repeated passages | deferred | topped up | left out |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, version in result["versions"].items():
        for epoch, r in enumerate(version["epochs"]):
            lines.append(
                f"| {name} | {version['n_clusters']} | {epoch} | {r['batches']} | {r['single_topic']} | "
                f"{r['false_negative_rows']} of {r['rows']} | {r['repeated_passages']} | {r['deferred']} | "
                f"{r['topped_up']} | {r['left_out']} |"
            )
    lines += [
        "",
        "`first`: 32 clusters, passages may repeat (the sampler of the `tas-balanced` cells of "
        "`eval/results/students_scifact.md`). `now`: clusters of about 4 batches, no passage twice in a batch.",
    ]
    (RESULTS / "tas_batches_scifact.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="train")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = measure(args.split, args.epochs, args.seed)
    (RESULTS / "tas_batches_scifact.json").write_text(json.dumps(result, indent=2) + "\n")
    write_md(result)
    print((RESULTS / "tas_batches_scifact.md").read_text())


if __name__ == "__main__":
    main()
