"""The retriever interface: index one collection's corpus, encode queries, search, make a run.

Every place that searches a corpus goes through it: the evaluation harness, candidate mining,
the training evaluator, the sparse and saved-index evaluations. A retriever keeps the figures
the harness reports (corpus encoding and index build times, query encoding time, size).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from irdistill.data.collection import Collection, Run
from irdistill.errors import InputError

__all__ = ["Retriever", "hits_to_run", "search_batched", "retrieve"]


class Retriever(ABC):
    """A first-stage retriever over one corpus.

    :meth:`index` takes a collection's corpus (``doc_ids`` are then the ids of the result rows);
    :meth:`encode_queries` turns query texts into what :meth:`search_encoded` takes (embeddings,
    sparse vectors, or the texts themselves for BM25); :meth:`search` does both. Searches return
    ``(scores, rows)`` of shape ``(n_queries, k)``, best first, rows into :attr:`doc_ids`
    (``-1`` pads a short list).
    """

    name: str = "retriever"
    doc_ids: list[str]
    corpus_seconds: float = 0.0
    """Encoding (or tokenising) the corpus; for a cache hit, the run that filled the cache."""
    corpus_cached: bool = False
    build_seconds: float = 0.0
    """Building the index from the encoded corpus."""
    query_seconds: float = 0.0
    """The last :meth:`encode_queries` call (for a cache hit, the encoding that filled it)."""

    @abstractmethod
    def index(self, collection: Collection) -> None:
        """Encode and index ``collection``'s corpus."""

    def encode_queries(self, query_ids: Sequence[str], texts: Sequence[str], *, cache: bool = True) -> Any:
        """What :meth:`search_encoded` takes. ``cache=False`` for ad hoc batches of queries whose
        embeddings are not worth keeping. The default passes the texts on (tokenised in search)."""
        self.query_seconds = 0.0
        return list(texts)

    @abstractmethod
    def search_encoded(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows per encoded query."""

    def search(
        self, query_ids: Sequence[str], texts: Sequence[str], k: int, *, cache: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.search_encoded(self.encode_queries(query_ids, texts, cache=cache), k)

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Size of the index in bytes."""

    def figures(self) -> dict[str, float]:
        """Figures of this kind of retriever that the harness adds to its report (e.g. sparsity)."""
        return {}

    def _check_indexed(self) -> None:
        if not getattr(self, "doc_ids", None):
            raise InputError(f"{self.name}: call index(collection) before searching")


def hits_to_run(doc_ids: Sequence[str], query_ids: Sequence[str], scores: np.ndarray, rows: np.ndarray) -> Run:
    """``qid -> {doc_id: score}`` from search results (``-1`` rows dropped), best first."""
    return {
        qid: {doc_ids[i]: float(s) for s, i in zip(scores[r], rows[r], strict=True) if i >= 0}
        for r, qid in enumerate(query_ids)
    }


def search_batched(
    retriever: Retriever, queries: Any, k: int, *, batch_size: int = 1024, show_progress_bar: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`Retriever.search_encoded` over ``batch_size`` queries at a time (memory stays flat
    for many queries), results concatenated."""
    from tqdm.auto import tqdm

    n = queries.shape[0] if hasattr(queries, "shape") else len(queries)
    parts = [
        retriever.search_encoded(queries[start : start + batch_size], k)
        for start in tqdm(range(0, n, batch_size), desc="search", unit="batch", disable=not show_progress_bar)
    ]
    if not parts:
        return np.zeros((0, k), dtype=np.float32), np.zeros((0, k), dtype=np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def retrieve(
    retriever: Retriever,
    collection: Collection,
    k: int,
    *,
    query_ids: Sequence[str] | None = None,
    cache: bool = True,
    show_progress_bar: bool = False,
) -> Run:
    """Search a collection's queries (or ``query_ids`` of them) against the indexed corpus."""
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    qids = list(query_ids) if query_ids is not None else collection.query_ids
    encoded = retriever.encode_queries(qids, [collection.queries[q] for q in qids], cache=cache)
    scores, rows = search_batched(retriever, encoded, k, show_progress_bar=show_progress_bar)
    return hits_to_run(retriever.doc_ids, qids, scores, rows)
