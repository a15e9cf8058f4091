"""A sparse inverted index: learned sparse (SPLADE-style) document vectors, exact dot-product search.

Documents are rows of a vocabulary-sized ``scipy.sparse`` CSR matrix ``D`` (``n_docs x V``). Search
multiplies the query rows with the transposed index ``D^T`` held as CSR (``V x n_docs``: row ``t``
is the posting list of term ``t``), so only the posting lists of the query's terms are read:

    ``score(q, d) = q · d = sum_{t : q_t != 0} q_t · D[d, t]``

and each query keeps its ``k`` best documents. A document that shares no term with the query has
no score and is not a hit: when fewer than ``k`` documents share a term, the remaining ids are
``-1`` (and their scores ``-inf``), as FAISS marks missing hits. Ties are broken by the lower id.

Reused: scipy's sparse matrix product does the scoring. The file is a plain uncompressed NumPy
``.npz`` (``numpy.load`` opens it) holding the CSR arrays of ``D`` (``data``, ``indices``,
``indptr``, ``shape``) and a ``kind`` marker; it is written atomically.
"""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from irdistill.errors import InputError
from irdistill.indexes.base import INDEXES, Index
from irdistill.paths import atomic_path

__all__ = ["SparseIndex", "FILE_KIND", "as_csr"]

logger = logging.getLogger(__name__)

FILE_KIND = "irdistill-sparse-index"
"""Value of the ``kind`` array in every file :meth:`SparseIndex.save` writes."""
FILE_VERSION = 1

_QUERY_CHUNK = 1024  # query rows multiplied at once, bounds the memory of the score matrix


def as_csr(x: Any, dim: int, what: str) -> sp.csr_matrix:
    """``x`` (a scipy sparse matrix or a 2-D array) as a float32 CSR matrix with ``dim`` columns."""
    if sp.issparse(x):
        m = sp.csr_matrix(x, dtype=np.float32)
    else:
        arr = np.asarray(x)
        if arr.ndim != 2:
            raise InputError(f"{what} must be a 2-D (n, {dim}) sparse matrix or array, got shape {arr.shape}")
        m = sp.csr_matrix(arr, dtype=np.float32)
    if m.shape[1] != dim:
        raise InputError(f"{what} must have {dim} columns (the vocabulary size), got shape {m.shape}")
    if not np.isfinite(m.data).all():
        raise InputError(f"{what} contain NaN or inf")
    m.eliminate_zeros()
    m.sum_duplicates()
    return m


