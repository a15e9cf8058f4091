"""FAISS indexes: flat inner product, HNSW and IVF-PQ, on CPU or (sharded) on all GPUs.

Reused: FAISS itself (``IndexFlatIP``, ``IndexHNSWFlat``, ``IndexIVFPQ``,
``index_cpu_to_all_gpus``). Files are plain FAISS files: ``faiss.read_index(path)`` opens them.
Scores are inner products, so a model with cosine similarity must give normalised vectors
(the encoder does that with ``normalize="auto"``).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from irdistill.errors import InputError, MissingDependencyError
from irdistill.indexes.base import INDEXES, Index
from irdistill.paths import atomic_path

logger = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda"]

GPU_INSTALL = 'pip uninstall -y faiss-cpu && pip install "irdistill[gpu]"  (or: pip install faiss-gpu-cu12)'


def _faiss() -> Any:
    import faiss

    return faiss


def faiss_gpu_count() -> int:
    """GPUs faiss can use (0 for a CPU-only faiss build)."""
    faiss = _faiss()
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None and hasattr(faiss, "StandardGpuResources") else 0


def resolve_device(device: str, supports_gpu: bool = True, kind: str = "") -> str:
    """Pick ``cpu`` or ``cuda`` for a requested ``auto`` / ``cpu`` / ``cuda``, logging the choice."""
    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cpu":
        return "cpu"
    faiss = _faiss()
    if device == "cuda":
        if not hasattr(faiss, "StandardGpuResources"):
            raise MissingDependencyError(f"device='cuda' needs GPU faiss: {GPU_INSTALL}")
        if faiss_gpu_count() == 0:
            raise InputError("device='cuda' but faiss sees no GPU")
        if not supports_gpu:
            raise InputError(f"faiss has no GPU implementation of a {kind} index; use device='cpu'")
        return "cuda"
    gpus = faiss_gpu_count()
    if gpus and supports_gpu:
        logger.info("faiss: %d GPU(s) found; %s index sharded over them", gpus, kind)
        return "cuda"
    reason = "no GPU faiss or no GPU" if not gpus else f"no GPU {kind} index in faiss"
    logger.info("faiss: %s index on CPU (%s)", kind, reason)
    return "cpu"


GPU_SHARED_MEMORY = 49_152
"""Bytes of shared memory a GPU block may use by default: the limit faiss-gpu's IVF-PQ lookup
tables must fit (``4 * m * 2**nbits`` in fp32, half in fp16)."""

ADD_BLOCK = 65_536
"""Rows converted and added at a time: memory beyond the index stays one block."""

TWO_LEVEL_NLIST = 1024
"""From this many inverted lists up, IVF-PQ's coarse k-means runs in two levels."""

POINTS_PER_CENTROID = 64
"""Training points per k-means centroid (faiss asks for 39 to 256; it subsamples to 256 itself)."""


