"""The evaluation harness: encode, index, search top-k, score with ranx, report speed and memory.

One call evaluates one retriever on one collection::

    from irdistill.data import load_collection
    from irdistill.evaluation import evaluate_retrieval

    collection = load_collection("beir/scifact/test")
    result = evaluate_retrieval("sentence-transformers/all-MiniLM-L6-v2", collection, out="runs/minilm")
    result.metrics["ndcg@10"]

The retriever is a sentence-transformers model (dense; any FAISS index kind) or ``bm25``.
Corpus (and query) embeddings are cached on disk (see :mod:`irdistill.encoding`), so a
re-run skips encoding and never loads the model.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from irdistill.candidates.bm25 import is_bm25
from irdistill.data.collection import Collection, Run
from irdistill.data.trec import write_run
from irdistill.encoding import DenseEncoder
from irdistill.errors import InputError
from irdistill.evaluation.metrics import DEFAULT_METRICS, evaluate_run, parse_metrics
from irdistill.paths import write_text_atomic

logger = logging.getLogger(__name__)



def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class Performance:
    """Speed, size and memory figures of one evaluation."""

    num_docs: int
    num_queries: int
    corpus_cached: bool
    corpus_encode_seconds: float
    docs_per_second: float
    query_encode_seconds: float
    index_build_seconds: float
    index_bytes: int
    search_seconds: float
    queries_per_second: float
    latency_ms_per_query: float
    """Query encoding plus search, per query, in milliseconds."""
    total_seconds: float
    peak_rss_mb: float


@dataclass
class EvaluationResult:
    model: str
    dataset: str
    split: str
    index: str
    k: int
    metrics: dict[str, float]
    performance: Performance
    run: Run = field(repr=False)

    def table_row(self) -> str:
        cells = [self.model, self.index] + [f"{v:.4f}" for v in self.metrics.values()]
        cells += [f"{self.performance.docs_per_second:.1f}", f"{self.performance.queries_per_second:.1f}",
                  f"{self.performance.index_bytes / 2**20:.2f}"]
        return "| " + " | ".join(cells) + " |"

    def table_header(self) -> str:
        names = ["model", "index", *self.metrics, "docs/s", "queries/s", "index MiB"]
        return "| " + " | ".join(names) + " |\n|" + "---|" * len(names)

    def write(self, out: str | os.PathLike[str]) -> None:
        """Write ``run.trec``, ``perf.json``, ``table.md`` and, last, ``metrics.json`` to ``out``.

        ``metrics.json`` is written last, so its presence means the folder is complete (what
        ``irdistill run`` tests to skip the stage after a kill)."""
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        write_run(self.run, folder / "run.trec", tag=Path(self.model).name)
        summary = {"model": self.model, "dataset": self.dataset, "split": self.split,
                   "index": self.index, "k": self.k, "num_queries": self.performance.num_queries,
                   "metrics": self.metrics}
        write_text_atomic(folder / "perf.json", json.dumps(asdict(self.performance), indent=2) + "\n")
        write_text_atomic(folder / "table.md", self.table_header() + "\n" + self.table_row() + "\n")
        write_text_atomic(folder / "metrics.json", json.dumps(summary, indent=2) + "\n")
        logger.info("results written to %s", folder)


def _hits_to_run(collection: Collection, query_ids: list[str], scores: np.ndarray,
                 ids: np.ndarray) -> Run:
    doc_ids = collection.doc_ids
    run: Run = {}
    for row, qid in enumerate(query_ids):
        run[qid] = {doc_ids[i]: float(s) for s, i in zip(scores[row], ids[row], strict=True) if i >= 0}
    return run


def _search_batched(search: Any, queries: Any, k: int, batch_size: int,
                    show_progress_bar: bool) -> tuple[np.ndarray, np.ndarray]:
    from tqdm.auto import tqdm

    parts_s, parts_i = [], []
    starts = range(0, len(queries), batch_size)
    for start in tqdm(starts, desc="search", disable=not show_progress_bar, unit="batch"):
        s, i = search(queries[start:start + batch_size], k)
        parts_s.append(s)
        parts_i.append(i)
    return np.concatenate(parts_s), np.concatenate(parts_i)


def evaluate_retrieval(
    model: str,
    collection: Collection,
    *,
    index: str = "flat",
    index_params: dict[str, Any] | None = None,
    k: int = 1000,
    metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS,
    batch_size: int = 64,
    max_seq_length: int | None = None,
    device: str = "auto",
    model_device: str | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    show_progress_bar: bool = True,
) -> EvaluationResult:
    """Evaluate a retriever end to end on ``collection``.

    Args:
        model: a sentence-transformers model (path, ``$IRDISTILL_MODELS`` name or hub id), or
            ``bm25``.
        collection: from :func:`irdistill.data.load_collection`.
        index: FAISS index kind for dense models (``flat``, ``hnsw``, ``ivfpq``).
        index_params: keyword arguments of the index class (``{"m": 48, "nprobe": 32}``).
        k: documents retrieved per query.
        metrics: ranx metric strings.
        batch_size: encoding batch size.
        max_seq_length: truncation length; ``None`` keeps the model's own.
        device: faiss device (``auto``, ``cpu``, ``cuda``).
        model_device: torch device for encoding (``None``: sentence-transformers picks).
        cache: read/write the embedding cache.
        cache_dir: the cache folder (default ``$IRDISTILL_CACHE``).
        out: when given, the folder that receives run, metrics, perf and table files.
    """
    started = time.perf_counter()
    names = parse_metrics(metrics)
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    if not collection.queries:
        raise InputError(f"collection {collection.name} has no queries")
    query_ids, query_texts = collection.query_ids, collection.query_texts()
    doc_ids = collection.doc_ids
    bm25 = is_bm25(model)
    if not bm25:
        from irdistill.indexes import check_index_params, resolve_device

        if index == "sparse":
            raise InputError("the sparse index serves sparse students (irdistill.students.sparse."
                             "evaluate_sparse); dense models use flat, hnsw, ivfpq or pq")
        check_index_params(index, index_params or {})
        resolve_device(device, supports_gpu=index != "hnsw", kind=index)

    if bm25:
        from irdistill.candidates.bm25 import BM25Retriever

        if index != "flat":
            logger.info("bm25 uses its own sparse index; index=%s ignored", index)
        retriever = BM25Retriever(show_progress_bar=show_progress_bar)
        retriever.index(collection.doc_texts())
        corpus_seconds, cached, build_seconds = retriever.index_seconds, False, 0.0
        index_bytes = int(sum(getattr(a, "nbytes", 0) for a in retriever._retriever.scores.values()))
        query_seconds = 0.0  # tokenisation happens inside search and is timed with it
        t0 = time.perf_counter()
        scores, ids = retriever.search(query_texts, k)
        search_seconds = time.perf_counter() - t0
        index_name = "bm25s"
    else:
        from irdistill.indexes import make_index

        encoder = DenseEncoder(model, batch_size=batch_size, max_seq_length=max_seq_length,
                               device=model_device, cache=cache, cache_root=cache_dir,
                               show_progress_bar=show_progress_bar)
        docs = encoder.encode(doc_ids, collection.doc_texts(), side="document")
        corpus_seconds, cached = docs.encode_seconds, docs.cached
        queries = encoder.encode(query_ids, query_texts, side="query")
        query_seconds = queries.encode_seconds
        t0 = time.perf_counter()
        faiss_index = make_index(index, docs.embeddings.shape[1], device=device, **(index_params or {}))
        faiss_index.add(docs.embeddings)
        build_seconds = time.perf_counter() - t0
        index_bytes = faiss_index.nbytes
        t0 = time.perf_counter()
        scores, ids = _search_batched(faiss_index.search, queries.embeddings, k, 1024, show_progress_bar)
        search_seconds = time.perf_counter() - t0
        index_name = index

    run = _hits_to_run(collection, query_ids, scores, ids)
    values = evaluate_run(collection.qrels, run, names)
    nq = len(query_ids)
    perf = Performance(
        num_docs=len(doc_ids), num_queries=nq, corpus_cached=cached,
        corpus_encode_seconds=round(corpus_seconds, 3),
        docs_per_second=round(len(doc_ids) / corpus_seconds, 2) if corpus_seconds > 0 else 0.0,
        query_encode_seconds=round(query_seconds, 3),
        index_build_seconds=round(build_seconds, 3), index_bytes=index_bytes,
        search_seconds=round(search_seconds, 4),
        queries_per_second=round(nq / search_seconds, 1) if search_seconds > 0 else 0.0,
        latency_ms_per_query=round(1000 * (query_seconds + search_seconds) / nq, 3),
        total_seconds=round(time.perf_counter() - started, 2), peak_rss_mb=round(peak_rss_mb(), 1),
    )
    result = EvaluationResult(model=model, dataset=collection.name, split=collection.split,
                              index=index_name, k=k, metrics=values, performance=perf, run=run)
    logger.info("%s on %s/%s: %s", model, collection.name, collection.split,
                ", ".join(f"{m}={v:.4f}" for m, v in values.items()))
    if out is not None:
        result.write(out)
    return result
