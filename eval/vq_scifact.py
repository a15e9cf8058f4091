"""SciFact test: compressed indexes of all-MiniLM-L6-v2 embeddings, faiss training vs Distill-VQ.

Usage:  IRDISTILL_DATA=../shared/data python eval/vq_scifact.py [--epochs 6] [--lr 1e-3]

At equal bytes per vector (PQ m x 8 bits = m bytes of codes per document; IVF adds a list id
that faiss stores beside the codes), for m = 48 and 24, with and without an IVF layer:

- ``flat``: exact inner-product search (1536 bytes per vector), the reference;
- ``faiss``: ``IndexPQ`` / ``IndexIVFPQ`` trained by faiss's k-means on the document embeddings;
- ``distill-vq``: the same structure, initialised from that faiss training, then centroids and
  codebooks learned by ListNet distillation of the embeddings' own scores
  (:func:`irdistill.students.vq.train_distill_vq`), exported with ``to_faiss`` as a plain faiss
  index and searched through faiss.

Distillation queries: the 809 SciFact *train* queries plus every corpus document as a pseudo
query (no test query and no label is used). IVF indexes search ``--nprobe`` lists. Metrics on the
300 test queries: nDCG@10, recall@10 and recall@100 from the qrels (ranx), and the overlap of
the top 100 with the flat index's top 100. Embeddings come from the embedding cache.

Writes eval/results/vq_scifact.json
(``{"<config>": {"method", "bytes_per_vector", "recall@10", "recall@100", "ndcg@10", ...}}``)
and eval/results/vq_scifact.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from irdistill.data import load_collection
from irdistill.encoding import DenseEncoder
from irdistill.evaluation import evaluate_run
from irdistill.paths import write_text_atomic

RESULTS = Path(__file__).parent / "results"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
METRICS = ["ndcg@10", "recall@10", "recall@100"]


def to_run(scores: np.ndarray, ids: np.ndarray, qids: list[str], doc_ids: list[str]) -> dict[str, dict[str, float]]:
    return {
        q: {doc_ids[j]: float(s) for s, j in zip(scores[i], ids[i], strict=True) if j >= 0} for i, q in enumerate(qids)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 24], help="PQ sub-quantizers (bytes)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument(
        "--ivf-weights",
        type=float,
        nargs="+",
        default=[0.0, 1.0],
        help="weights of the coarse (centroid) ListNet term to compare on the IVF rows "
        "(0: off; 1: equal to the PQ term, as in Distill-VQ and LibVQ)",
    )
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="faiss and torch threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import faiss
    import torch

    from irdistill.students.vq import to_faiss, train_distill_vq

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    test = load_collection("beir/scifact/test")
    train = load_collection("beir/scifact/train")
    encoder = DenseEncoder(MODEL, show_progress_bar=True)
    docs = encoder.encode(test.doc_ids, test.doc_texts(), side="document").embeddings.astype(np.float32)
    queries = encoder.encode(test.query_ids, test.query_texts(), side="query").embeddings.astype(np.float32)
    train_q = encoder.encode(train.query_ids, train.query_texts(), side="query").embeddings.astype(np.float32)
    dim = docs.shape[1]

    flat = faiss.IndexFlatIP(dim)
    flat.add(docs)
    flat_scores, flat_ids = flat.search(queries, 100)
    flat_top = [set(r[r >= 0].tolist()) for r in flat_ids]
    rows: dict[str, dict] = {}

    def record(name: str, method: str, nbytes: int, index, seconds: float | None, extra: dict | None = None) -> None:
        scores, ids = index.search(queries, 100)
        metrics = evaluate_run(test.qrels, to_run(scores, ids, test.query_ids, test.doc_ids), METRICS)
        overlap = float(np.mean([len(flat_top[i] & set(r[r >= 0].tolist())) / 100 for i, r in enumerate(ids)]))
        rows[name] = {
            "method": method,
            "bytes_per_vector": nbytes,
            **{m: round(v, 4) for m, v in metrics.items()},
            "overlap@100_vs_flat": round(overlap, 4),
            "train_seconds": None if seconds is None else round(seconds, 1),
            **(extra or {}),
        }
        logging.info("%s: %s", name, rows[name])

    record("flat", "flat", 4 * dim, flat, None)
    for m in args.sizes:
        for use_ivf in (False, True):
            shape = f"{'ivf-' if use_ivf else ''}pq{m}x8"
            runs = [("faiss", 0, 0.0, f"faiss-{shape}")]
            if use_ivf:
                runs += [("distill-vq", args.epochs, w, f"distill-vq-{shape}-coarse{w:g}") for w in args.ivf_weights]
            else:
                runs.append(("distill-vq", args.epochs, 0.0, f"distill-vq-{shape}"))
            for method, epochs, weight, name in runs:
                start = time.perf_counter()
                model = train_distill_vq(
                    docs,
                    train_q,
                    m=m,
                    nbits=8,
                    use_ivf=use_ivf,
                    epochs=epochs,
                    lr=args.lr,
                    temperature=args.temperature,
                    top_k=args.top_k,
                    ivf_weight=weight,
                    pseudo_queries=epochs > 0,
                    show_progress_bar=False,
                )
                seconds = time.perf_counter() - start
                index = to_faiss(model, docs, nprobe=args.nprobe)
                extra = {"nlist": model.nlist, "nprobe": index.nprobe, "ivf_weight": weight} if use_ivf else {}
                record(name, method, m, index, seconds, extra)

    write_text_atomic(RESULTS / "vq_scifact.json", json.dumps(rows, indent=2) + "\n")
    lines = [
        f"SciFact test (300 queries, 5,183 docs), all-MiniLM-L6-v2 embeddings ({dim}-d). Distill-VQ: "
        f"{args.epochs} epochs, Adam lr {args.lr}, τ {args.temperature}; on the IVF rows the coarse (centroid) "
        f"ListNet term with weight {' and '.join(f'{w:g}' for w in args.ivf_weights)} (`-coarseW`), "
        f"teacher top-{args.top_k} + in-batch "
        "candidates, queries = 809 train queries + the documents as pseudo queries; IVF searches "
        f"nprobe {args.nprobe}. Bytes = PQ code bytes per document. Produced by `python eval/vq_scifact.py`.",
        "",
        "| config | method | bytes/vector | nDCG@10 | recall@10 | recall@100 | top-100 overlap with flat | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['method']} | {r['bytes_per_vector']} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | "
            f"{r['recall@100']:.4f} | {r['overlap@100_vs_flat']:.3f} | {r['train_seconds'] or ''} |"
        )
    lines.append("")
    for m in args.sizes:
        gain = rows[f"distill-vq-pq{m}x8"]["recall@100"] - rows[f"faiss-pq{m}x8"]["recall@100"]
        lines.append(f"- pq{m}x8: Distill-VQ minus faiss recall@100 = {100 * gain:+.2f} points")
        for w in args.ivf_weights:
            shape = f"ivf-pq{m}x8"
            gain = rows[f"distill-vq-{shape}-coarse{w:g}"]["recall@100"] - rows[f"faiss-{shape}"]["recall@100"]
            lines.append(
                f"- {shape}, coarse weight {w:g}: Distill-VQ minus faiss recall@100 = {100 * gain:+.2f} points"
            )
    write_text_atomic(RESULTS / "vq_scifact.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