def _as_matrix(x: np.ndarray, dim: int, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != dim:
        raise InputError(f"{what} must have shape (n, {dim}), got {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise InputError(f"{what} contain NaN or inf")
    return np.ascontiguousarray(x, dtype=np.float32)


class FaissIndex(Index):
    """Common code of the FAISS indexes: training, GPU cloning, atomic save, load."""

    supports_gpu = True

    def __init__(self, dim: int, *, device: Device = "auto", index: Any = None) -> None:
        if dim < 1:
            raise InputError(f"dimension must be >= 1, got {dim}")
        self.dim = dim
        self.device = resolve_device(device, self.supports_gpu, self.kind)
        self._index = index  # the CPU index; built lazily when it depends on the data size
        self._gpu_index: Any = None

    # subclasses build their CPU index here; n is the number of rows of the first add
    def _build(self, n: int) -> Any:
        raise NotImplementedError

    @property
    def faiss_index(self) -> Any:
        """The underlying CPU FAISS index."""
        if self._index is None:
            raise InputError(f"the {self.kind} index is empty: add vectors first")
        return self._index

    def add(self, embeddings: np.ndarray) -> None:
        """Add rows, block by block, so a memory-mapped array is never copied whole; an index
        that needs training is trained first, on :meth:`training_sample` of the rows."""
        x = np.asarray(embeddings) if not isinstance(embeddings, np.memmap) else embeddings
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InputError(f"embeddings must have shape (n, {self.dim}), got {tuple(x.shape)}")
        first = _as_matrix(x[:ADD_BLOCK], self.dim, "embeddings")  # bad values fail before anything is built
        if self._index is None:
            self._index = self._build(len(x))
        if not self._index.is_trained:
            sample = self.training_sample(x)
            logger.info("training %s index on %d of %d vectors", self.kind, len(sample), len(x))
            self._train(sample)
        for start in range(0, len(x), ADD_BLOCK):
            self._index.add(first if start == 0 else _as_matrix(x[start : start + ADD_BLOCK], self.dim, "embeddings"))
        self._gpu_index = None

    def training_size(self, n: int) -> int:
        """How many of ``n`` rows train the index (all of them unless a subclass says less)."""
        return n

    def _train(self, sample: np.ndarray) -> None:
        self._index.train(sample)

    def training_sample(self, x: np.ndarray) -> np.ndarray:
        """:meth:`training_size` rows drawn uniformly (a fixed seed, in row order so a memory map
        is read forward), or all rows when that is all of them; float32, checked."""
        n = len(x)
        size = self.training_size(n)
        if size >= n:
            return _as_matrix(x, self.dim, "embeddings")
        rows = np.sort(np.random.default_rng(0).choice(n, size=size, replace=False))
        return _as_matrix(x[rows], self.dim, "embeddings")

    def _searcher(self) -> Any:
        if self.device != "cuda":
            return self.faiss_index
        if self._gpu_index is None:
            faiss = _faiss()
            options = faiss.GpuMultipleClonerOptions()
            options.shard = True
            self._clone_options(options)
            self._gpu_index = faiss.index_cpu_to_all_gpus(self.faiss_index, co=options)
        return self._gpu_index

    def _clone_options(self, options: Any) -> None:
        """Set what this kind needs on faiss's GPU cloner options (nothing by default)."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        q = _as_matrix(queries, self.dim, "queries")
        scores, ids = self._searcher().search(q, min(k, max(self.ntotal, 1)))
        return scores, ids

    def save(self, path: str | os.PathLike[str]) -> None:
        with atomic_path(path) as tmp:
            _faiss().write_index(self.faiss_index, str(tmp))

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: Device = "auto", **_: Any) -> FaissIndex:
        index = read_faiss_index(path)
        expected = _FAISS_CLASS.get(cls.kind)
        if expected is not None and type(index).__name__ not in expected:
            raise InputError(
                f"{path}: holds a FAISS {type(index).__name__}, not a {cls.kind} index ({' or '.join(expected)})"
            )
        obj = cls.__new__(cls)
        FaissIndex.__init__(obj, index.d, device=device, index=index)
        obj._restore(index)
        return obj

    def _restore(self, index: Any) -> None:
        """Subclasses read their parameters back from a loaded index."""

    @property
    def ntotal(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    @property
    def nbytes(self) -> int:
        return int(_faiss().serialize_index(self.faiss_index).nbytes)

    def describe(self) -> dict[str, Any]:
        """Format, metric, dimension, size and the code a vector is stored as (``m · nbits / 8``
        bytes for the PQ kinds, 4 per dimension for flat)."""
        raw = self.faiss_index
        pq = getattr(raw, "pq", None)
        return {
            "format": f"faiss {type(raw).__name__}",
            "metric": "inner_product",
            "dim": int(raw.d),
            "ntotal": int(raw.ntotal),
            "bytes_per_vector": int(pq.code_size) if pq is not None else 4 * int(raw.d),
        }


def read_faiss_index(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such index file")
    try:
        return _faiss().read_index(str(p))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unreadable"
        raise InputError(f"{p}: not a readable FAISS index file ({first})") from None


@INDEXES.register("flat")
class FlatIndex(FaissIndex):
    """Exact inner-product search (``faiss.IndexFlatIP``): the reference every index is judged by."""

    kind = "flat"

    def _build(self, n: int) -> Any:
        return _faiss().IndexFlatIP(self.dim)


@INDEXES.register("hnsw")
class HNSWIndex(FaissIndex):
    """Graph search (``faiss.IndexHNSWFlat``, inner product); CPU only in faiss.

    Args:
        m: neighbours per node (memory grows with it).
        ef_construction: candidate list size while building.
        ef_search: candidate list size while searching (recall vs speed).
    """

    kind = "hnsw"
    supports_gpu = False

    def __init__(
        self, dim: int, *, m: int = 32, ef_construction: int = 200, ef_search: int = 256, device: Device = "auto"
    ) -> None:
        super().__init__(dim, device=device)
        if m < 2:
            raise InputError(f"HNSW m must be >= 2, got {m}")
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search

    def _build(self, n: int) -> Any:
        faiss = _faiss()
        index = faiss.IndexHNSWFlat(self.dim, self.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.faiss_index.hnsw.efSearch = max(self.ef_search, k)
        return super().search(queries, k)

    def _restore(self, index: Any) -> None:
        self.m = int(index.hnsw.nb_neighbors(1))
        self.ef_construction = int(index.hnsw.efConstruction)
        self.ef_search = int(index.hnsw.efSearch)


@INDEXES.register("ivfpq")
class IVFPQIndex(FaissIndex):
    """Inverted lists plus product quantisation (``faiss.IndexIVFPQ``), inner product.

    Args:
        nlist: number of inverted lists; ``None`` picks ``min(4 * sqrt(n), n // 39)`` at the
            first ``add`` (faiss wants about 39 training points per centroid).
        m: PQ sub-quantisers (bytes per vector at 8 bits); must divide the dimension;
            ``None`` picks ``dim // 8``.
        nbits: bits per sub-quantiser code.
        nprobe: lists visited per query; ``None`` picks ``max(16, nlist // 64)`` once ``nlist``
            is known, so the share of lists searched does not collapse as the corpus grows.

    Training uses ``max(64 * nlist, 256 * 2 ** nbits)`` rows drawn from the first ``add``
    (all of them for a smaller corpus): k-means wants 39 to 256 points a centroid and each PQ
    codebook 256 per code, and faiss subsamples larger training sets itself after copying them.
    """

    kind = "ivfpq"

    def __init__(
        self,
        dim: int,
        *,
        nlist: int | None = None,
        m: int | None = None,
        nbits: int = 8,
        nprobe: int | None = None,
        device: Device = "auto",
    ) -> None:
        super().__init__(dim, device=device)
        self.m = m if m is not None else max(1, dim // 8)
        if self.m < 1 or dim % self.m:
            raise InputError(f"PQ m={self.m} must divide the dimension {dim}")
        if not 1 <= nbits <= 16:
            raise InputError(f"nbits must be in 1..16, got {nbits}")
        if nlist is not None and nlist < 1:
            raise InputError(f"nlist must be >= 1, got {nlist}")
        self.nlist, self.nbits, self.nprobe = nlist, nbits, nprobe

    def _build(self, n: int) -> Any:
        faiss = _faiss()
        nlist = self.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
        if nlist > n:
            raise InputError(f"nlist={nlist} inverted lists but only {n} vectors to train on")
        self.nlist = nlist
        if self.nprobe is None:
            self.nprobe = max(16, nlist // 64)
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, self.m, self.nbits, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = self.nprobe
        return index

    def training_size(self, n: int) -> int:
        return min(n, max(POINTS_PER_CENTROID * (self.nlist or 1), 256 * 2**self.nbits))

    def _train(self, sample: np.ndarray) -> None:
        """From :data:`TWO_LEVEL_NLIST` lists up, the coarse centroids come from faiss's two-level
        k-means (``sqrt(nlist)`` clusters, then each split in proportion to its size): about
        ``2 * sqrt(nlist)`` distances a training point instead of ``nlist`` (MS MARCO's 11,894
        lists: ~1.3 instead of ~70 TFLOP), the usual way faiss trains large IVF indexes."""
        index = self._index
        if index.nlist >= TWO_LEVEL_NLIST and len(sample) > index.nlist:
            index.quantizer.add(two_level_centroids(sample, index.nlist))
        index.train(sample)  # the PQ codebooks (on residuals); the coarse level is set when added above

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.faiss_index.nprobe = self.nprobe
        if self.device == "cuda":  # the clone first, then its nprobe (also on the first search)
            _faiss().GpuParameterSpace().set_index_parameter(self._searcher(), "nprobe", self.nprobe)
        return super().search(queries, k)

    def _clone_options(self, options: Any) -> None:
        """fp16 lookup tables where fp32 ones exceed a GPU block's 48 KiB of shared memory (faiss-gpu
        refuses IVF-PQ with more without cuVS: 768-d at m = 96 needs 96 KiB)."""
        if 4 * self.m * 2**self.nbits > GPU_SHARED_MEMORY:
            options.useFloat16LookupTables = True

    def _restore(self, index: Any) -> None:
        self.nlist, self.m, self.nbits = int(index.nlist), int(index.pq.M), int(index.pq.nbits)
        self.nprobe = int(index.nprobe)


def two_level_centroids(sample: np.ndarray, k: int, niter: int = 10, seed: int = 1234) -> np.ndarray:
    """``k`` k-means centroids in two levels: ``sqrt(k)`` clusters of ``sample``, then each split
    into a share of ``k`` proportional to its size (at least one, at most its points), so a point
    is compared with about ``2 sqrt(k)`` centroids per iteration instead of ``k``."""
    faiss = _faiss()
    dim = sample.shape[1]
    top = faiss.Kmeans(dim, max(1, int(math.sqrt(k))), niter=niter, seed=seed, max_points_per_centroid=2000)
    top.train(sample)
    _, assign = top.index.search(sample, 1)
    assign = assign.ravel()
    sizes = np.bincount(assign, minlength=top.k)
    share = sizes / sizes.sum() * k
    counts = np.where(sizes > 0, np.clip(np.floor(share), 1, sizes), 0).astype(np.int64)
    while counts.sum() < k:  # the remainder to the largest fractions, within each cluster's points
        room = np.where(counts < sizes, share - counts, -np.inf)
        counts[int(np.argmax(room))] += 1
    while counts.sum() > k:
        counts[int(np.argmax(np.where(counts > 1, counts - share, -np.inf)))] -= 1
    parts = []
    for cluster in np.flatnonzero(counts):
        points = np.ascontiguousarray(sample[assign == cluster])
        if counts[cluster] == 1:
            parts.append(points.mean(axis=0, keepdims=True))
            continue
        sub = faiss.Kmeans(dim, int(counts[cluster]), niter=niter, seed=seed, min_points_per_centroid=1)
        sub.train(points)
        parts.append(sub.centroids)
    return np.ascontiguousarray(np.vstack(parts), dtype=np.float32)


@INDEXES.register("pq")
class PQIndex(FaissIndex):
    """Product quantisation without inverted lists (``faiss.IndexPQ``), inner product; on the CPU
    always (faiss has no GPU flat-PQ index: ``device="cuda"`` is refused, ``auto`` stays on the CPU).

    Args:
        m: sub-quantisers (bytes per vector at 8 bits); must divide the dimension;
            ``None`` picks ``dim // 8``.
        nbits: bits per sub-quantiser code.
    """

    kind = "pq"
    supports_gpu = False

    def __init__(self, dim: int, *, m: int | None = None, nbits: int = 8, device: Device = "auto") -> None:
        super().__init__(dim, device=device)
        self.m = m if m is not None else max(1, dim // 8)
        if self.m < 1 or dim % self.m:
            raise InputError(f"PQ m={self.m} must divide the dimension {dim}")
        if not 1 <= nbits <= 16:
            raise InputError(f"nbits must be in 1..16, got {nbits}")
        self.nbits = nbits

    def _build(self, n: int) -> Any:
        if 2**self.nbits > n:
            raise InputError(f"PQ with nbits={self.nbits} needs at least {2**self.nbits} vectors to train, got {n}")
        return _faiss().IndexPQ(self.dim, self.m, self.nbits, _faiss().METRIC_INNER_PRODUCT)

    def training_size(self, n: int) -> int:
        """256 rows per code of a sub-quantiser (faiss's own cap for PQ training)."""
        return min(n, 256 * 2**self.nbits)

    def _restore(self, index: Any) -> None:
        self.m, self.nbits = int(index.pq.M), int(index.pq.nbits)


_FAISS_CLASS = {
    "flat": ("IndexFlatIP",),
    "hnsw": ("IndexHNSWFlat",),
    "ivfpq": ("IndexIVFPQ",),
    "pq": ("IndexPQ",),
}


def load_index(path: str | os.PathLike[str], device: Device = "auto") -> FaissIndex:
    """Open any FAISS file written by irdistill, picking the class from its contents."""
    return wrap_faiss_index(read_faiss_index(path), device=device, source=str(path))


def wrap_faiss_index(index: Any, device: Device = "auto", source: str = "faiss index") -> FaissIndex:
    """An irdistill :class:`FaissIndex` around a faiss index object (e.g. one Distill-VQ exported)."""
    name = type(index).__name__
    for kind, classes in _FAISS_CLASS.items():
        if name in classes:
            cls = INDEXES.get(kind)
            assert issubclass(cls, FaissIndex)
            obj = cls.__new__(cls)
            FaissIndex.__init__(obj, index.d, device=device, index=index)
            obj._restore(index)
            return obj
    raise InputError(f"{source}: FAISS {name} is not an index kind irdistill knows ({', '.join(_FAISS_CLASS)})")
