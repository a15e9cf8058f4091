"""Search an index folder written by ``irdistill index`` (Distill-VQ, IVF-PQ, PQ or sparse)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from irdistill.data.collection import Collection
from irdistill.data.lines import read_lines
from irdistill.errors import InputError
from irdistill.retrieval.base import Retriever

__all__ = ["SavedIndexRetriever"]


class SavedIndexRetriever(Retriever):
    """The index file of a folder (``index.json``, ``index.faiss`` or ``index.npz``,
    ``doc_ids.txt``) with the model it was built with encoding the queries.

    :meth:`index` reads the file (no encoding) and checks that the collection's corpus is the one
    the index was built from. Result rows are the folder's ``doc_ids.txt`` lines.

    Args:
        folder: the index folder.
        encoder: a :class:`~irdistill.encoding.DenseEncoder` for the queries (default: the
            folder's model, loaded on first use) — faiss kinds.
        sparse_student: the sparse student for the queries (default: the folder's model) — sparse.
        batch_size, max_seq_length, model_device, cache, cache_root: query encoding settings.
        backend: the query encoder's inference backend (:mod:`irdistill.backends`; default: the one
            ``index.json`` records, else torch).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        encoder: Any = None,
        sparse_student: Any = None,
        batch_size: int = 64,
        max_seq_length: int | None = None,
        model_device: str | None = None,
        backend: str | None = None,
        cache: bool = True,
        cache_root: str | os.PathLike[str] | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        self.folder = Path(folder)
        meta = self.folder / "index.json"
        if not meta.is_file():
            raise InputError(f"{self.folder}: no index.json (not a folder written by irdistill index)")
        self.info = json.loads(meta.read_text(encoding="utf-8"))
        self.name = self.info["kind"]
        self.label = self.info.get("model", self.name)
        backend = backend or self.info.get("backend", "torch")
        if self.name == "sparse":
            from irdistill.retrieval.sparse import SparseRetriever

            self._queries: Any = SparseRetriever(
                sparse_student if sparse_student is not None else self.info["model"],
                batch_size=batch_size,
                max_seq_length=max_seq_length,
                device=model_device,
                backend=backend,
                show_progress_bar=show_progress_bar,
                max_active_dims=self.info.get("params", {}).get("max_active_dims"),
            )
        else:
            from irdistill.encoding import DenseEncoder

            self._queries = (
                encoder
                if encoder is not None
                else DenseEncoder(
                    self.info["model"],
                    batch_size=batch_size,
                    max_seq_length=max_seq_length,
                    device=model_device,
                    backend=backend,
                    cache=cache,
                    cache_root=cache_root,
                    show_progress_bar=show_progress_bar,
                )
            )
        self._index: Any = None

    @property
    def backend(self) -> str:
        """The query encoder's inference backend."""
        return str(getattr(self._queries, "backend_used", None) or getattr(self._queries, "backend", "torch"))

    def index(self, collection: Collection) -> None:
        built_from = self.info.get("corpus_fingerprint")
        if built_from is not None and built_from != collection.corpus_fingerprint():
            raise InputError(f"{self.folder}: the index was built from another corpus than {collection.label}'s")
        start = time.perf_counter()
        path = self.folder / self.info["file"]
        if self.name == "sparse":
            from irdistill.indexes.sparse import SparseIndex

            self._index = SparseIndex.load(path)
            self._index.posting_lists()
        else:
            from irdistill.indexes.faiss_indexes import load_index

            self._index = load_index(path, device="cpu")
        self.build_seconds = time.perf_counter() - start  # reading the file
        self.doc_ids = [
            line.rstrip("\r\n") for _, line in read_lines(self.folder / self.info.get("doc_ids", "doc_ids.txt"))
        ]
        if len(self.doc_ids) != self._index.ntotal:
            raise InputError(
                f"{self.folder}: doc_ids.txt has {len(self.doc_ids)} lines for {self._index.ntotal} indexed vectors"
            )

    def encode_queries(self, query_ids: Sequence[str], texts: Sequence[str], *, cache: bool = True) -> Any:
        if self.name == "sparse":
            matrix = self._queries.encode_queries(query_ids, texts)
            self.query_seconds = self._queries.query_seconds
            return matrix
        start = time.perf_counter()
        if cache and self._queries.cache:
            embeddings = self._queries.encode(list(query_ids), list(texts), side="query").embeddings
        else:
            embeddings = self._queries.embed(list(texts), "query")
        self.query_seconds = time.perf_counter() - start
        return embeddings

    def search_encoded(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._check_indexed()
        return self._index.search(queries, k)

    @property
    def nbytes(self) -> int:
        return (self.folder / self.info["file"]).stat().st_size
