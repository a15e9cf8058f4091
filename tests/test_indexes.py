from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np
import pytest

from irdistill.errors import InputError, MissingDependencyError, UnknownNameError
from irdistill.indexes import INDEXES, FlatIndex, HNSWIndex, IVFPQIndex, load_index, make_index


def clustered(n: int = 3000, dim: int = 32, centers: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, dim))
    x = c[rng.integers(0, centers, n)] + 0.3 * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def test_flat_is_exact_inner_product() -> None:
    x = clustered(500, 16)
    q = clustered(20, 16, seed=1)
    index = make_index("flat", 16, device="cpu")
    index.add(x)
    scores, ids = index.search(q, 10)
    brute = q @ x.T
    expected = np.argsort(-brute, axis=1)[:, :10]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected, axis=1), rtol=1e-5)


@pytest.mark.parametrize(
    ("kind", "params", "min_recall"),
    [
        ("hnsw", {"m": 16, "ef_search": 128}, 0.95),
        ("ivfpq", {"m": 16, "nprobe": 32}, 0.6),
    ],
)
def test_approximate_indexes_find_most_of_flat_top10(kind: str, params: dict, min_recall: float) -> None:
    x = clustered()
    q = clustered(50, seed=2)
    flat = make_index("flat", 32, device="cpu")
    flat.add(x)
    _, truth = flat.search(q, 10)
    index = make_index(kind, 32, device="cpu", **params)
    index.add(x)
    _, ids = index.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])
    assert recall >= min_recall
    assert index.ntotal == len(x)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq", "pq"])
