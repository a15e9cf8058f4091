from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from irdistill.data import load_collection
from irdistill.errors import InputError
from irdistill.teachers.cross_encoder import CrossEncoderTeacher
from irdistill.workflows.teacher_training import build_pairs, train_cross_encoder


def test_build_pairs_positive_then_hard_negatives(beir_dir: Path) -> None:
    collection = load_collection(beir_dir)
    rows = build_pairs(collection, "bm25", num_negatives=2, depth=5, show_progress_bar=False)
    positives = sum(1 for j in collection.qrels.values() for r in j.values() if r > 0)
    assert len(rows) == positives * 3
    assert [r[2] for r in rows[:3]] == [1.0, 0.0, 0.0]
    text_of_query = {text: qid for qid, text in collection.queries.items()}
    for query, passage, label in rows:
        own = {collection.corpus[d].full_text() for d in collection.qrels[text_of_query[query]]}
        assert (passage in own) == (label == 1.0)


@pytest.mark.parametrize("loss", ["bce", "mnrl"])
def test_fine_tuning_writes_a_changed_cross_encoder(
    tiny_cross_encoder_dir: Path, beir_dir: Path, tmp_path: Path, loss: str
) -> None:
    from safetensors.numpy import load_file

    collection = load_collection(beir_dir)
    rows = build_pairs(collection, "bm25", num_negatives=2, depth=5, show_progress_bar=False)
    result = train_cross_encoder(
        str(tiny_cross_encoder_dir),
        collection,
        tmp_path / "teacher",
        loss=loss,
        num_negatives=2,
        depth=5,
        epochs=1,
        batch_size=8,
        learning_rate=1e-3,
        max_length=64,
        show_progress_bar=False,
    )
    assert np.isfinite(result.train_loss) and result.path == tmp_path / "teacher"
    assert result.examples == (len(rows) if loss == "bce" else len(collection.queries))
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".teacher")]  # no staging left
    before = load_file(str(tiny_cross_encoder_dir / "model.safetensors"))
    after = load_file(str(result.path / "model.safetensors"))
    changed = [k for k in before if k in after and not np.allclose(before[k], after[k])]
    assert len(changed) > len(before) // 2
    teacher = CrossEncoderTeacher(str(result.path))
    assert np.isfinite(teacher.score([r[0] for r in rows], [r[1] for r in rows])).all()


def test_train_teacher_errors(tiny_cross_encoder_dir: Path, beir_dir: Path, tmp_path: Path) -> None:
    collection = load_collection(beir_dir)
    with pytest.raises(InputError, match="unknown loss 'hinge'"):
        train_cross_encoder(str(tiny_cross_encoder_dir), collection, tmp_path / "t", loss="hinge")
    with pytest.raises(InputError, match="not a model folder"):
        train_cross_encoder(str(tmp_path), collection, tmp_path / "t")
    with pytest.raises(InputError, match="num_negatives must be >= 1"):
        build_pairs(collection, num_negatives=0)


def fold_data(folder: Path) -> Path:
    """24 queries built from the tiny vocabulary, each judged against its own document."""
    from conftest import WORDS, write_beir

    words = WORDS[:36]  # content words only
    docs = {f"d{i}": ("", " ".join(words[(3 * i + j) % len(words)] for j in range(8))) for i in range(24)}
    queries = {f"q{i}": " ".join(words[(3 * i + j) % len(words)] for j in range(3)) for i in range(24)}
    qrels = [(f"q{i}", f"d{i}", 1) for i in range(24)]
    return write_beir(folder, docs=docs, queries=queries, qrels={"train": qrels, "test": qrels[:4]})


def test_crossfit_members_never_score_a_query_they_trained_on(
    tiny_model_dir: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """Member k trains without fold k's queries and scores exactly those; the teacher builds from a
    recipe dict and fingerprints its members."""
    from irdistill.teachers.crossfit import CrossFitTeacher, text_fold
    from irdistill.teachers.dense import DenseTeacher
    from irdistill.teachers.factory import build_teacher
    from irdistill.workflows.teacher_training import crossfit_collection, train_crossfit_members

    collection = load_collection(fold_data(tmp_path / "data"), split="train")
    folds = {q: text_fold(t, 2) for q, t in collection.queries.items()}
    assert set(folds.values()) == {0, 1}
    for k in (0, 1):
        kept = crossfit_collection(collection, k, 2)
        assert set(kept.queries) == {q for q, f in folds.items() if f != k} and set(kept.qrels) == set(kept.queries)
    recipe = {"student": str(tiny_model_dir), "loss": "infonce", "epochs": 1, "batch_size": 4, "max_seq_length": 16}
    members = train_crossfit_members(recipe, collection, tmp_path / "members", folds=2)
    assert [m.name for m in members] == ["fold0", "fold1"]
    assert all((m / "irdistill_training.json").is_file() for m in members)
    teacher = build_teacher({"teacher": "cross-fit", "members": [str(m) for m in members]}, collection)
    assert isinstance(teacher, CrossFitTeacher) and teacher.folds == 2
    queries = list(collection.queries.values())
    passages = [collection.corpus[f"d{i}"].full_text() for i in range(len(queries))]
    got = teacher.score(queries, passages)
    for k, member in enumerate(members):
        rows = [i for i, q in enumerate(queries) if text_fold(q, 2) == k]
        alone = DenseTeacher(str(member)).score([queries[i] for i in rows], [passages[i] for i in rows])
        np.testing.assert_allclose(got[rows], alone, rtol=1e-5, atol=1e-6)
    assert [m["model"] for m in teacher.config()["members"]] == [str(m) for m in members]
    with pytest.raises(InputError, match="at least 2 models"):
        CrossFitTeacher([str(members[0])])
