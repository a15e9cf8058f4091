"""Dense retrieval: a sentence-transformers bi-encoder and a FAISS index of the corpus."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from irdistill.data.collection import Collection
from irdistill.encoding import DenseEncoder
from irdistill.errors import InputError
from irdistill.retrieval.base import Retriever

__all__ = ["DenseRetriever"]


class DenseRetriever(Retriever):
    """A bi-encoder (a model name, or a ``SentenceTransformer`` in memory) over a FAISS index.

    Corpus and whole-split query embeddings go through the embedding cache of
    :class:`~irdistill.encoding.DenseEncoder` (not for a model in memory, which changes while it
    trains); ``encode_queries(..., cache=False)`` encodes ad hoc batches without it.

    Args:
        model: folder, ``$IRDISTILL_MODELS`` name or hub id; or a ``SentenceTransformer``.
        index: FAISS index kind (``flat``, ``hnsw``, ``ivfpq``, ``pq``).
        index_params: keyword arguments of the index class.
        device: faiss device (``auto``, ``cpu``, ``cuda``).
        batch_size, max_seq_length, model_device: encoding settings.
        backend: inference backend of the encoder (:mod:`irdistill.backends`; default torch).
        cache, cache_root: the embedding cache.
    """

    def __init__(
        self,
        model: str | Any,
        *,
        index: str = "flat",
        index_params: dict[str, Any] | None = None,
        device: str = "auto",
        batch_size: int = 64,
        max_seq_length: int | None = None,
        model_device: str | None = None,
        backend: str = "torch",
        cache: bool = True,
        cache_root: str | os.PathLike[str] | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        from irdistill.indexes import check_index_params, resolve_device

        if index == "sparse":
            raise InputError(
                "the sparse index serves sparse students (irdistill.retrieval.SparseRetriever); "
                "dense models use flat, hnsw, ivfpq or pq"
            )
        check_index_params(index, index_params or {})
        resolve_device(device, supports_gpu=index != "hnsw", kind=index)
        if isinstance(model, str | os.PathLike):
            self.encoder = DenseEncoder(
                str(model),
                batch_size=batch_size,
                max_seq_length=max_seq_length,
                device=model_device,
                backend=backend,
                cache=cache,
                cache_root=cache_root,
                show_progress_bar=show_progress_bar,
            )
        else:
            self.encoder = DenseEncoder.from_model(model, batch_size=batch_size)
        self.name = index
        self.kind, self.index_params, self.device = index, dict(index_params or {}), device
        self.show_progress_bar = show_progress_bar
        self._index: Any = None

    def index(self, collection: Collection) -> None:
        from irdistill.indexes import make_index

        docs = self.encoder.encode_corpus(collection)
        self.corpus_seconds, self.corpus_cached = docs.encode_seconds, docs.cached
        start = time.perf_counter()
        self._index = make_index(self.kind, docs.embeddings.shape[1], device=self.device, **self.index_params)
        self._index.add(docs.embeddings)
        self.build_seconds = time.perf_counter() - start
        self.doc_ids = collection.doc_ids

    def encode_queries(self, query_ids: Sequence[str], texts: Sequence[str], *, cache: bool = True) -> np.ndarray:
        if cache and self.encoder.cache:
            encoded = self.encoder.encode(list(query_ids), list(texts), side="query")
            self.query_seconds = encoded.encode_seconds
            return encoded.embeddings
        start = time.perf_counter()
        embeddings = self.encoder.embed(list(texts), "query")
        self.query_seconds = time.perf_counter() - start
        return embeddings

    def search_encoded(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._check_indexed()
        return self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    @property
    def backend(self) -> str:
        """The encoder's backend (``auto`` resolved once the model has run)."""
        return self.encoder.backend_used

    @property
    def nbytes(self) -> int:
        return int(self._index.nbytes) if self._index is not None else 0
