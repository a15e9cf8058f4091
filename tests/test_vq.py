"""Distill-VQ: faiss initialisation, training, export and its consistency with faiss, bad input."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from irdistill.errors import InputError
from irdistill.students import (
    DistillVQ,
    faiss_codes,
    listnet_loss,
    save,
    to_faiss,
    train_distill_vq,
)

DIM, NLIST, M, NBITS, SEED = 32, 16, 8, 6, 0
SHAPE = {"nlist": NLIST, "m": M, "nbits": NBITS, "seed": SEED, "show_progress_bar": False}
TRAIN = {"epochs": 2, "lr": 3e-3, "batch_size": 32, "top_k": 20, "temperature": 0.05}


def synthetic(seed: int = 0, n: int = 2000, nq: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit-norm documents; queries that differ from the documents as real ones do.

    Queries weight an 8-dim random sub-space (not aligned with the PQ sub-spaces) and share a
    common offset direction (the query/document gap of asymmetric encoders). An L2 quantizer of the
    documents ignores both; distilling ``<q, d>`` does not, so training helps by a wide margin.
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(40, DIM))
    x = centers[rng.integers(0, 40, n)] + 0.5 * rng.normal(size=(n, DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    basis, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    weights = np.full(DIM, 0.15)
    weights[:8] = 1.0
    q = (x[rng.integers(0, n, nq)] + 0.3 * rng.normal(size=(nq, DIM))) @ (basis * weights) @ basis.T
    q += basis[:, 8]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x.astype(np.float32), q.astype(np.float32)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, q = synthetic()
    return x, q[:400], q[400:]


@pytest.fixture(scope="module")
def init_model(data) -> DistillVQ:
    x, q_train, _ = data
    return train_distill_vq(x, q_train, epochs=0, **SHAPE)


@pytest.fixture(scope="module")
def trained(data) -> DistillVQ:
    x, q_train, _ = data
    return train_distill_vq(x, q_train, **SHAPE, **TRAIN)


def recall_at_10(model: DistillVQ, x: np.ndarray, q: np.ndarray) -> float:
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    _, ids = model.search(q, 10)
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, ids, strict=True)]))


def full_listnet(model: DistillVQ, x: np.ndarray, q: np.ndarray) -> float:
    """ListNet over the whole corpus for each query."""
    with torch.no_grad():
        qt = torch.from_numpy(q)
        return listnet_loss(qt @ torch.from_numpy(x).T, model(qt), TRAIN["temperature"]).item()


def assert_same_top_k(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], atol: float = 1e-4) -> None:
    """Same scores; same ids except where scores tie within ``atol`` (order among ties is free)."""
    (sa, ia), (sb, ib) = a, b
    np.testing.assert_allclose(sa, sb, atol=atol)
    for row in range(len(ia)):
        sure = sa[row] > sa[row, -1] + atol  # clearly inside the top-k, not tied at its edge
        assert set(ia[row][sure]) <= set(ib[row]) and set(ib[row][sure]) <= set(ia[row])
    assert np.mean(ia == ib) > 0.95


def test_listnet_loss_values() -> None:
    t = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    assert listnet_loss(t, t).item() == pytest.approx(0.0, abs=1e-7)
    p = torch.softmax(t[:1], -1)
    kl = (p * (p.log() - np.log(0.5))).sum().item()
    assert listnet_loss(t[:1], torch.zeros(1, 2)).item() == pytest.approx(kl, rel=1e-6)
    assert listnet_loss(t, t + 5.0).item() == pytest.approx(0.0, abs=1e-6)  # shift-invariant
    with pytest.raises(InputError, match="n_candidates"):
        listnet_loss(t, torch.zeros(2, 3))


def test_initialisation_equals_plain_faiss(data, init_model: DistillVQ) -> None:
    x, _, q_test = data
    quantizer = faiss.IndexFlatIP(DIM)
    plain = faiss.IndexIVFPQ(quantizer, DIM, NLIST, M, NBITS, faiss.METRIC_INNER_PRODUCT)
    plain.cp.seed = plain.pq.cp.seed = SEED
    plain.train(x)
    plain.add(x)
    plain.nprobe = 4
    ours = to_faiss(init_model, x, nprobe=4)
    np.testing.assert_array_equal(faiss.vector_to_array(ours.pq.centroids), faiss.vector_to_array(plain.pq.centroids))
    for got, want in zip(faiss_codes(ours), faiss_codes(plain), strict=True):
        np.testing.assert_array_equal(got, want)
    s1, i1 = ours.search(q_test, 10)
    s2, i2 = plain.search(q_test, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)


def test_training_lowers_listnet_and_improves_recall(data, init_model: DistillVQ, trained: DistillVQ) -> None:
    x, q_train, q_test = data
    assert [h["epoch"] for h in trained.history] == [0.0, 1.0]
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    for q in (q_train, q_test):
        assert full_listnet(trained, x, q) < 0.9 * full_listnet(init_model, x, q)
    before, after = recall_at_10(init_model, x, q_test), recall_at_10(trained, x, q_test)
    assert after > before + 0.04, (before, after)  # about 0.44 -> 0.53 on this data


def test_export_round_trip(tmp_path: Path, data, trained: DistillVQ) -> None:
    x, _, q_test = data
    index = to_faiss(trained, x, nprobe=NLIST)
    path = tmp_path / "sub" / "distill_vq.faiss"
    save(index, path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    loaded = faiss.read_index(str(path))
    assert isinstance(loaded, faiss.IndexIVFPQ) and loaded.ntotal == len(x)
    assert loaded.metric_type == faiss.METRIC_INNER_PRODUCT and loaded.nprobe == NLIST
    lists, codes = faiss_codes(loaded)
    np.testing.assert_array_equal(lists, trained.list_ids.numpy())
    np.testing.assert_array_equal(codes, trained.codes.numpy())
    np.testing.assert_allclose(loaded.quantizer.reconstruct_n(0, NLIST), trained.centroids.detach().numpy())
    # nprobe = nlist: the exhaustive student ranking; fewer lists: faiss's coarse selection
    assert_same_top_k(loaded.search(q_test[:20], 10), trained.search(q_test[:20], 10))
    loaded.nprobe = 3
    assert_same_top_k(loaded.search(q_test[:20], 10), trained.search(q_test[:20], 10, nprobe=3))


def test_pq_only_exports_index_pq(tmp_path: Path, data) -> None:
    x, q_train, q_test = data
    model = train_distill_vq(x, q_train, **{**SHAPE, "nlist": None}, **{**TRAIN, "epochs": 1}, use_ivf=False)
    assert model.centroids is None and model.nlist == 0
    path = tmp_path / "pq.faiss"
    save(to_faiss(model, x), path)
    loaded = faiss.read_index(str(path))
    assert isinstance(loaded, faiss.IndexPQ) and not isinstance(loaded, faiss.IndexIVFPQ)
    lists, codes = faiss_codes(loaded)
    assert lists is None
    np.testing.assert_array_equal(codes, model.codes.numpy())
    assert_same_top_k(loaded.search(q_test[:20], 10), model.search(q_test[:20], 10))


def test_same_seed_same_model_and_options(data, trained: DistillVQ) -> None:
    x, q_train, _ = data
    again = train_distill_vq(x, q_train, **SHAPE, **TRAIN)
    torch.testing.assert_close(again.codebooks, trained.codebooks, rtol=0, atol=0)
    torch.testing.assert_close(again.centroids, trained.centroids, rtol=0, atol=0)
    # positives, pseudo-queries, step-wise re-assignment and the coarse term run together
    positives = [[int(i)] for i in np.argmax(q_train[:50] @ x.T, axis=1)]
    model = train_distill_vq(
        x,
        q_train[:50],
        positives=positives,
        pseudo_queries=True,
        reassign_every=3,
        ivf_weight=0.5,
        **SHAPE,
        **{**TRAIN, "epochs": 1, "batch_size": 256},
    )
    assert model.ntotal == len(x)
    lists, codes = model.assign(x, store=False)
    assert torch.equal(lists, model.list_ids) and torch.equal(codes, model.codes)  # final re-assignment


def test_reassignment_reports_the_share_of_codes_that_moved(data, trained: DistillVQ) -> None:
    import copy

    from irdistill.students.vq import _reassign

    x = data[0]
    model = copy.deepcopy(trained)
    assert _reassign(model, x) == (0.0, 0.0)  # nothing moved since training's last re-assignment
    before = model.codes.clone()
    with torch.no_grad():  # swap two codewords of sub-space 0: exactly their documents move
        model.codebooks[0, [0, 1]] = model.codebooks[0, [1, 0]].clone()
    lists_changed, codes_changed = _reassign(model, x)
    moved = int(((before[:, 0] == 0) | (before[:, 0] == 1)).sum())
    assert moved > 0 and lists_changed == 0.0
    assert codes_changed == pytest.approx(moved / before.numel())
    assert torch.equal(
        model.codes[:, 0][before[:, 0] == 0], torch.ones(int((before[:, 0] == 0).sum()), dtype=torch.long)
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"m": 5}, "must be >= 1 and divide the dimension 32"),
        ({"nlist": 3000}, "nlist=3000 inverted lists but only 2000 documents"),
        ({"nbits": 0}, "nbits must be in 1..16"),
        ({"nbits": 17}, "nbits must be in 1..16"),
        ({"nbits": 12}, "4096 codewords per sub-quantizer but only 2000 documents"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"ivf_weight": 1.0, "use_ivf": False}, "needs use_ivf=True"),
        ({"positives": [[5000]]}, "one list per query"),
        ({"positives": [[5000]] * 400}, r"positives of query row 0 must be document rows in 0..1999"),
    ],
)
def test_bad_arguments(data, change: dict, message: str) -> None:
    x, q_train, _ = data
    with pytest.raises(InputError, match=message):
        train_distill_vq(x, q_train, **{**SHAPE, **TRAIN, "epochs": 0, **change})


def test_bad_embeddings(data) -> None:
    x, q_train, _ = data
    nan = x.copy()
    nan[7, 3] = np.nan
    with pytest.raises(InputError, match="NaN or inf .first at row 7"):
        train_distill_vq(nan, q_train, **SHAPE)
    with pytest.raises(InputError, match=r"shape \(n, dim\), got shape \(64000,\)"):
        train_distill_vq(x.ravel(), q_train, **SHAPE)
    with pytest.raises(InputError, match="query embeddings have dimension 16, expected 32"):
        train_distill_vq(x, q_train[:, :16], **SHAPE)
    with pytest.raises(InputError, match="query embeddings contain NaN"):
        train_distill_vq(x, np.full((3, DIM), np.inf, dtype=np.float32), **SHAPE)
    model = DistillVQ(torch.zeros(4, 16, 8))
    with pytest.raises(InputError, match="assign"):
        model.search(q_train, 10)
    with pytest.raises(InputError, match="dimension 16, expected 32"):
        to_faiss(model, x[:, :16])


def test_teacher_top_k_is_the_exact_inner_product_top_k(data) -> None:
    from irdistill.students.vq import _teacher_top_k

    x, q_train, _ = data
    top = _teacher_top_k(q_train[:50], x, 7, torch.device("cpu"))
    exact = np.argsort(-(q_train[:50] @ x.T), axis=1, kind="stable")[:, :7]
    scores = np.take_along_axis(q_train[:50] @ x.T, exact, axis=1)
    mine = np.take_along_axis(q_train[:50] @ x.T, top.astype(np.int64), axis=1)
    np.testing.assert_allclose(mine, scores, atol=1e-6)  # the same top 7 (ties may swap rows)


def test_max_queries_trains_on_a_seeded_sample(data, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    x, q_train, _ = data
    args = {**SHAPE, **TRAIN, "epochs": 1}
    with caplog.at_level(logging.INFO, logger="irdistill.students.vq"):
        sampled = train_distill_vq(x, q_train, max_queries=100, **args)
    assert "Distill-VQ: 100 queries" in caplog.text and "teacher top-20 of 100 queries" in caplog.text
    again = train_distill_vq(x, q_train, max_queries=100, **args)
    assert torch.equal(sampled.codebooks, again.codebooks)  # the same sample, the same training
    everything = train_distill_vq(x, q_train, max_queries=10_000, **args)  # more than there are: all
    assert torch.equal(everything.codebooks, train_distill_vq(x, q_train, **args).codebooks)
    with pytest.raises(InputError, match="max_queries must be >= 1"):
        train_distill_vq(x, q_train, max_queries=0, **args)
