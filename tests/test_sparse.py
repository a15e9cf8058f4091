"""Sparse students and the sparse inverted index: tiny random masked LMs, hand-checked values."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from irdistill.errors import InputError


def _random_csr(rng: np.random.Generator, n: int, dim: int, density: float) -> sp.csr_matrix:
    m = sp.random(n, dim, density=density, format="csr", random_state=rng, dtype=np.float64)
    m.data = rng.uniform(0.1, 3.0, size=m.nnz)
    return m.astype(np.float32)


# -- the sparse index ----------------------------------------------------------------------


def test_sparse_index_matches_dense_topk() -> None:
    from irdistill.indexes import INDEXES
    from irdistill.indexes.sparse import SparseIndex

    rng = np.random.default_rng(0)
    dim, k = 300, 30
    docs = _random_csr(rng, 200, dim, 0.03)
    queries = _random_csr(rng, 25, dim, 0.02)
    index = SparseIndex(dim)
    index.add(docs[:120])
    index.add(docs[120:])  # several adds append in order
    assert INDEXES.get("sparse") is SparseIndex
    assert index.ntotal == 200 and index.nnz == docs.nnz
    assert index.avg_nnz == pytest.approx(docs.nnz / 200)
    scores, ids = index.search(queries, k)
    assert scores.shape == ids.shape == (25, k) and ids.dtype == np.int64

    dense = queries.toarray().astype(np.float64) @ docs.toarray().T.astype(np.float64)
    overlap = (queries.toarray() > 0).astype(int) @ (docs.toarray() > 0).T.astype(int)
    short = full = 0
    for row in range(len(dense)):
        hits = np.flatnonzero(overlap[row])  # documents that share a term with the query
        top = hits[np.argsort(-dense[row, hits], kind="stable")][:k]
        got = ids[row][ids[row] >= 0]
        assert got.tolist() == top.tolist()
        np.testing.assert_allclose(scores[row, : len(top)], dense[row, top], rtol=1e-5)
        if len(top) < k:
            short += 1
            assert (ids[row, len(top) :] == -1).all() and np.isneginf(scores[row, len(top) :]).all()
        else:
            full += 1
    assert short > 0 and full > 0  # both the "k hits" and the "fewer hits than k" paths ran


def test_sparse_index_ties_and_empty() -> None:
    from irdistill.indexes.sparse import SparseIndex

    index = SparseIndex(3)
    scores, ids = index.search(sp.csr_matrix([[1.0, 0, 0]]), 2)
    assert ids.tolist() == [[-1, -1]]
    index.add(np.array([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 0]]))  # dense input is accepted
    scores, ids = index.search(sp.csr_matrix([[2.0, 0, 0], [0, 0, 1.0]]), 2)
    assert ids.tolist() == [[0, 2], [-1, -1]]  # equal scores: lower id first
    assert scores[0].tolist() == [2.0, 2.0]
    with pytest.raises(InputError, match="3 columns"):
        index.search(sp.csr_matrix((1, 4)), 1)
    with pytest.raises(InputError, match="k must be"):
        index.search(sp.csr_matrix((1, 3)), 0)
    with pytest.raises(InputError, match="CPU only"):
        SparseIndex(3, device="cuda")


def test_sparse_index_save_load_round_trip(tmp_path: Path) -> None:
    from irdistill.indexes.sparse import SparseIndex

    rng = np.random.default_rng(1)
    docs, queries = _random_csr(rng, 50, 80, 0.1), _random_csr(rng, 5, 80, 0.1)
    index = SparseIndex(80)
    index.add(docs)
    path = tmp_path / "sub" / "index.sparse"
    index.save(path)
    assert path.is_file() and not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert abs(path.stat().st_size - index.nbytes) < 2048
    loaded = SparseIndex.load(path)
    assert (loaded.ntotal, loaded.dim, loaded.nbytes) == (50, 80, index.nbytes)
    for a, b in zip(index.search(queries, 7), loaded.search(queries, 7), strict=True):
        np.testing.assert_array_equal(a, b)


def test_sparse_index_rejects_other_files(tmp_path: Path) -> None:
    import faiss

    from irdistill.indexes.sparse import SparseIndex

    index = SparseIndex(4)
    index.add(sp.csr_matrix([[1.0, 0, 0, 2.0]]))
    good = tmp_path / "good.npz"
    index.save(good)

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:150])
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"not an index at all")
    flat = tmp_path / "flat.faiss"
    faiss_index = faiss.IndexFlatIP(4)
    faiss_index.add(np.ones((2, 4), dtype=np.float32))
    faiss.write_index(faiss_index, str(flat))
    other_npz = tmp_path / "other.npz"
    np.savez(other_npz, embeddings=np.ones((2, 3)))
    other_kind = tmp_path / "kind.npz"
    np.savez(other_kind, kind=np.array("distill-vq"), version=np.array(1))
    single = tmp_path / "single.npy"
    np.save(single, np.ones(3))
    bad_arrays = tmp_path / "bad.npz"
    np.savez(
        bad_arrays,
        kind=np.array("irdistill-sparse-index"),
        version=np.array(1),
        shape=np.array([2, 4]),
        data=np.ones(3, dtype=np.float32),
        indices=np.array([0, 9, 1], dtype=np.int32),
        indptr=np.array([0, 2, 3]),
    )

    cases = {
        truncated: "not a readable",
        garbage: "not a readable",
        flat: "not a readable",
        other_npz: "without a 'kind'",
        other_kind: "'distill-vq'",
        single: "single NumPy array",
        bad_arrays: "corrupt",
        tmp_path / "missing.npz": "no such index file",
    }
    for path, message in cases.items():
        with pytest.raises(InputError, match=message) as info:
            SparseIndex.load(path)
        assert str(path) in str(info.value)
    from irdistill.indexes import FlatIndex  # and a FAISS index refuses the sparse file

    with pytest.raises(InputError, match="FAISS"):
        FlatIndex.load(good, device="cpu")


# -- students ------------------------------------------------------------------------------


def test_splade_student_encodes_nonnegative_vocab_vectors(tiny_mlm_dir: Path) -> None:
    from transformers import AutoTokenizer

    from irdistill.students.sparse import build_splade_student, encode_sparse, is_inference_free

    student = build_splade_student(tiny_mlm_dir, device="cpu")
    vocab = len(AutoTokenizer.from_pretrained(str(tiny_mlm_dir)).get_vocab())
    texts = ["protein expression in tumor cells", "vaccine", "the brain of mice and human brain"]
    dense = student.encode_document(texts, convert_to_sparse_tensor=False)
    assert dense.shape == (3, vocab) and (dense >= 0).all() and (dense > 0).any()
    encoded = encode_sparse(student, texts, side="document", batch_size=2, show_progress_bar=False)
    assert encoded.matrix.shape == (3, vocab) and (encoded.matrix.data > 0).all()
    np.testing.assert_allclose(encoded.matrix.toarray(), dense.numpy(), rtol=1e-5, atol=1e-6)  # input order
    assert encoded.avg_nnz == pytest.approx(encoded.matrix.nnz / 3)
    assert not is_inference_free(student)
    with pytest.raises(InputError, match="empty text"):
        encode_sparse(student, ["fine", "  "], ids=["a", "b"], show_progress_bar=False)


def test_idf_formulas_by_hand(tiny_mlm_dir: Path) -> None:
    from transformers import AutoTokenizer

    from irdistill.students.sparse import compute_idf

    tok = AutoTokenizer.from_pretrained(str(tiny_mlm_dir))
    corpus = ["cell protein", "cell gene", "cell cell protein", "virus"]
    cell, protein, virus, brain = tok.convert_tokens_to_ids(["cell", "protein", "virus", "brain"])
    bm25 = compute_idf(corpus, tok).numpy()
    n = 4
    for token, df in ((cell, 3), (protein, 2), (virus, 1)):
        assert bm25[token] == pytest.approx(math.log(1 + (n - df + 0.5) / (df + 0.5)), rel=1e-6)
    assert bm25[brain] == 1.0  # in no document: the reference's default, not the largest IDF
    assert bm25[tok.cls_token_id] == bm25[tok.pad_token_id] == 0.0
    log = compute_idf(corpus, tok, formula="log").numpy()
    assert log[protein] == pytest.approx(math.log(4 / 3), rel=1e-6)
    assert log[cell] == 0.0  # log(4/4)
    assert log[brain] == 1.0
    with pytest.raises(InputError, match="unknown IDF formula"):
        compute_idf(corpus, tok, formula="tfidf")  # type: ignore[arg-type]


def test_inference_free_query_is_idf_lookup_without_transformer(tiny_mlm_dir: Path, monkeypatch) -> None:
    from sentence_transformers.sparse_encoder.modules import Transformer
    from transformers import AutoTokenizer

    from irdistill.students.sparse import (
        build_inference_free_student,
        is_inference_free,
        student_idf,
    )

    corpus = ["cell protein", "cell gene", "cell cell protein", "virus", "mouse brain"]
    student = build_inference_free_student(tiny_mlm_dir, corpus, device="cpu")
    assert is_inference_free(student)
    idf = student_idf(student).numpy()
    tok = AutoTokenizer.from_pretrained(str(tiny_mlm_dir))
    cell, protein = tok.convert_tokens_to_ids(["cell", "protein"])
    n = 5
    expected = {cell: math.log(1 + (n - 3 + 0.5) / 3.5), protein: math.log(1 + (n - 2 + 0.5) / 2.5)}

    def no_forward(*args, **kwargs):
        raise AssertionError("the query side ran a transformer forward")

    monkeypatch.setattr(Transformer, "forward", no_forward)
    query = student.encode_query(["cell protein cell"], convert_to_sparse_tensor=False)[0].numpy()
    assert set(np.flatnonzero(query)) == {cell, protein}  # a repeated token counts once
    for token, value in expected.items():
        assert query[token] == pytest.approx(value, rel=1e-6) == pytest.approx(idf[token], rel=1e-6)
    with pytest.raises(AssertionError, match="transformer forward"):  # documents do use the MLM
        student.encode_document(["cell protein"])
    with pytest.raises(InputError, match="exactly one"):
        build_inference_free_student(tiny_mlm_dir)


def test_load_sparse_student_refuses_dense_model(tiny_model_dir: Path) -> None:
    from irdistill.students.sparse import load_sparse_student

    with pytest.raises(InputError, match="dense sentence-transformers model"):
        load_sparse_student(tiny_model_dir)


def test_idf_weighted_flops_matches_formula() -> None:
    import torch

    from irdistill.students.sparse import IDFWeightedFlopsLoss

    idf = torch.tensor([0.0, 0.25, 1.0, 2.0, 4.0])
    w = torch.tensor([[1.0, 0.0, 2.0, 4.0, 0.0], [0.0, 2.0, 0.0, 0.0, 8.0], [3.0, 1.0, 0.0, 1.0, 0.0]])
    reg = IDFWeightedFlopsLoss(None, idf, min_idf=0.5)
    n = w.shape[0]
    expected = 0.0
    for j in range(w.shape[1]):
        weight = 1.0 / max(float(idf[j]), 0.5)
        expected += (sum(float(w[i, j]) for i in range(n)) / n * weight) ** 2
    assert float(reg.compute_loss_from_embeddings(w)) == pytest.approx(expected, rel=1e-6)
    # low-IDF tokens are penalised more than a plain FLOPS would, high-IDF ones less
    flat = IDFWeightedFlopsLoss(None, torch.ones(5), min_idf=0.5)
    plain = float(torch.sum(w.mean(0) ** 2))
    assert float(flat.compute_loss_from_embeddings(w)) == pytest.approx(plain)
    grad_w = w.clone().requires_grad_(True)
    reg.compute_loss_from_embeddings(grad_w).backward()
    assert grad_w.grad[:, 0].abs().sum() > grad_w.grad[:, 4].abs().sum() * 10
    # thresholded like FlopsLoss: only rows with more than 2 non-zeros count (rows 0 and 2)
    thresholded = IDFWeightedFlopsLoss(None, idf, min_idf=0.5, threshold=2)
    masked = w * torch.tensor([[1.0], [0.0], [1.0]])
    assert float(thresholded.compute_loss_from_embeddings(w)) == pytest.approx(
        float(reg.compute_loss_from_embeddings(masked))
    )
    with pytest.raises(InputError, match="dimensions"):
        reg.compute_loss_from_embeddings(torch.ones(2, 4))


def _margin_dataset(negatives: int = 1):
    import datasets

    rows = {
        "query": ["protein expression", "vaccine response", "brain gene", "drug dose"],
        "positive": [
            "protein expression in tumor cells",
            "the vaccine trial immune response",
            "gene expression in mouse brain",
            "a low drug dose",
        ],
        "label": [],
    }
    for i in range(1, negatives + 1):
        rows[f"negative_{i}"] = ["virus infection", "study results", "blood pressure", "human genes"][i:] + [
            "virus infection",
            "study results",
            "blood pressure",
            "human genes",
        ][:i]
    rows["label"] = [[3.0 - 0.5 * j for j in range(negatives)] for _ in range(4)]
    return datasets.Dataset.from_dict(rows)


@pytest.mark.parametrize("kind", ["splade", "inference-free"])
def test_train_sparse_student_two_steps_changes_weights(tiny_mlm_dir: Path, tmp_path: Path, kind: str) -> None:
    import torch

    from irdistill.students.sparse import (
        build_inference_free_student,
        build_splade_student,
        student_idf,
        train_sparse_student,
    )

    if kind == "splade":
        student = build_splade_student(tiny_mlm_dir, device="cpu")
        options = {"loss": "margin-mse"}
        data = _margin_dataset(1)
    else:
        student = build_inference_free_student(tiny_mlm_dir, ["cell protein", "vaccine trial", "brain"], device="cpu")
        options = {"loss": "kl", "flops_weights": "idf"}
        data = _margin_dataset(2)
    before = {n: p.detach().clone() for n, p in student.named_parameters() if p.requires_grad}
    idf_before = student_idf(student)
    out = tmp_path / "student"
    trained = train_sparse_student(
        student,
        data,
        max_steps=2,
        batch_size=2,
        lr=1e-2,
        logging_steps=1,
        show_progress_bar=False,
        output_dir=out,
        **options,
    )
    assert trained is student
    changed = [n for n, p in student.named_parameters() if n in before and not torch.equal(before[n], p)]
    assert changed, "no trainable weight changed in 2 steps"
    if idf_before is not None:
        assert torch.equal(student_idf(student), idf_before)  # the IDF query tower stays fixed
    assert (out / "modules.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_kl_labels_from_margins_keep_the_teacher_distribution() -> None:
    import torch

    from irdistill.students.sparse.training import _kl_labels

    teacher = torch.tensor([[5.0, 2.0, -1.0], [0.5, 0.7, 0.1]])  # t(q,p+), t(q,n_1), t(q,n_2)
    margins = (teacher[:, :1] - teacher[:, 1:]).tolist()
    data = _margin_dataset(2).remove_columns("label").select(range(2)).add_column("label", margins)
    scores = torch.tensor(_kl_labels(data, 2)["label"])
    assert scores[:, 0].tolist() == [0.0, 0.0]
    torch.testing.assert_close(torch.softmax(scores, 1), torch.softmax(teacher, 1))
    with pytest.raises(InputError, match="2 margins or 3 teacher scores"):
        _kl_labels(data.remove_columns("label").add_column("label", [[1.0, 2.0, 3.0, 4.0]] * 2), 2)


def test_train_sparse_student_bad_input(tiny_mlm_dir: Path) -> None:
    import datasets

    from irdistill.students.sparse import build_splade_student, train_sparse_student

    student = build_splade_student(tiny_mlm_dir, device="cpu")
    no_negative = datasets.Dataset.from_dict({"query": ["a"], "positive": ["b"], "label": [1.0]})
    with pytest.raises(InputError, match="negative"):
        train_sparse_student(student, no_negative, max_steps=1)
    with pytest.raises(InputError, match="unknown sparse loss"):
        train_sparse_student(student, _margin_dataset(), loss="mse", max_steps=1)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="inference-free"):
        train_sparse_student(student, _margin_dataset(), flops_weights="idf", max_steps=1)


def test_sparse_retriever_through_the_harness(tiny_mlm_dir: Path, beir_dir: Path) -> None:
    import numpy as np

    from irdistill.data import load_collection
    from irdistill.evaluation import evaluate_retrieval
    from irdistill.retrieval import SparseRetriever
    from irdistill.students.sparse import (
        build_inference_free_student,
        encode_sparse,
        load_sparse_student,
    )

    collection = load_collection(str(beir_dir), split="test")
    for student in (str(tiny_mlm_dir), build_inference_free_student(tiny_mlm_dir, collection, device="cpu")):
        result = evaluate_retrieval(
            SparseRetriever(student, batch_size=4), collection, k=5, metrics=["ndcg@10"], show_progress_bar=False
        )
        run, perf = result.run, result.performance
        assert set(run) == set(collection.queries)
        assert all(len(hits) <= 5 and set(hits) <= set(collection.corpus) for hits in run.values())
        # the scores are the dot products of the encoded query and document vectors, best first
        model = load_sparse_student(student)
        docs = encode_sparse(model, collection.doc_texts(), side="document", batch_size=4, show_progress_bar=False)
        queries = encode_sparse(model, collection.query_texts(), side="query", batch_size=4, show_progress_bar=False)
        dense = (queries.matrix @ docs.matrix.T).toarray()
        for row, qid in enumerate(collection.query_ids):
            expected = sorted((v for v in dense[row] if v > 0), reverse=True)[:5]
            np.testing.assert_allclose(list(run[qid].values()), expected, rtol=1e-5)
        assert perf.num_queries == len(collection.queries) and perf.num_docs == 8
        assert perf.figures["doc_nnz"] > 0 and perf.figures["query_nnz"] > 0 and perf.index_bytes > 0
        assert perf.queries_per_second > 0 and perf.corpus_encode_seconds > 0
        assert 0 <= result.metrics["ndcg@10"] <= 1


@pytest.mark.slow
def test_splade_tiny_encodes_real_texts() -> None:
    from irdistill.paths import models_dir
    from irdistill.students.sparse import build_splade_student, encode_sparse

    folder = models_dir() / "splade-tiny"
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"splade-tiny not found under {folder}: run shared/models/prepare.sh")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    student = build_splade_student("splade-tiny", device="cpu")
    texts = [
        "Protein expression in tumour cells increases cancer risk.",
        "The vaccine trial shows an immune response in patients.",
        "Gene expression levels decrease in mouse brain cells.",
    ]
    encoded = encode_sparse(student, texts, show_progress_bar=False)
    assert encoded.matrix.shape == (3, 30522) and (encoded.matrix.data > 0).all()
    assert 5 < encoded.avg_nnz < 2000
    vocab = student.tokenizer.convert_tokens_to_ids(["protein", "vaccine", "brain"])
    for row, token in enumerate(vocab):  # each text's own salient term is among its weights
        assert encoded.matrix[row, token] > 0


# -- the sparse teacher --------------------------------------------------------------------


def test_sparse_teacher_scores_are_the_encoders_dot_products(tiny_mlm_dir: Path, beir_dir: Path) -> None:
    import torch

    from irdistill.data import load_collection
    from irdistill.teachers.base import ScoreScale
    from irdistill.teachers.ensemble import EnsembleTeacher
    from irdistill.teachers.factory import build_teacher
    from irdistill.teachers.sparse import SparseTeacher

    teacher = build_teacher({"teacher": "sparse", "model": str(tiny_mlm_dir), "batch_size": 2})
    assert isinstance(teacher, SparseTeacher) and teacher.scale is ScoreScale.DOT
    assert teacher.config() == {"teacher": "sparse", "model": str(tiny_mlm_dir)}
    queries = ["cell protein", "vaccine trial", "cell protein"]
    passages = ["protein in the cell", "a vaccine trial in patients", "brain"]
    scores = teacher.score(queries, passages)
    model = teacher.model
    with torch.inference_mode():
        q = model.encode_query(queries, convert_to_tensor=True).to_dense()
        d = model.encode_document(passages, convert_to_tensor=True).to_dense()
    np.testing.assert_allclose(scores, (q * d).sum(1).numpy(), rtol=1e-5, atol=1e-6)
    assert len(teacher._memo["query"]) == 2  # the repeated query was encoded once
    np.testing.assert_allclose(
        teacher.rank("cell protein", passages[:2]),
        scores[:1].tolist() + [float((q[0] * d[1]).sum())],
        rtol=1e-5,
        atol=1e-6,
    )
    assert teacher.score([], []).shape == (0,)
    with pytest.raises(InputError, match="2 queries but 1 passages"):
        teacher.score(["a", "b"], ["c"])
    # the heterogeneous dense + sparse ensemble of arXiv 2411.04403 from one recipe
    collection = load_collection(str(beir_dir), split="test")
    ensemble = build_teacher(
        {
            "teacher": "ensemble",
            "normalization": "minmax",
            "members": [{"teacher": "bm25"}, {"teacher": "sparse", "model": str(tiny_mlm_dir)}],
        },
        collection,
    )
    assert isinstance(ensemble, EnsembleTeacher)
    ranked = ensemble.rank("cell protein", collection.doc_texts())
    assert ranked.shape == (len(collection.corpus),) and np.isfinite(ranked).all()


def test_sparse_teacher_refuses_a_dense_model(tiny_model_dir: Path) -> None:
    from irdistill.teachers.sparse import SparseTeacher

    with pytest.raises(InputError, match="not a sparse encoder"):
        SparseTeacher(str(tiny_model_dir))


def test_unseen_tokens_get_one_idf_on_every_path(tiny_mlm_dir: Path) -> None:
    """A token no document contains: 1.0 computed from a corpus and from an idf.json mapping
    that leaves it out (was: the largest IDF computed, 0 from the mapping); special tokens 0."""
    from transformers import AutoTokenizer

    from irdistill.students.sparse import UNSEEN_IDF, compute_idf
    from irdistill.students.sparse.model import _idf_vector

    tok = AutoTokenizer.from_pretrained(str(tiny_mlm_dir))
    brain, cell = tok.convert_tokens_to_ids(["brain", "cell"])
    computed = compute_idf(["cell protein", "cell gene"], tok)
    mapped = _idf_vector({"cell": 0.5}, tok, len(computed))
    assert UNSEEN_IDF == 1.0
    assert computed[brain].item() == mapped[brain].item() == 1.0
    assert mapped[cell].item() == 0.5
    assert computed[tok.cls_token_id].item() == mapped[tok.cls_token_id].item() == 0.0


def test_sparse_teacher_loads_on_its_ranks_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun each rank's sparse teacher loads on cuda:$LOCAL_RANK, not every rank on GPU 0."""
    import torch

    import irdistill.students.sparse as sparse_students
    from irdistill.teachers.sparse import SparseTeacher

    seen = {}

    def fake_load(model: str, *, device: str | None = None, **_: object) -> object:
        seen["device"] = device
        raise RuntimeError("stop after the device is chosen")

    monkeypatch.setattr(sparse_students, "load_sparse_student", fake_load)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(RuntimeError, match="stop after"):
        SparseTeacher("some/model")
    assert seen["device"] == "cuda:3"
    with pytest.raises(RuntimeError, match="stop after"):
        SparseTeacher("some/model", device="cpu")  # an explicit device wins
    assert seen["device"] == "cpu"
