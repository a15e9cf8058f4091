"""The fixed dev split (irdistill.data.holdout) and the guards that keep choices off the test split."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_beir

from irdistill.data import load_collection
from irdistill.data.holdout import DEV_FRACTION, check_selection_split, is_dev, part_of, split_part
from irdistill.errors import InputError
from irdistill.workflows.pipeline import RunConfig
from irdistill.workflows.training import TrainConfig


def test_dev_rule_is_fixed_by_the_id_alone() -> None:
    ids = [str(i) for i in range(5000)]
    dev = part_of(ids, "dev")
    assert abs(len(dev) / len(ids) - DEV_FRACTION) < 0.02
    # the order and the company of an id do not move it
    assert part_of(list(reversed(ids)), "dev") == list(reversed(dev))
    assert all(is_dev(q) for q in dev) and set(part_of(ids, "fit")) == set(ids) - set(dev)
    # the values are pinned: a changed rule is a changed split, which the tables would not show
    assert [q for q in ids[:12] if is_dev(q)] == ["3", "7", "8", "9", "11"]


def test_split_part_parses_and_refuses() -> None:
    assert split_part("train:dev") == ("train", "dev") and split_part("train") == ("train", None)
    assert split_part(None) == (None, None) and split_part("dev/small:fit") == ("dev/small", "fit")
    with pytest.raises(InputError, match="written <split>:dev or <split>:fit"):
        split_part("train:test")


def many_queries(folder: Path) -> Path:
    docs = {f"d{i}": ("", f"passage number {i}") for i in range(40)}
    queries = {str(i): f"query {i}" for i in range(40)}
    train = [(str(i), f"d{i}", 1) for i in range(40)]
    return write_beir(folder, docs=docs, queries=queries, qrels={"train": train, "test": train[:3]})


def test_load_collection_takes_a_part_of_a_split(tmp_path: Path) -> None:
    folder = many_queries(tmp_path / "data")
    whole = load_collection(folder, split="train")
    dev, fit = load_collection(folder, split="train:dev"), load_collection(folder, split="train:fit")
    assert set(dev.queries) == {q for q in whole.queries if is_dev(q)} and dev.queries
    assert set(dev.queries) | set(fit.queries) == set(whole.queries) and not set(dev.queries) & set(fit.queries)
    assert set(dev.qrels) == set(dev.queries) and dev.split == "train:dev"
    assert len(dev.corpus) == 40  # the whole corpus is kept
    assert len(fit.corpus) == 40


def test_selection_split_guards() -> None:
    with pytest.raises(InputError, match="needs an explicit eval_split"):
        check_selection_split("beir/scifact", None)
    with pytest.raises(InputError, match="the split this recipe reports on"):
        check_selection_split("beir/scifact/test", None, evaluated=("beir/scifact", "test"))
    with pytest.raises(InputError, match="holds queries the student trains on"):
        check_selection_split("beir/scifact", "train:dev", train=("beir/scifact", "train"))
    with pytest.raises(InputError, match="holds queries the student trains on"):
        check_selection_split("beir/scifact", "train", train=("beir/scifact", "train"))
    check_selection_split("beir/scifact", "train:dev", train=("beir/scifact", "train:fit"))
    check_selection_split("beir/nfcorpus", "dev", train=("beir/scifact", "train"), evaluated=("beir/scifact", "test"))


def test_train_config_refuses_choosing_on_test_or_on_training_queries(tmp_path: Path) -> None:
    base = {"student": "m", "dataset": "beir/scifact", "out": str(tmp_path / "o"), "loss": "infonce"}
    with pytest.raises(InputError, match="needs an explicit eval_split"):
        TrainConfig(**base, eval_dataset="beir/scifact").validate()
    with pytest.raises(InputError, match="holds queries the student trains on"):
        TrainConfig(**base, eval_dataset="beir/scifact", eval_split="train:dev").validate()
    with pytest.raises(InputError, match="eval_split without eval_dataset"):
        TrainConfig(**base, eval_split="train:dev").validate()
    TrainConfig(**base, split="train:fit", eval_dataset="beir/scifact", eval_split="train:dev").validate()


def test_run_refuses_choosing_on_its_test_split_and_label_free_judgements(tmp_path: Path) -> None:
    base = {"dataset": "beir/scifact", "out": str(tmp_path / "o"), "teacher": {"teacher": "bm25"}}
    with pytest.raises(InputError, match="the split this recipe reports on"):
        RunConfig(**base, train={"student": "m", "eval_dataset": "beir/scifact", "eval_split": "test"}).validate()
    with pytest.raises(InputError, match="needs an explicit eval_split"):
        RunConfig(**base, train={"student": "m", "eval_dataset": "beir/scifact"}).validate()
    with pytest.raises(InputError, match="label-free run"):
        RunConfig(
            **base,
            generate={"generator": "title"},
            train={"student": "m", "eval_dataset": "beir/scifact", "eval_split": "train:dev"},
        ).validate()
    RunConfig(
        **base,
        train_split="train:fit",
        train={"student": "m", "eval_dataset": "beir/scifact", "eval_split": "train:dev"},
    ).validate()


def test_students_dev_teacher_run_holds_the_positives_bm25_ranks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dev table's teacher row reranks the dev queries' BM25 top k with the train store's
    scores, judged positives included (a run without them scored 0 once)."""
    from irdistill.evaluation import evaluate_run
    from irdistill.teachers.bm25 import BM25Teacher
    from irdistill.workflows.scoring import score_candidates

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "eval"))
    import students_scifact

    folder = many_queries(tmp_path / "data")
    train = load_collection(folder, split="train")
    pairs = {q: train.doc_ids for q in train.queries}
    store = score_candidates(BM25Teacher(train), train, pairs, tmp_path / "store", show_progress_bar=False)
    dev, run = students_scifact.dev_candidates(str(folder), str(store), k=10)
    assert set(run) == set(dev.queries) == {q for q in train.queries if is_dev(q)}
    assert all(len(docs) == 10 for docs in run.values())
    # each query i is "query i" and its positive "passage number i": BM25 finds it first
    assert evaluate_run(dev.qrels, run, ["ndcg@10"])["ndcg@10"] > 0.5
