"""Encode texts with a sparse student into CSR matrices, batch by batch."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp

from irdistill.errors import InputError

if TYPE_CHECKING:
    from sentence_transformers import SparseEncoder

__all__ = ["SparseEncoded", "encode_sparse"]

logger = logging.getLogger(__name__)

Side = Literal["query", "document"]


@dataclass
class SparseEncoded:
    """Sparse vectors of one list of texts, as a ``(n, V)`` CSR matrix."""

    matrix: sp.csr_matrix
    seconds: float

    @property
    def avg_nnz(self) -> float:
        """Average number of non-zero terms per text."""
        return self.matrix.nnz / self.matrix.shape[0] if self.matrix.shape[0] else 0.0

    @property
    def per_second(self) -> float:
        return self.matrix.shape[0] / self.seconds if self.seconds > 0 else float("inf")


def _to_csr(embeddings: Any) -> sp.csr_matrix:
    if getattr(embeddings, "is_sparse", False):
        coo = embeddings.detach().coalesce().cpu()
        rows, cols = coo.indices().numpy()
        values = coo.values().float().numpy()
        matrix = sp.csr_matrix((values, (rows, cols)), shape=tuple(coo.shape), dtype=np.float32)
    else:
        dense = embeddings.detach().float().cpu().numpy() if hasattr(embeddings, "detach") else np.asarray(embeddings)
        matrix = sp.csr_matrix(dense, dtype=np.float32)
    matrix.eliminate_zeros()
    return matrix


def encode_sparse(
    model: SparseEncoder,
    texts: Sequence[str],
    *,
    side: Side = "document",
    batch_size: int = 32,
    show_progress_bar: bool = True,
    max_active_dims: int | None = None,
    ids: Sequence[str] | None = None,
) -> SparseEncoded:
    """Encode ``texts`` as queries or documents into a CSR matrix (rows in input order).

    Texts are sorted by length (longest first, as sentence-transformers does) so batches pad
    little; each batch's sparse tensor is converted to CSR at once, so memory stays ``O(nnz)``.

    Args:
        model: a ``SparseEncoder`` (SPLADE or inference-free).
        side: ``query`` (``encode_query``, the query route) or ``document``.
        batch_size: texts per forward pass.
        max_active_dims: keep only the largest weights per text (``None``: the model's setting).
        ids: names of the texts, for error messages.
    """
    from tqdm.auto import tqdm

    if side not in ("query", "document"):
        raise InputError(f"side must be query or document, got {side!r}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            name = ids[i] if ids is not None else f"#{i}"
            raise InputError(f"{side} {name!r} has an empty text")
    n = len(texts)
    if n == 0:
        raise InputError(f"no {side} texts to encode")
    encode = model.encode_query if side == "query" else model.encode_document
    order = np.argsort([-len(t) for t in texts], kind="stable")
    parts: list[sp.csr_matrix] = []
    start = time.perf_counter()
    starts = range(0, n, batch_size)
    for b in tqdm(starts, desc=f"encode {side}s", disable=not show_progress_bar, unit="batch"):
        batch = [texts[i] for i in order[b : b + batch_size]]
        embeddings = encode(
            batch,
            batch_size=len(batch),
            show_progress_bar=False,
            convert_to_tensor=True,
            convert_to_sparse_tensor=True,
            max_active_dims=max_active_dims,
        )
        parts.append(_to_csr(embeddings))
    seconds = time.perf_counter() - start
    stacked = sp.vstack(parts, format="csr", dtype=np.float32)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    matrix = stacked[inverse]
    matrix.sort_indices()
    encoded = SparseEncoded(matrix, seconds)
    logger.info(
        "%d %s texts encoded in %.1fs (%.1f/s), %.1f non-zeros each",
        n,
        side,
        seconds,
        encoded.per_second,
        encoded.avg_nnz,
    )
    return encoded