def test_save_load_round_trip_is_a_plain_faiss_file(kind: str, tmp_path: Path) -> None:
    x = clustered(2000, 32)
    index = make_index(kind, 32, device="cpu")
    index.add(x)
    before = index.search(x[:5], 5)
    path = tmp_path / "sub" / f"{kind}.faiss"
    index.save(path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    raw = faiss.read_index(str(path))
    assert raw.ntotal == 2000
    loaded = load_index(path, device="cpu")
    assert type(loaded) is type(index)
    after = loaded.search(x[:5], 5)
    np.testing.assert_array_equal(before[1], after[1])
    assert loaded.nbytes == index.nbytes
    same = INDEXES.get(kind).load(path, device="cpu")
    np.testing.assert_array_equal(same.search(x[:5], 5)[1], before[1])


def test_ivfpq_parameters_survive_save(tmp_path: Path) -> None:
    index = IVFPQIndex(32, nlist=20, m=8, nbits=6, nprobe=7, device="cpu")
    index.add(clustered(2000, 32))
    index.save(tmp_path / "i.faiss")
    loaded = load_index(tmp_path / "i.faiss", device="cpu")
    assert isinstance(loaded, IVFPQIndex)
    assert (loaded.nlist, loaded.m, loaded.nbits, loaded.nprobe) == (20, 8, 6, 7)


def test_loading_an_index_of_another_kind_names_both(tmp_path: Path) -> None:
    index = FlatIndex(8, device="cpu")
    index.add(clustered(50, 8))
    index.save(tmp_path / "flat.faiss")
    with pytest.raises(InputError, match="IndexFlatIP, not a hnsw index"):
        HNSWIndex.load(tmp_path / "flat.faiss", device="cpu")


def test_corrupt_and_missing_index_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.faiss"
    bad.write_bytes(b"this is not a faiss index at all")
    with pytest.raises(InputError, match="bad.faiss: not a readable FAISS index"):
        load_index(bad)
    with pytest.raises(InputError, match="no such index file"):
        load_index(tmp_path / "missing.faiss")


def test_bad_parameters() -> None:
    with pytest.raises(InputError, match="m=7 must divide the dimension 32"):
        IVFPQIndex(32, m=7, device="cpu")
    index = IVFPQIndex(32, nlist=100, m=8, device="cpu")
    with pytest.raises(InputError, match="nlist=100 inverted lists but only 50 vectors"):
        index.add(clustered(50, 32))
    flat = FlatIndex(32, device="cpu")
    with pytest.raises(InputError, match=r"shape \(n, 32\)"):
        flat.add(np.zeros((4, 16), dtype=np.float32))
    with pytest.raises(InputError, match="NaN or inf"):
        flat.add(np.full((2, 32), np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="add vectors first"):
        flat.search(np.zeros((1, 32), dtype=np.float32), 3)
    flat.add(clustered(10, 32))
    with pytest.raises(InputError, match="k must be >= 1"):
        flat.search(np.zeros((1, 32), dtype=np.float32), 0)


def test_k_larger_than_the_index_is_clipped() -> None:
    flat = FlatIndex(8, device="cpu")
    flat.add(clustered(5, 8))
    scores, ids = flat.search(clustered(2, 8, seed=3), 100)
    assert ids.shape == (2, 5)
    assert sorted(ids[0]) == [0, 1, 2, 3, 4]


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="unknown index kind 'annoy'; known: flat, hnsw, ivfpq, pq, sparse"):
        make_index("annoy", 8)


@pytest.mark.skipif(hasattr(faiss, "StandardGpuResources"), reason="this faiss has GPU support")
def test_cuda_without_gpu_faiss_says_how_to_install() -> None:
    with pytest.raises(MissingDependencyError, match="pip install"):
        FlatIndex(8, device="cuda")


def test_auto_device_logs_its_choice(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="irdistill.indexes.faiss_indexes"):
        index = HNSWIndex(8, device="auto")
    assert index.device == "cpu"
    assert "hnsw index on CPU" in caplog.text


def test_a_new_index_kind_is_one_registered_class(beir_dir: Path, tiny_model_dir: Path, cache_dir: Path) -> None:
    """A plug-in index for the harness: one Index class registered in INDEXES; evaluate_retrieval
    and the retrievers find it by name with its options."""
    from irdistill.data import load_collection
    from irdistill.evaluation import evaluate_retrieval
    from irdistill.indexes.base import Index

    @INDEXES.register("toy-exact")
    class ToyExact(Index):
        """Exact inner product in NumPy, scores rounded to ``decimals``."""

        kind = "toy-exact"

        def __init__(self, dim: int, *, decimals: int = 6, device: str = "cpu") -> None:
            self.dim, self.decimals, self.rows = dim, decimals, np.zeros((0, dim), dtype=np.float32)

        def add(self, embeddings: np.ndarray) -> None:
            self.rows = np.vstack([self.rows, embeddings])

        def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            scores = np.round(queries @ self.rows.T, self.decimals)
            ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            return np.take_along_axis(scores, ids, axis=1), ids

        def save(self, path) -> None:
            np.save(path, self.rows)

        @classmethod
        def load(cls, path, **kwargs) -> ToyExact:
            rows = np.load(path)
            index = cls(rows.shape[1], **kwargs)
            index.rows = rows
            return index

        @property
        def ntotal(self) -> int:
            return len(self.rows)

        @property
        def nbytes(self) -> int:
            return int(self.rows.nbytes)

    try:
        test = load_collection(beir_dir, split="test")
        toy = evaluate_retrieval(
            str(tiny_model_dir),
            test,
            index="toy-exact",
            index_params={"decimals": 5},
            k=5,
            metrics=["ndcg@10"],
            show_progress_bar=False,
        )
        flat = evaluate_retrieval(
            str(tiny_model_dir), test, index="flat", k=5, metrics=["ndcg@10"], show_progress_bar=False
        )
        assert toy.index == "toy-exact" and toy.performance.index_bytes == 8 * 32 * 4
        assert {q: list(h) for q, h in toy.run.items()} == {q: list(h) for q, h in flat.run.items()}
        with pytest.raises(InputError, match="toy-exact index has no option 'm'"):
            evaluate_retrieval(str(tiny_model_dir), test, index="toy-exact", index_params={"m": 4})
    finally:
        INDEXES.unregister("toy-exact")


def test_a_new_built_index_kind_is_one_registered_builder(
    beir_dir: Path, tiny_model_dir: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """A plug-in kind for ``irdistill index``: one builder registered in BUILDERS; its keyword
    options are checked, the folder is written and evaluated like the built-in kinds'."""
    from irdistill.data import load_collection
    from irdistill.workflows.indexing import BUILDERS, _Built, build_index, check_build_options

    @BUILDERS.register("exact")
    def build_exact(job, *, normalise: bool = False) -> _Built:
        docs = job.doc_embeddings()
        index = FlatIndex(docs.shape[1], device="cpu")
        index.add(docs / np.linalg.norm(docs, axis=1, keepdims=True) if normalise else docs)
        return _Built(index, {"normalise": normalise})

    try:
        test = load_collection(beir_dir, split="test")
        built = build_index(
            "exact",
            test,
            str(tiny_model_dir),
            tmp_path / "exact",
            evaluate=True,
            metrics=["ndcg@10"],
            k=5,
            show_progress_bar=False,
        )
        assert built.info["kind"] == "exact" and built.info["bytes_per_vector"] == 4 * 32
        assert (tmp_path / "exact" / "index.faiss").is_file() and 0 <= built.metrics["ndcg@10"] <= 1
        with pytest.raises(InputError, match="exact index has no option 'm'"):
            check_build_options("exact", {"m": 4})
    finally:
        BUILDERS.unregister("exact")


def test_ivfpq_trains_on_a_sample_adds_in_blocks_from_a_memory_map(tmp_path: Path, monkeypatch) -> None:
    """Training takes max(64 nlist, 256 * 2^nbits) rows (all of a small corpus); rows are added a
    block at a time, so a memory-mapped array gives the same index as one in memory; nprobe
    follows nlist when not given."""
    import irdistill.indexes.faiss_indexes as fi

    x = np.random.default_rng(1).standard_normal((6000, 16)).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    mapped = np.load(path, mmap_mode="r")
    trained: list[int] = []
    original = faiss.IndexIVFPQ.train
    monkeypatch.setattr(faiss.IndexIVFPQ, "train", lambda self, v: (trained.append(len(v)), original(self, v))[1])
    monkeypatch.setattr(fi, "ADD_BLOCK", 1000)
    a, b = (IVFPQIndex(16, nlist=8, m=4, nbits=4, device="cpu") for _ in range(2))
    a.add(mapped)
    b.add(x)
    assert trained == [4096, 4096]  # max(64 x 8, 256 x 16) of 6000
    assert a.ntotal == b.ntotal == 6000 and a.nprobe == 16
    q = x[:20]
    np.testing.assert_array_equal(a.search(q, 5)[1], b.search(q, 5)[1])
    small = IVFPQIndex(16, nlist=8, m=4, nbits=4, device="cpu")
    small.add(x[:3000])
    assert trained[-1] == 3000  # a corpus smaller than the sample trains on all of it
    big = IVFPQIndex(16, nlist=2048, m=4, nbits=4, device="cpu")
    big._build(10**7)  # what the first add of 10M rows would set up (no training here)
    assert big.training_size(10**7) == 64 * 2048 and big.nprobe == 2048 // 64
    assert IVFPQIndex(16, nlist=2048, nprobe=8, m=4, device="cpu").nprobe == 8  # a given nprobe stays


def test_two_level_centroids_are_exactly_k_even_with_tiny_clusters() -> None:
    """An uneven sample (one far, tiny group) still gives exactly k centroids, none empty."""
    from irdistill.indexes.faiss_indexes import two_level_centroids

    rng = np.random.default_rng(1)
    x = np.vstack([rng.standard_normal((3000, 8)), 50 + rng.standard_normal((3, 8))]).astype(np.float32)
    centroids = two_level_centroids(x, 100)
    assert centroids.shape == (100, 8) and np.isfinite(centroids).all()
    assert len(np.unique(centroids.round(4), axis=0)) == 100


def test_large_ivf_trains_its_coarse_level_in_two_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above TWO_LEVEL_NLIST the coarse centroids come from faiss's two-level k-means; on
    clustered data the index finds the neighbours about as well as with one-level k-means."""
    import irdistill.indexes.faiss_indexes as fi

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((64, 32)).astype(np.float32)
    x = centres[rng.integers(0, 64, 6000)] + 0.1 * rng.standard_normal((6000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    queries = x[:200] + 0.02 * rng.standard_normal((200, 32)).astype(np.float32)
    exact = FlatIndex(32, device="cpu")
    exact.add(x)
    _, truth = exact.search(queries, 10)
    calls: list[tuple[int, int]] = []
    real = fi.two_level_centroids

    def spy(sample, k, **kw):  # type: ignore[no-untyped-def]
        calls.append((len(sample), k))
        out = real(sample, k, **kw)
        assert out.shape == (k, sample.shape[1])
        return out

    monkeypatch.setattr(fi, "two_level_centroids", spy)
    recalls = {}
    for threshold in (10**9, 16):  # one level, then two
        monkeypatch.setattr(fi, "TWO_LEVEL_NLIST", threshold)
        index = IVFPQIndex(32, nlist=64, m=16, nprobe=8, device="cpu")
        index.add(x)
        _, found = index.search(queries, 10)
        recalls[threshold] = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    assert calls == [(6000, 64)]
    assert recalls[16] >= recalls[10**9] - 0.05 and recalls[16] > 0.4


class FakeGpuFaiss:
    """A CPU faiss with a fake GPU layer: cloning records its options and returns the CPU index,
    GpuParameterSpace records what it sets."""

    def __init__(self, real: object) -> None:
        self.real, self.clones, self.parameters = real, [], []

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    StandardGpuResources = object

    @staticmethod
    def get_num_gpus() -> int:
        return 1

    class GpuMultipleClonerOptions:
        shard = False
        useFloat16LookupTables = False

    def index_cpu_to_all_gpus(self, index: object, co: object) -> object:
        self.clones.append({"shard": co.shard, "fp16": co.useFloat16LookupTables})
        return index

    def GpuParameterSpace(self) -> object:  # noqa: N802 - faiss's name
        fake = self

        class Space:
            def set_index_parameter(self, index: object, name: str, value: int) -> None:
                fake.parameters.append((name, value))
                index.nprobe = value

        return Space()


def test_gpu_paths_with_a_mocked_gpu_faiss(monkeypatch: pytest.MonkeyPatch) -> None:
    """PQ stays on the CPU (faiss has no GPU flat-PQ); IVF-PQ clones with fp16 lookup tables once
    fp32 ones exceed 48 KiB, and its nprobe reaches the GPU index from the first search."""
    import faiss

    from irdistill.indexes import faiss_indexes

    fake = FakeGpuFaiss(faiss)
    monkeypatch.setattr(faiss_indexes, "_faiss", lambda: fake)
    x = np.random.default_rng(0).normal(size=(2000, 64)).astype(np.float32)
    pq = faiss_indexes.PQIndex(64, m=8, nbits=4)
    assert pq.device == "cpu"
    with pytest.raises(InputError, match="no GPU implementation of a pq index"):
        faiss_indexes.PQIndex(64, m=8, device="cuda")
    small = faiss_indexes.IVFPQIndex(64, nlist=8, m=8, nbits=8, nprobe=3)  # 4 x 8 x 256 = 8 KiB
    assert small.device == "cuda"
    small.add(x)
    small.search(x[:5], 10)
    assert fake.clones == [{"shard": True, "fp16": False}] and fake.parameters == [("nprobe", 3)]
    wide = faiss_indexes.IVFPQIndex(64, nlist=8, m=64, nbits=8, nprobe=2)  # 64 KiB in fp32
    wide.add(x)
    wide.search(x[:5], 10)
    assert fake.clones[-1] == {"shard": True, "fp16": True} and fake.parameters[-1] == ("nprobe", 2)
