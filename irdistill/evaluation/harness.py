"""The evaluation harness: encode, index, search top-k, score with ranx, report speed and memory.

One call evaluates one retriever on one collection::

    from irdistill.data import load_collection
    from irdistill.evaluation import evaluate_retrieval

    collection = load_collection("beir/scifact/test")
    result = evaluate_retrieval("sentence-transformers/all-MiniLM-L6-v2", collection, out="runs/minilm")
    result.metrics["ndcg@10"]

The retriever is a sentence-transformers model (dense; any FAISS index kind), ``bm25``, or any
:class:`~irdistill.retrieval.Retriever` (sparse students, saved indexes, a model in memory).
Corpus (and query) embeddings are cached on disk (see :mod:`irdistill.encoding`), so a
re-run skips encoding and never loads the model.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from irdistill.data.collection import Collection, Run
from irdistill.data.trec import write_run
from irdistill.errors import InputError
from irdistill.evaluation.metrics import DEFAULT_METRICS, evaluate_run, parse_metrics
from irdistill.memory import peak_rss_mb
from irdistill.paths import write_text_atomic
from irdistill.retrieval import Retriever, hits_to_run, make_retriever, search_batched

logger = logging.getLogger(__name__)


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
    figures: dict[str, float] = field(default_factory=dict)
    """What this kind of retriever adds (sparse: non-zeros per document and query)."""
    backend: str | None = None
    """The encoder's inference backend (:mod:`irdistill.backends`); ``None`` for bm25."""


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
        cells += [
            f"{self.performance.docs_per_second:.1f}",
            f"{self.performance.queries_per_second:.1f}",
            f"{self.performance.index_bytes / 2**20:.2f}",
        ]
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
        summary = {
            "model": self.model,
            "dataset": self.dataset,
            "split": self.split,
            "index": self.index,
            "k": self.k,
            "num_queries": self.performance.num_queries,
            "metrics": self.metrics,
        }
        write_text_atomic(folder / "perf.json", json.dumps(asdict(self.performance), indent=2) + "\n")
        write_text_atomic(folder / "table.md", self.table_header() + "\n" + self.table_row() + "\n")
        write_text_atomic(folder / "metrics.json", json.dumps(summary, indent=2) + "\n")
        logger.info("results written to %s", folder)


def evaluate_retrieval(
    model: str | Retriever,
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
    backend: str = "torch",
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    show_progress_bar: bool = True,
) -> EvaluationResult:
    """Evaluate a retriever end to end on ``collection``: index, encode queries, search, score.

    Args:
        model: a sentence-transformers model (path, ``$IRDISTILL_MODELS`` name or hub id),
            ``bm25``, or a :class:`~irdistill.retrieval.Retriever` (not yet indexed; the
            settings below then do not apply).
        collection: from :func:`irdistill.data.load_collection`.
        index: FAISS index kind for dense models (``flat``, ``hnsw``, ``ivfpq``).
        index_params: keyword arguments of the index class (``{"m": 48, "nprobe": 32}``).
        k: documents retrieved per query.
        metrics: ranx metric strings (empty: the run and figures only).
        batch_size: encoding batch size.
        max_seq_length: truncation length; ``None`` keeps the model's own.
        device: faiss device (``auto``, ``cpu``, ``cuda``).
        model_device: torch device for encoding (``None``: sentence-transformers picks).
        backend: the encoder's inference backend (:mod:`irdistill.backends`): ``torch``,
            ``onnx``, ``onnx-O2``, ``onnx-int8``, ``openvino``, ``auto``.
        cache: read/write the embedding cache.
        cache_dir: the cache folder (default ``$IRDISTILL_CACHE``).
        out: when given, the folder that receives run, metrics, perf and table files.
    """
    started = time.perf_counter()
    names = parse_metrics(metrics) if metrics else []
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    if not collection.queries:
        raise InputError(f"collection {collection.name} has no queries")
    if isinstance(model, Retriever):
        retriever, label = model, getattr(model, "label", model.name)
    else:
        retriever = make_retriever(
            model,
            index=index,
            index_params=index_params,
            device=device,
            batch_size=batch_size,
            max_seq_length=max_seq_length,
            model_device=model_device,
            cache=cache,
            cache_root=cache_dir,
            backend=backend,
            show_progress_bar=show_progress_bar,
        )
        label = model
    query_ids = collection.query_ids
    retriever.index(collection)
    queries = retriever.encode_queries(query_ids, collection.query_texts())
    t0 = time.perf_counter()
    scores, ids = search_batched(retriever, queries, k, show_progress_bar=show_progress_bar)
    search_seconds = time.perf_counter() - t0
    run = hits_to_run(retriever.doc_ids, query_ids, scores, ids)
    empty = sum(1 for hits in run.values() if not hits)
    if empty:
        logger.warning("%d of %d queries retrieved nothing (no shared term with any document?)", empty, len(run))
    values = evaluate_run(collection.qrels, run, names) if names else {}
    nq, nd = len(query_ids), len(retriever.doc_ids)
    corpus_seconds, query_seconds = retriever.corpus_seconds, retriever.query_seconds
    perf = Performance(
        num_docs=nd,
        num_queries=nq,
        corpus_cached=retriever.corpus_cached,
        corpus_encode_seconds=round(corpus_seconds, 3),
        docs_per_second=round(nd / corpus_seconds, 2) if corpus_seconds > 0 else 0.0,
        query_encode_seconds=round(query_seconds, 3),
        index_build_seconds=round(retriever.build_seconds, 3),
        index_bytes=retriever.nbytes,
        search_seconds=round(search_seconds, 4),
        queries_per_second=round(nq / search_seconds, 1) if search_seconds > 0 else 0.0,
        latency_ms_per_query=round(1000 * (query_seconds + search_seconds) / nq, 3),
        total_seconds=round(time.perf_counter() - started, 2),
        peak_rss_mb=round(peak_rss_mb(), 1),
        figures=retriever.figures(),
        backend=getattr(retriever, "backend", None),
    )
    result = EvaluationResult(
        model=str(label),
        dataset=collection.name,
        split=collection.split,
        index=retriever.name,
        k=k,
        metrics=values,
        performance=perf,
        run=run,
    )
    if values:
        logger.info("%s on %s: %s", label, collection.label, ", ".join(f"{m}={v:.4f}" for m, v in values.items()))
    if out is not None:
        result.write(out)
    return result
