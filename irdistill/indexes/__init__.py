"""Indexes: a small ABC and FAISS flat / HNSW / IVF-PQ implementations found by name."""

from __future__ import annotations

import inspect
from typing import Any

from irdistill.errors import InputError
from irdistill.indexes.base import INDEXES, Index
from irdistill.indexes.faiss_indexes import (
    FaissIndex,
    FlatIndex,
    HNSWIndex,
    IVFPQIndex,
    PQIndex,
    faiss_gpu_count,
    load_index,
    resolve_device,
    wrap_faiss_index,
)
from irdistill.indexes.sparse import SparseIndex

__all__ = [
    "INDEXES",
    "Index",
    "FaissIndex",
    "SparseIndex",
    "check_index_params",
    "FlatIndex",
    "HNSWIndex",
    "IVFPQIndex",
    "PQIndex",
    "make_index",
    "load_index",
    "wrap_faiss_index",
    "faiss_gpu_count",
    "resolve_device",
]


def check_index_params(kind: str, params: dict[str, Any]) -> None:
    """Fail fast (before any encoding) on an unknown kind or an option the kind does not take."""
    cls = INDEXES.get(kind)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "dim")]
    for key in params:
        if key not in accepted:
            raise InputError(f"{kind} index has no option {key!r}; options: {', '.join(accepted)}")


def make_index(kind: str, dim: int, **params: Any) -> Index:
    """Build an empty index by name: ``make_index("ivfpq", 384, m=48, nprobe=32)``."""
    check_index_params(kind, params)
    return INDEXES.get(kind)(dim, **params)
