"""Static-embedding students (irdistill.students.static)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from irdistill.errors import InputError


@pytest.fixture(scope="module")
def static_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import DOCS

    from irdistill.students.static import distill_static_embeddings

    out = tmp_path_factory.mktemp("static") / "student"
    texts = [f"{title} {text}" for title, text in DOCS.values()]
    return distill_static_embeddings(tiny_model_dir, out, dims=8, texts=texts)


def test_a_token_alone_is_its_transformer_vector_reduced_and_weighted(static_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from irdistill.students.static import is_static_model

    student = SentenceTransformer(str(static_dir), device="cpu")
    assert is_static_model(student) and student.get_embedding_dimension() == 8
    record = json.loads((static_dir / "irdistill_static.json").read_text())
    assert record["dims"] == 8 and record["frequencies"] == "texts"
    weights = student[0].embedding.weight.detach().numpy()
    vocab = student[0].tokenizer.get_vocab()
    # special tokens other than [UNK] are never produced without special tokens: left at zero
    assert not weights[vocab["[CLS]"]].any() and not weights[vocab["[PAD]"]].any()
    assert weights[vocab["protein"]].any()
    # a one-token text is that token's row, normalised (the student ends in Normalize)
    row = weights[vocab["protein"]]
    np.testing.assert_allclose(student.encode(["protein"])[0], row / np.linalg.norm(row), atol=1e-5)


def test_frequency_weights_follow_the_texts(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The same token's row shrinks when the texts make it frequent: a / (a + p)."""
    from sentence_transformers import SentenceTransformer

    from irdistill.students.static import distill_static_embeddings, token_frequencies

    rare = distill_static_embeddings(tiny_model_dir, tmp_path / "rare", dims=None, texts=["cell"] * 50 + ["virus"])
    common = distill_static_embeddings(tiny_model_dir, tmp_path / "common", dims=None, texts=["virus"] * 50 + ["cell"])
    load = lambda p: SentenceTransformer(str(p), device="cpu")[0]  # noqa: E731
    a, b = load(rare), load(common)
    virus = a.tokenizer.get_vocab()["virus"]
    assert np.linalg.norm(a.embedding.weight[virus].detach()) > np.linalg.norm(b.embedding.weight[virus].detach())
    counts = token_frequencies(a.tokenizer, ["virus virus cell"], a.tokenizer.get_vocab_size())
    assert counts[virus] == 2 and counts.sum() == 3
    # dims None keeps the transformer's width (32)
    assert a.embedding_dim == 32


def test_a_static_student_trains_with_a_distillation_loss(
    static_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """A static student goes through train_student like any dense one: its rows move at a static
    model's learning rate, and max_seq_length (which it has none of) is left alone."""
    from sentence_transformers import SentenceTransformer

    from irdistill.workflows.training import TrainConfig, train_student

    cfg = TrainConfig(
        student=str(static_dir),
        dataset=str(beir_dir),
        split="test",
        scores=str(bm25_scores),
        loss="hybrid-kl",
        sampler="random",
        list_size=3,
        batch_size=2,
        epochs=2,
        learning_rate=0.05,
        max_seq_length=128,
        out=str(tmp_path / "student"),
    )
    train_student(cfg, show_progress_bar=False)
    before = SentenceTransformer(str(static_dir), device="cpu")[0].embedding.weight.detach().numpy()
    after = SentenceTransformer(str(tmp_path / "student"), device="cpu")[0].embedding.weight.detach().numpy()
    assert after.shape == before.shape and not np.allclose(after, before)


def test_static_student_input_errors(tiny_model_dir: Path, static_dir: Path, tmp_path: Path) -> None:
    from irdistill.cli.main import main
    from irdistill.students.static import distill_static_embeddings

    with pytest.raises(InputError, match="dims must be >= 1"):
        distill_static_embeddings(tiny_model_dir, tmp_path / "x", dims=0)
    with pytest.raises(InputError, match="already a static-embedding model"):
        distill_static_embeddings(static_dir, tmp_path / "y")
    assert main(["static-student", "--out", str(tmp_path / "z")]) == 2  # --model is required
    assert main(["static-student", "--model", str(tiny_model_dir), "--out", str(tmp_path / "w"), "--dims", "4"]) == 0
    assert (tmp_path / "w" / "irdistill_static.json").is_file()
