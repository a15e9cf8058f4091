"""The index interface every dense or sparse index implements."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from irdistill.registry import Registry


class Index(ABC):
    """Vectors in, top-k out. Ids are row positions (0 .. ntotal-1) in the order added.

    Subclasses register under a name (``flat``, ``hnsw``, ``ivfpq`` ...) in :data:`INDEXES`.
    """

    kind: ClassVar[str]
    file_suffix: ClassVar[str] = ".faiss"
    """What :meth:`save` writes (``index.faiss``, ``index.npz``), for folders of indexes."""

    @abstractmethod
    def add(self, embeddings: np.ndarray) -> None:
        """Add rows (training the index first when it needs training)."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores, ids)``, both of shape ``(n_queries, k)``; missing hits have id -1."""

    @abstractmethod
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index atomically to ``path``."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> Index:
        """Read an index written by :meth:`save`."""

    @property
    @abstractmethod
    def ntotal(self) -> int:
        """Number of vectors held."""

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Size of the serialised index in bytes."""

    def describe(self) -> dict[str, Any]:
        """What an index folder's ``index.json`` says about the index: format, sizes."""
        n = self.ntotal
        return {"format": type(self).__name__, "ntotal": n, "bytes_per_vector": round(self.nbytes / n, 1) if n else 0.0}


INDEXES: Registry[type[Index]] = Registry("index kind")