@INDEXES.register("sparse")
class SparseIndex(Index):
    """Exact sparse dot-product search over an inverted index (CPU, scipy).

    Args:
        dim: the vocabulary size (number of columns of every document and query vector).
        device: only ``auto`` or ``cpu``; there is no GPU implementation.

    Example:
        >>> import scipy.sparse as sp
        >>> index = SparseIndex(4)
        >>> index.add(sp.csr_matrix([[1.0, 0, 0, 2.0], [0, 3.0, 0, 0]]))
        >>> scores, ids = index.search(sp.csr_matrix([[0, 0, 0, 1.0]]), k=2)
        >>> ids.tolist(), scores.tolist()
        ([[0, -1]], [[2.0, -inf]])
    """

    kind = "sparse"
    file_suffix = ".npz"

    def __init__(self, dim: int, *, device: str = "auto") -> None:
        if dim < 1:
            raise InputError(f"dimension must be >= 1, got {dim}")
        if device not in ("auto", "cpu"):
            raise InputError(f"the sparse index runs on the CPU only; device must be auto or cpu, got {device!r}")
        self.dim = dim
        self.device = "cpu"
        self._parts: list[sp.csr_matrix] = []
        self._docs: sp.csr_matrix | None = None
        self._postings: sp.csr_matrix | None = None  # D^T as CSR: one row per term

    # -- building -------------------------------------------------------------------------

    @property
    def documents(self) -> sp.csr_matrix:
        """All document vectors added so far, as one ``(ntotal, dim)`` CSR matrix."""
        if self._docs is None or self._parts:
            parts = ([self._docs] if self._docs is not None else []) + self._parts
            self._docs = (
                sp.vstack(parts, format="csr", dtype=np.float32)
                if parts
                else sp.csr_matrix((0, self.dim), dtype=np.float32)
            )
            self._parts = []
        return self._docs

    def add(self, embeddings: Any) -> None:
        """Append document vectors (a ``(n, dim)`` scipy sparse matrix, or a dense array)."""
        docs = as_csr(embeddings, self.dim, "document vectors")
        self._parts.append(docs)
        self._postings = None

    def posting_lists(self) -> sp.csr_matrix:
        """The inverted lists (term x document CSR), built on first use; call it after the last
        :meth:`add` to build them before timing searches."""
        if self._postings is None:
            self._postings = self.documents.T.tocsr()
        return self._postings

    # -- search ---------------------------------------------------------------------------

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` documents per query row: ``(scores, ids)``, both ``(n_queries, k)``."""
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        q = as_csr(queries, self.dim, "queries")
        n = q.shape[0]
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        ids = np.full((n, k), -1, dtype=np.int64)
        if self.ntotal == 0 or n == 0:
            return scores, ids
        postings = self.posting_lists()
        for start in range(0, n, _QUERY_CHUNK):
            hits = (q[start : start + _QUERY_CHUNK] @ postings).tocsr()
            hits.sort_indices()
            for row in range(hits.shape[0]):
                lo, hi = hits.indptr[row], hits.indptr[row + 1]
                if lo == hi:
                    continue
                values, docs = hits.data[lo:hi], hits.indices[lo:hi]
                if len(values) > k:  # keep the k best (and any ties at the cut) before sorting
                    cut = np.partition(values, len(values) - k)[len(values) - k]
                    keep = values >= cut
                    values, docs = values[keep], docs[keep]
                order = np.lexsort((docs, -values))[:k]
                scores[start + row, : len(order)] = values[order]
                ids[start + row, : len(order)] = docs[order]
        return scores, ids

    # -- files ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index atomically to ``path`` (an uncompressed ``.npz``; any file name)."""
        docs = self.documents
        with atomic_path(path) as tmp, tmp.open("wb") as handle:
            np.savez(
                handle,
                kind=np.array(FILE_KIND),
                version=np.array(FILE_VERSION),
                shape=np.array(docs.shape, dtype=np.int64),
                data=docs.data,
                indices=docs.indices,
                indptr=docs.indptr,
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "auto", **_: Any) -> SparseIndex:
        """Read an index written by :meth:`save`; any other file is an :class:`InputError`."""
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: no such index file")
        try:
            loaded = np.load(p, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise InputError(f"{p}: a single NumPy array, not an irdistill sparse index")
            with loaded as npz:
                if "kind" not in npz.files:
                    raise InputError(
                        f"{p}: an .npz file without a 'kind' entry, not an irdistill sparse index "
                        f"(it holds: {', '.join(npz.files) or 'nothing'})"
                    )
                kind = str(npz["kind"])
                if kind != FILE_KIND:
                    raise InputError(f"{p}: holds a {kind!r} file, not an irdistill sparse index ({FILE_KIND!r})")
                version = int(npz["version"])
                if version > FILE_VERSION:
                    raise InputError(
                        f"{p}: sparse index format version {version} is newer than this "
                        f"irdistill reads ({FILE_VERSION}); upgrade irdistill"
                    )
                shape = tuple(int(s) for s in npz["shape"])
                data, indices, indptr = npz["data"], npz["indices"], npz["indptr"]
        except InputError:
            raise
        except (ValueError, TypeError, OSError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise InputError(f"{p}: not a readable irdistill sparse index file ({err})") from None
        if len(shape) != 2 or shape[1] < 1 or shape[0] < 0:
            raise InputError(f"{p}: corrupt sparse index (bad shape {shape})")
        try:
            docs = sp.csr_matrix((data.astype(np.float32, copy=False), indices, indptr), shape=shape)
            docs.check_format(full_check=True)
        except (ValueError, TypeError) as err:
            raise InputError(f"{p}: corrupt sparse index ({err})") from None
        if not np.isfinite(docs.data).all():
            raise InputError(f"{p}: corrupt sparse index (NaN or inf weights)")
        index = cls(shape[1], device=device)
        index._docs = docs
        return index

    # -- sizes ----------------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        return int(sum(part.shape[0] for part in self._parts)) + (0 if self._docs is None else self._docs.shape[0])

    @property
    def nnz(self) -> int:
        """Stored (document, term) weights: the total length of the posting lists."""
        return int(self.documents.nnz)

    @property
    def avg_nnz(self) -> float:
        """Average number of non-zero terms per document (0.0 when empty)."""
        return self.nnz / self.ntotal if self.ntotal else 0.0

    def describe(self) -> dict[str, Any]:
        n = self.ntotal
        return {
            "format": "irdistill sparse index (NumPy .npz, CSR)",
            "dim": self.dim,
            "ntotal": n,
            "bytes_per_vector": round(self.nbytes / n, 1) if n else 0.0,
            "avg_nnz": round(self.avg_nnz, 2),
        }

    @property
    def nbytes(self) -> int:
        """Bytes of the CSR arrays :meth:`save` writes (the file adds a few hundred bytes of headers)."""
        docs = self.documents
        return int(docs.data.nbytes + docs.indices.nbytes + docs.indptr.nbytes)

    def __repr__(self) -> str:
        return f"SparseIndex(dim={self.dim}, ntotal={self.ntotal}, avg_nnz={self.avg_nnz:.1f})"
