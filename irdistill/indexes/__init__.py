"""Indexes: a small ABC and FAISS flat / HNSW / IVF-PQ implementations found by name."""

from __future__ import annotations

from typing import Any

from irdistill.indexes.base import INDEXES, Index
from irdistill.indexes.faiss_indexes import (
    FaissIndex,
    FlatIndex,
    HNSWIndex,
    IVFPQIndex,
    faiss_gpu_count,
    load_index,
    resolve_device,
)

__all__ = [
    "INDEXES", "Index", "FaissIndex", "FlatIndex", "HNSWIndex", "IVFPQIndex", "make_index",
    "load_index", "faiss_gpu_count", "resolve_device",
]


def make_index(kind: str, dim: int, **params: Any) -> Index:
    """Build an empty index by name: ``make_index("ivfpq", 384, m=48, nprobe=32)``."""
    return INDEXES.get(kind)(dim, **params)
