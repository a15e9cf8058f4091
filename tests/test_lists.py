"""Listwise training lists: the positive, hard and random negatives, the floor, the temperature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from irdistill.errors import InputError
from irdistill.sampling.lists import CandidateList, sample_lists, spread_temperature

# q1: 30 negatives n0..n29 scored 30, 29, ..., 1 (n0 highest); the positive p scored 5
SCORES = {"q1": {"p": 5.0, **{f"n{i}": float(30 - i) for i in range(30)}}}
POSITIVES = {"q1": ["p"]}


def draw(epoch: int = 0, seed: int = 3, **kw):
    args = dict(list_size=8, hard_negatives=3, hard_depth=10, seed=seed, epoch=epoch)
    args.update(kw)
    return sample_lists(SCORES, POSITIVES, **args)


def test_a_list_is_the_positive_then_hard_then_random_negatives() -> None:
    (item,), skipped = draw()
    assert skipped == 0 and item.qid == "q1" and item.pids[0] == "p" and len(item.pids) == 8
    negatives = [int(p[1:]) for p in item.pids[1:]]
    assert len(set(negatives)) == 7
    # the teacher's top 10 negatives are n0..n9: 3 drawn from them, 4 from n10..n29
    assert sum(n < 10 for n in negatives) == 3 and sum(n >= 10 for n in negatives) == 4
    assert item.scores == tuple(SCORES["q1"][p] for p in item.pids)
    assert item.floor == 1.0  # n29, the lowest scored candidate, whether drawn or not


def test_lists_are_drawn_afresh_each_epoch_and_reproducibly() -> None:
    assert draw(epoch=0) == draw(epoch=0)
    epochs = [draw(epoch=e)[0][0].pids for e in range(6)]
    assert len(set(epochs)) > 1  # 6 draws of 3 of 10 and 4 of 20 are not all the same
    assert [draw(seed=4, epoch=e) for e in range(3)] != [draw(seed=3, epoch=e) for e in range(3)]


def test_random_negatives_reach_below_the_hard_region() -> None:
    # over many epochs every region of the ranking is sampled, not just the hardest
    seen = {int(p[1:]) for e in range(40) for p in draw(epoch=e)[0][0].pids[1:]}
    assert seen == set(range(30))


def test_short_rest_is_filled_from_the_hard_region_and_thin_queries_are_skipped() -> None:
    scores = {
        "q1": {"p": 0.0, **{f"n{i}": float(-i) for i in range(9)}},  # 9 negatives
        "q2": {"p2": 1.0, "m0": 0.0, "m1": -1.0},  # only 2 negatives
        "q3": {"x": 1.0, **{f"k{i}": 0.0 for i in range(9)}},
    }  # positive not scored
    lists, skipped = sample_lists(
        scores, {"q1": ["p"], "q2": ["p2"], "q3": ["y"]}, list_size=8, hard_negatives=3, hard_depth=8, seed=0, epoch=0
    )
    assert skipped == 2 and [c.qid for c in lists] == ["q1"]
    negatives = [int(p[1:]) for p in lists[0].pids[1:]]
    # below the hard region (n0..n7) only n8 is left: 3 hard + n8 + 3 more hard ones
    assert len(set(negatives)) == 7 and 8 in negatives


def test_every_judged_positive_gets_its_own_list_and_no_positive_is_a_negative() -> None:
    scores = {"q1": {"a": 3.0, "b": 2.0, **{f"n{i}": float(-i) for i in range(10)}}}
    lists, _ = sample_lists(scores, {"q1": ["a", "b"]}, list_size=4, hard_negatives=1, hard_depth=3, seed=0, epoch=0)
    assert [c.pids[0] for c in lists] == ["a", "b"]
    assert all(not {"a", "b"} & set(c.pids[1:]) for c in lists)


def test_bad_list_settings_are_refused() -> None:
    with pytest.raises(InputError, match="hard_negatives \\(8\\) cannot exceed list_size - 1 \\(7\\)"):
        draw(hard_negatives=8)
    with pytest.raises(InputError, match="list_size must be an integer >= 2"):
        draw(list_size=1)


def test_spread_temperature_is_the_median_sd_of_the_scaled_lists() -> None:
    lists = [
        CandidateList("q", ("a", "b"), (1.0, -1.0), -1.0),  # sd 1
        CandidateList("q", ("a", "b"), (3.0, -3.0), -3.0),  # sd 3
        CandidateList("q", ("a", "b", "c"), (0.0, 0.0, 6.0), 0.0),
    ]  # sd sqrt(8)
    assert spread_temperature(lists) == pytest.approx(np.sqrt(8))
    assert spread_temperature(lists, scale=0.5) == pytest.approx(0.5 * np.sqrt(8))
    with pytest.raises(InputError, match="constant within most candidate lists"):
        spread_temperature([CandidateList("q", ("a", "b"), (1.0, 1.0), 1.0)])


def test_listwise_training_data(tiny_model_dir: Path, beir_dir: Path, tmp_path: Path) -> None:
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    from irdistill.data import load_collection
    from irdistill.scores.table import read_scores
    from irdistill.teachers.bm25 import BM25Teacher
    from irdistill.workflows.scoring import score_candidates
    from irdistill.workflows.training import TrainConfig, build_training_data

    collection = load_collection(beir_dir, split="test")
    store = score_candidates(
        BM25Teacher(collection),
        collection,
        {q: collection.doc_ids for q in collection.queries},
        tmp_path / "scores",
        show_progress_bar=False,
    )
    stored: dict[str, dict[str, float]] = {}
    for r in read_scores(store).to_pylist():
        stored.setdefault(r["qid"], {})[r["pid"]] = r["score"]
    base = dict(
        student=str(tiny_model_dir),
        dataset=str(beir_dir),
        split="test",
        scores=str(store),
        out=str(tmp_path / "o"),
        loss="listwise-kl",
        list_size=3,
        hard_depth=1,
        epochs=2,
        label_scale=0.5,
        seed=5,
    )
    data = build_training_data(TrainConfig(**base), collection)
    lists = [
        sample_lists(
            stored,
            {q: collection.positives(q) for q in stored},
            list_size=3,
            hard_negatives=1,
            hard_depth=1,
            seed=5,
            epoch=e,
        )[0]
        for e in range(2)
    ]
    assert len(data.dataset) == len(lists[0]) + len(lists[1]) > 0
    rows = data.dataset.to_list()
    text_of = {collection.corpus[d].full_text(): d for d in collection.doc_ids}
    qid_of = {t: q for q, t in collection.queries.items()}
    for row, item in zip(rows, lists[0] + lists[1], strict=True):
        qid = qid_of[row["query"]]
        pids = [text_of[row[f"c_{j}"]] for j in (1, 2, 3)]
        assert (qid, tuple(pids)) == (item.qid, item.pids)
        # labels: 0.5 x the stored scores of the list, then 0.5 x the query's lowest stored score
        assert row["label"] == pytest.approx([0.5 * stored[qid][p] for p in pids] + [0.5 * min(stored[qid].values())])
    assert data.loss_options["temperature"] == pytest.approx(spread_temperature(lists[0], 0.5))
    assert data.arguments["batch_sampler"] == BatchSamplers.NO_DUPLICATES
    assert data.arguments["num_train_epochs"] == 1  # the dataset holds both epochs
    fixed = build_training_data(TrainConfig(**base, temperature=0.2, in_batch_negatives=False), collection)
    assert fixed.loss_options["temperature"] == 0.2 and {len(r) for r in fixed.dataset["label"]} == {3}
    assert fixed.arguments["batch_sampler"] == BatchSamplers.BATCH_SAMPLER
