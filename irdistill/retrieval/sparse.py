"""Sparse retrieval: a learned sparse student (SPLADE or inference-free) over an inverted index."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from irdistill.data.collection import Collection
from irdistill.retrieval.base import Retriever

__all__ = ["SparseRetriever"]


class SparseRetriever(Retriever):
    """A ``SparseEncoder`` (or its folder / hub id, or a masked LM used as SPLADE) and a
    :class:`~irdistill.indexes.SparseIndex` of the corpus.

    :meth:`figures` adds the sparsity the harness reports: average non-zeros per document and per
    query, and the total posting-list length.
    """

    name = "sparse"

    def __init__(
        self,
        model: str | os.PathLike[str] | Any,
        *,
        batch_size: int = 32,
        max_active_dims: int | None = None,
        device: str | None = None,
        max_seq_length: int | None = None,
        backend: str = "torch",
        show_progress_bar: bool = False,
    ) -> None:
        from irdistill.backends import backend_of
        from irdistill.students.sparse import load_sparse_student

        self.student = load_sparse_student(model, device=device, max_seq_length=max_seq_length, backend=backend)
        self.backend = backend_of(self.student)
        self.batch_size, self.max_active_dims = batch_size, max_active_dims
        self.show_progress_bar = show_progress_bar
        self._index: Any = None
        self.doc_nnz = self.query_nnz = 0.0

    def _encode(self, texts: Sequence[str], side: str, ids: Sequence[str]) -> Any:
        from irdistill.students.sparse import encode_sparse

        return encode_sparse(
            self.student,
            list(texts),
            side=side,
            batch_size=self.batch_size,  # type: ignore[arg-type]
            show_progress_bar=self.show_progress_bar,
            max_active_dims=self.max_active_dims,
            ids=list(ids),
        )

    def index(self, collection: Collection) -> None:
        from irdistill.indexes.sparse import SparseIndex

        docs = self._encode(collection.doc_texts(), "document", collection.doc_ids)
        self.corpus_seconds, self.doc_nnz = docs.seconds, docs.avg_nnz
        start = time.perf_counter()
        self._index = SparseIndex(docs.matrix.shape[1])
        self._index.add(docs.matrix)
        self._index.posting_lists()  # built now, so search time is search only
        self.build_seconds = time.perf_counter() - start
        self.doc_ids = collection.doc_ids

    def encode_queries(self, query_ids: Sequence[str], texts: Sequence[str], *, cache: bool = True) -> Any:
        queries = self._encode(texts, "query", query_ids)
        self.query_seconds, self.query_nnz = queries.seconds, queries.avg_nnz
        return queries.matrix

    def search_encoded(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._check_indexed()
        return self._index.search(queries, k)

    @property
    def nbytes(self) -> int:
        return int(self._index.nbytes) if self._index is not None else 0

    def figures(self) -> dict[str, float]:
        return {
            "doc_nnz": round(self.doc_nnz, 2),
            "query_nnz": round(self.query_nnz, 2),
            "index_nnz": int(self._index.nnz) if self._index is not None else 0,
        }
