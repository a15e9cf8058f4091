"""Pair samplers: pairs from teacher scores, TAS-Balanced (clusters, margin bins, epochs) and
the random baseline, and the sentence-transformers trainer replaying a sampler's batches.

Everything is seeded and small; the trainer test trains a tiny random BERT for a few steps.
"""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from irdistill.data import Collection, Document
from irdistill.errors import InputError, UnknownNameError
from irdistill.sampling import (
    SAMPLERS,
    Example,
    Pair,
    RandomPairSampler,
    TASBalancedSampler,
    encode_queries,
    margin_bins,
    pairs_from_scores,
)

# ---------------------------------------------------------------------------------------------
# helpers


def make_pairs(n_queries: int, pairs_per_query: int = 6, seed: int = 0) -> tuple[list[str], dict]:
    rng = np.random.default_rng(seed)
    qids = [f"q{i}" for i in range(n_queries)]
    pairs = {
        q: [Pair(f"{q}-p{j % 2}", f"{q}-n{j}", float(rng.uniform(-5, 5))) for j in range(pairs_per_query)] for q in qids
    }
    return qids, pairs


def blobs(sizes: list[int], dim: int = 8, spread: float = 1000.0, seed: int = 0) -> np.ndarray:
    """Tight, far-apart Gaussian blobs of the given sizes, blob after blob."""
    rng = np.random.default_rng(seed)
    rows = [
        spread * np.eye(dim)[i % dim] * (1 + i // dim) + rng.normal(scale=0.1, size=(n, dim))
        for i, n in enumerate(sizes)
    ]
    return np.concatenate(rows).astype(np.float32)


def check_plan(sampler: TASBalancedSampler, plan: list[list[Example]]) -> None:
    """The invariants of every TAS-Balanced epoch."""
    n, size, share = len(sampler.query_ids), sampler.batch_size, sampler.share
    assert len(plan) == len(sampler) == -(-n // size)
    assert [len(b) for b in plan] == [min(size, n)] * len(plan)  # full batches (all queries when fewer)
    for batch in plan:
        assert len({e.qid for e in batch}) == len(batch)  # no query twice in a batch
        for e in batch:
            assert (e.positive, e.negative, e.margin) in {
                tuple(p) for p in sampler.pairs[sampler.query_ids.index(e.qid)]
            }
    seen = Counter(e.qid for batch in plan for e in batch)
    assert set(seen) == set(sampler.query_ids)  # every query at least once per epoch
    assert sum(seen.values()) - n == len(plan) * min(size, n) - n  # repeats: only the last batch's top-up
    # every cluster's full chunks are single-topic: at least that many share-sized single-cluster runs
    single_topic = sum(len(c) // share for c in sampler.clusters)
    runs = sum(c // share for b in plan for c in Counter(sampler.assignments[e.qid] for e in b).values())
    assert runs >= single_topic


def as_tuples(plan: list[list[Example]]) -> list[list[tuple]]:
    return [[tuple(e) for e in batch] for batch in plan]


# ---------------------------------------------------------------------------------------------
# pairs from teacher scores


def scores_table(rows: list[tuple[str, str, float, str]]) -> pa.Table:
    qid, pid, score, teacher = zip(*rows, strict=True)
    return pa.table({"qid": list(qid), "pid": list(pid), "score": list(score), "teacher": list(teacher)})


def test_pairs_from_scores_hand_made(tmp_path: Path) -> None:
    table = scores_table(
        [
            ("q1", "d1", 5.0, "ce"),
            ("q1", "d2", 3.0, "ce"),
            ("q1", "d3", 1.5, "ce"),
            ("q1", "d4", 2.0, "ce"),
            ("q2", "d1", 1.0, "ce"),
            ("q2", "d2", 0.5, "ce"),  # no positive: skipped
            ("q3", "d3", 4.0, "ce"),  # only a positive: skipped
            ("q4", "d1", 2.0, "ce"),
            ("q4", "d6", 1.0, "ce"),
            ("q4", "d5", 4.0, "ce"),
        ]
    )
    qrels = {"q1": {"d1": 1, "d4": 0, "d9": 1}, "q3": {"d3": 2}, "q4": {"d1": 1, "d5": 2}}
    pairs = pairs_from_scores(table, qrels)
    assert pairs == {
        "q1": [Pair("d1", "d2", 2.0), Pair("d1", "d3", 3.5), Pair("d1", "d4", 3.0)],
        "q4": [Pair("d1", "d6", 1.0), Pair("d5", "d6", 3.0)],
    }
    pq.write_table(table, tmp_path / "scores.parquet")
    assert pairs_from_scores(tmp_path, qrels) == pairs  # a job folder works too


def test_pairs_from_scores_teachers_and_errors() -> None:
    table = scores_table(
        [("q1", "d1", 5.0, "a"), ("q1", "d2", 1.0, "a"), ("q1", "d1", 0.0, "b"), ("q1", "d2", 2.0, "b")]
    )
    qrels = {"q1": {"d1": 1}}
    with pytest.raises(InputError, match="2 teachers"):
        pairs_from_scores(table, qrels)
    assert pairs_from_scores(table, qrels, teacher="b") == {"q1": [Pair("d1", "d2", -2.0)]}
    with pytest.raises(InputError, match="no scores of teacher 'c'"):
        pairs_from_scores(table, qrels, teacher="c")
    with pytest.raises(InputError, match="both a judged-relevant and a non-relevant"):
        pairs_from_scores(table, {"q9": {"d1": 1}}, teacher="a")


# ---------------------------------------------------------------------------------------------
# margin bins


def test_margin_bins_are_per_query_equal_width() -> None:
    assert margin_bins([0.0, 0.99, 1.0, 5.0, 9.99, 10.0]).tolist() == [0, 0, 1, 5, 9, 9]
    # the range is the query's own: the same spacing shifted and scaled bins identically
    assert margin_bins([100.0, 100.5, 102.0], n_bins=4).tolist() == [0, 1, 3]
    assert margin_bins([3.0, 3.0, 3.0]).tolist() == [0, 0, 0]
    assert margin_bins([7.0]).tolist() == [0]
    with pytest.raises(InputError, match="n_bins"):
        margin_bins([1.0, 2.0], n_bins=0)


def test_bins_balance_skewed_margins() -> None:
    """95 % of the pairs in the lowest bin; the draws still spread uniformly over the bins."""
    rng = np.random.default_rng(3)
    low = rng.uniform(0.0, 0.9, size=950)  # bin 0 of [0, 10]
    rest = np.concatenate([rng.uniform(b + 0.05, b + 0.95, size=5) for b in range(1, 10)])
    margins = np.concatenate([low, rest, [0.0, 10.0]])
    skewed = [Pair(f"p{i}", f"n{i}", float(m)) for i, m in enumerate(margins)]
    bin_of = dict(zip((p.negative for p in skewed), margin_bins(margins).tolist(), strict=True))
    assert Counter(bin_of.values())[0] / len(skewed) > 0.94

    qids = [f"q{i}" for i in range(100)]
    pairs = {q: skewed for q in qids}
    embeddings = np.random.default_rng(0).normal(size=(100, 4))
    tas = TASBalancedSampler(qids, pairs, embeddings, batch_size=10, n_clusters=4, seed=1)
    counts = Counter(bin_of[e.negative] for epoch in range(12) for batch in tas.plan(epoch) for e in batch)
    draws = sum(counts.values())
    assert draws >= 1200 and set(counts) == set(range(10))
    expected = draws / 10
    chi2 = sum((counts[b] - expected) ** 2 / expected for b in range(10))
    assert chi2 < 27.9, counts  # chi-square, 9 degrees of freedom, p = 0.001

    random_ = RandomPairSampler(qids, pairs, batch_size=10, seed=1)
    baseline = Counter(bin_of[e.negative] for epoch in range(12) for batch in random_.plan(epoch) for e in batch)
    assert baseline[0] / sum(baseline.values()) > 0.9  # what balancing corrects


def test_draws_only_from_non_empty_bins() -> None:
    # margins in bins 0 and 9 only: both come up about equally, nothing else exists
    pairs = {
        "q0": [Pair("p", "a", 0.0), Pair("p", "b", 0.1), Pair("p", "c", 0.2), Pair("p", "z", 10.0)],
        "q1": [Pair("p", "x", 1.0)],
    }
    tas = TASBalancedSampler(["q0", "q1"], pairs, np.eye(2), batch_size=1, n_clusters=1)
    drawn = Counter(e.negative for epoch in range(400) for batch in tas.plan(epoch) for e in batch if e.qid == "q0")
    assert 160 < drawn["z"] < 240 and drawn["a"] + drawn["b"] + drawn["c"] == 400 - drawn["z"]


# ---------------------------------------------------------------------------------------------
# TAS-Balanced batches


def test_batches_come_from_one_kmeans_cluster() -> None:
    """Six well-separated topics: k-means finds exactly them (checked against the known topics,
    not against k-means itself), and, as every topic's size is a multiple of the batch, every
    batch holds one topic."""
    sizes = [8, 12, 4, 8, 16, 12]
    qids, pairs = make_pairs(sum(sizes))
    topic = np.repeat(np.arange(len(sizes)), sizes)
    tas = TASBalancedSampler(qids, pairs, blobs(sizes, dim=16), batch_size=4, n_clusters=6, seed=5)
    found = np.array([tas.assignments[q] for q in qids])
    pairing = {(int(t), int(f)) for t, f in zip(topic, found, strict=True)}
    assert len(pairing) == 6 and len({t for t, _ in pairing}) == len({f for _, f in pairing}) == 6
    nearest = ((blobs(sizes, dim=16)[:, None, :] - tas.centroids[None]) ** 2).sum(-1).argmin(1)
    assert found.tolist() == nearest.tolist()  # each query sits with its nearest centroid
    for epoch in range(3):
        plan = tas.plan(epoch)
        check_plan(tas, plan)
        assert all(len({topic[qids.index(e.qid)] for e in batch}) == 1 for batch in plan)


def test_clusters_per_batch_equal_shares() -> None:
    qids, pairs = make_pairs(50)
    embeddings = np.random.default_rng(2).normal(size=(50, 8))
    tas = TASBalancedSampler(qids, pairs, embeddings, batch_size=6, n_clusters=5, clusters_per_batch=2, seed=0)
    assert tas.share == 3
    for epoch in range(3):
        check_plan(tas, tas.plan(epoch))


def test_epoch_length_follows_the_number_of_queries() -> None:
    """One cluster holds most queries; every query once, the small cluster does not add batches."""
    qids, pairs = make_pairs(23)
    tas = TASBalancedSampler(qids, pairs, blobs([20, 3]), batch_size=4, n_clusters=2, clusters_per_batch=2, seed=0)
    assert sorted(len(c) for c in tas.clusters) == [3, 20]
    assert len(tas) == 6  # ceil(23 / 4), was 10 when the small cluster's chunks were repeated
    for epoch in range(3):
        check_plan(tas, tas.plan(epoch))


def test_small_clusters_are_filled_from_other_clusters_never_repeated() -> None:
    """The defect this replaces: a cluster of 2 queries filled a batch of 4 with copies of its own
    queries (each twice). Now its remainder shares a batch with another cluster's remainder."""
    qids, pairs = make_pairs(14)
    tas = TASBalancedSampler(qids, pairs, blobs([12, 2]), batch_size=4, n_clusters=2, seed=0)
    small_ids = {qids[i] for c in tas.clusters if len(c) == 2 for i in c}
    for epoch in range(5):
        plan = tas.plan(epoch)
        check_plan(tas, plan)
        assert len(plan) == 4
        counts = Counter(e.qid for b in plan for e in b)
        assert all(counts[q] <= 2 for q in qids) and sum(counts.values()) == 16
        mixed = [b for b in plan if {e.qid for e in b} & small_ids]
        assert len(mixed) == 1 and len({e.qid for e in mixed[0]}) == 4  # 2 small + 2 from the other
        pure = [b for b in plan if b is not mixed[0]]
        assert all(len({tas.assignments[e.qid] for e in b}) == 1 for b in pure)


def test_no_query_twice_in_a_batch_with_many_small_clusters() -> None:
    """As on SciFact train (32 clusters, batch 32, most clusters smaller than the batch), where
    about 37 % of the batch slots used to be copies and one batch held 11 copies of a query."""
    sizes = [40, 30, *([9] * 10), *([3] * 20), 1, 1]
    qids, pairs = make_pairs(sum(sizes))
    tas = TASBalancedSampler(
        qids, pairs, blobs(sizes, dim=64), batch_size=16, n_clusters=len(sizes), seed=2, kmeans_iterations=40
    )
    for epoch in range(4):
        plan = tas.plan(epoch)
        check_plan(tas, plan)
        slots = sum(len(b) for b in plan)
        assert slots - len(qids) < 16  # copies only in the last batch's top-up


def test_short_last_chunk_is_topped_up_from_its_cluster() -> None:
    qids, pairs = make_pairs(10)
    tas = TASBalancedSampler(qids, pairs, blobs([10]), batch_size=4, n_clusters=1, seed=0)
    plan = tas.plan(0)
    assert len(tas) == len(plan) == 3
    check_plan(tas, plan)
    assert all(len({e.qid for e in batch}) == 4 for batch in plan)  # no repeat in a batch
    assert sum(len(b) for b in plan) == 12 and len({e.qid for b in plan for e in b}) == 10


def test_determinism_seeds_and_epochs() -> None:
    qids, pairs = make_pairs(40)
    embeddings = np.random.default_rng(4).normal(size=(40, 8))

    def build(seed: int) -> TASBalancedSampler:
        return TASBalancedSampler(qids, pairs, embeddings, batch_size=4, n_clusters=4, seed=seed)

    first, second, other = build(7), build(7), build(8)
    assert as_tuples(first.plan(0)) == as_tuples(second.plan(0))
    assert as_tuples(first.plan(3)) == as_tuples(second.plan(3))
    assert as_tuples(first.plan(0)) != as_tuples(first.plan(1))
    assert as_tuples(first.plan(0)) != as_tuples(other.plan(0))
    # __iter__ follows set_epoch and replays the same epoch when iterated again
    assert as_tuples(list(first)) == as_tuples(first.plan(0))
    first.set_epoch(2)
    assert as_tuples(list(first)) == as_tuples(first.plan(2)) == as_tuples(list(first))
    with pytest.raises(InputError, match="epoch"):
        first.set_epoch(-1)


@pytest.mark.parametrize(
    ("n", "batch_size", "clusters", "per_batch"), [(23, 5, 3, 1), (40, 8, 6, 2), (9, 3, 9, 3), (7, 16, 2, 1)]
)
def test_len_matches_batches_yielded(n: int, batch_size: int, clusters: int, per_batch: int) -> None:
    qids, pairs = make_pairs(n)
    embeddings = np.random.default_rng(n).normal(size=(n, 6))
    tas = TASBalancedSampler(
        qids, pairs, embeddings, batch_size=batch_size, n_clusters=clusters, clusters_per_batch=per_batch, seed=3
    )
    for epoch in range(3):
        tas.set_epoch(epoch)
        batches = list(tas)
        assert len(batches) == len(tas)
        check_plan(tas, batches)


# ---------------------------------------------------------------------------------------------
# the random baseline


def test_random_sampler_interface() -> None:
    qids, pairs = make_pairs(10)
    sampler = RandomPairSampler(qids, pairs, batch_size=4, seed=0)
    plan = sampler.plan(0)
    assert len(sampler) == len(plan) == 3 and [len(b) for b in plan] == [4, 4, 2]
    assert sorted(e.qid for b in plan for e in b) == sorted(qids)
    assert as_tuples(plan) == as_tuples(RandomPairSampler(qids, pairs, 4, seed=0).plan(0))
    assert as_tuples(plan) != as_tuples(sampler.plan(1))
    dropping = RandomPairSampler(qids, pairs, batch_size=4, seed=0, drop_last=True)
    assert len(dropping) == len(list(dropping)) == 2
    sampler.set_epoch(1)
    assert as_tuples(list(sampler)) == as_tuples(sampler.plan(1))


def test_registry() -> None:
    assert SAMPLERS.get("TAS-Balanced") is TASBalancedSampler
    assert SAMPLERS.get("random") is RandomPairSampler
    with pytest.raises(UnknownNameError, match="random, tas-balanced"):
        SAMPLERS.get("tas")


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_input_errors() -> None:
    qids, pairs = make_pairs(8)
    emb = np.random.default_rng(0).normal(size=(8, 4))

    def tas(**kwargs):
        args = {
            "query_ids": qids,
            "pairs_by_query": pairs,
            "query_embeddings": emb,
            "batch_size": 2,
            "n_clusters": 2,
        } | kwargs
        return TASBalancedSampler(**args)

    with pytest.raises(InputError, match="batch_size must be an integer >= 1, got 0"):
        tas(batch_size=0)
    with pytest.raises(InputError, match="batch_size must be"):
        RandomPairSampler(qids, pairs, batch_size=0)
    with pytest.raises(InputError, match="n_clusters=9 is more than the 8 training queries"):
        tas(n_clusters=9)
    with pytest.raises(InputError, match="query 'q3' has no .* pairs .*empty pair list"):
        tas(pairs_by_query={**pairs, "q3": []})
    with pytest.raises(InputError, match="query 'q9' has no .* pairs .*not in pairs_by_query"):
        tas(query_ids=[*qids, "q9"], query_embeddings=np.zeros((9, 4)))
    with pytest.raises(InputError, match="7 rows but there are 8 query ids"):
        tas(query_embeddings=emb[:7])
    with pytest.raises(InputError, match="not a multiple of clusters_per_batch=2"):
        tas(batch_size=3, clusters_per_batch=2)
    with pytest.raises(InputError, match="clusters_per_batch=3 is more than n_clusters=2"):
        tas(batch_size=3, clusters_per_batch=3)
    with pytest.raises(InputError, match="query 'q2', pair 1 .*margin is nan"):
        bad = [pairs["q2"][0], Pair("a", "b", float("nan"))]
        tas(pairs_by_query={**pairs, "q2": bad})
    with pytest.raises(InputError, match="appears twice"):
        tas(query_ids=[*qids[:-1], "q0"])
    with pytest.raises(InputError, match="give query_texts"):
        tas(query_embeddings="some-model")
    nan_emb = emb.copy()
    nan_emb[5, 1] = np.nan
    with pytest.raises(InputError, match="row 5 \\(query 'q5'\\)"):
        tas(query_embeddings=nan_emb)


# ---------------------------------------------------------------------------------------------
# embeddings from a model name, and the sentence-transformers trainer


QUERY_TEXTS = [
    "protein expression in cancer cells",
    "tumor cells and cancer risk",
    "gene expression levels",
    "cancer protein pathway",
    "vaccine immune response",
    "virus infection in patients",
    "immune response to vaccine trial",
    "drug dose effect on blood",
]


def tiny_collection() -> tuple[Collection, list[str], dict[str, list[Pair]]]:
    from conftest import DOCS

    qids = [f"q{i}" for i in range(len(QUERY_TEXTS))]
    corpus = {doc_id: Document(text, title) for doc_id, (title, text) in DOCS.items()}
    rng = np.random.default_rng(11)
    doc_ids = list(DOCS)
    pairs = {}
    for i, qid in enumerate(qids):
        pos = doc_ids[i % len(doc_ids)]
        negs = [d for d in doc_ids if d != pos][:4]
        pairs[qid] = [Pair(pos, neg, float(rng.uniform(-3, 3))) for neg in negs]
    collection = Collection(
        corpus=corpus, queries=dict(zip(qids, QUERY_TEXTS, strict=True)), qrels={}, name="tiny-sampling"
    )
    return collection, qids, pairs


def test_embeddings_from_model_name(tiny_model_dir: Path, cache_dir: Path) -> None:
    collection, qids, pairs = tiny_collection()
    options = {"cache": False, "show_progress_bar": False, "device": "cpu"}
    by_name = TASBalancedSampler(
        qids,
        pairs,
        str(tiny_model_dir),
        batch_size=2,
        n_clusters=2,
        query_texts=collection.queries,
        encoder_options=options,
    )
    embeddings = encode_queries(str(tiny_model_dir), qids, QUERY_TEXTS, **options)
    assert embeddings.shape == (8, 32)
    given = TASBalancedSampler(qids, pairs, embeddings, batch_size=2, n_clusters=2)
    assert by_name.assignments == given.assignments
    assert as_tuples(by_name.plan(0)) == as_tuples(given.plan(0))


def test_trainer_factory_unit() -> None:
    from torch.utils.data import SequentialSampler

    from irdistill.sampling import PlannedBatchSampler, build_trainer_inputs

    collection, qids, pairs = tiny_collection()
    sampler = RandomPairSampler(qids, pairs, batch_size=3, seed=0)
    inputs = build_trainer_inputs(sampler, collection, epochs=2)
    assert len(inputs.dataset) == 16 and inputs.dataset.column_names == ["query", "positive", "negative", "label"]
    # the trainer pickles its arguments into checkpoints: the factory is small and picklable
    restored = pickle.loads(pickle.dumps(inputs.batch_sampler))
    assert restored.is_training_set(inputs.dataset) and len(pickle.dumps(restored)) < 2000
    batches = inputs.batch_sampler(inputs.dataset, batch_size=3, drop_last=False)
    assert isinstance(batches, PlannedBatchSampler) and len(batches) == 3
    assert list(batches) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    batches.set_epoch(1)
    assert list(batches) == [[8, 9, 10], [11, 12, 13], [14, 15]]
    with pytest.raises(InputError, match="holds 2 planned epoch"):
        batches.set_epoch(2)
    with pytest.raises(InputError, match="per_device_train_batch_size=3"):
        inputs.batch_sampler(inputs.dataset, batch_size=4, drop_last=False)
    other = inputs.dataset.select(range(5))  # e.g. an eval set: plain sequential batches
    plain = inputs.batch_sampler(other, batch_size=2, drop_last=False)
    assert isinstance(plain.sampler, SequentialSampler) and list(plain) == [[0, 1], [2, 3], [4]]
    row = inputs.dataset[0]
    first = inputs.plans[0][0][0]
    assert row["query"] == collection.queries[first.qid]
    assert row["positive"] == collection.corpus[first.positive].full_text()
    assert row["label"] == [pytest.approx(first.margin, rel=1e-7)]
    # the stored rows are int32 row numbers and a float32 margin (MS MARCO: 20 bytes a row)
    stored = inputs.rows.data
    assert [str(stored.schema.field(c).type) for c in ("query", "positive", "negative")] == ["int32"] * 3
    assert str(stored.schema.field("label").type) == "list<item: float>"
    planned = [e.margin for plan in inputs.plans for batch in plan for e in batch]
    np.testing.assert_array_equal(stored.column("label").combine_chunks().flatten().to_numpy(), np.float32(planned))
    # the margins labels are computed from stay float64: a scaled label is rounded once
    assert inputs.margins().dtype == np.float64 and inputs.margins().tolist() == planned
    with pytest.raises(InputError, match="passage id 'zz'"):
        bad = {q: [Pair("zz", "d1", 1.0)] for q in qids}
        build_trainer_inputs(RandomPairSampler(qids, bad, 3), collection)


def test_trainer_trains_on_the_sampler_batches(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Two epochs of a tiny model with MarginMSELoss; the loss sees the sampler's batches."""
    import torch
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MarginMSELoss

    from irdistill.sampling import PlannedBatchSampler, build_trainer_inputs

    collection, qids, pairs = tiny_collection()
    sampler = TASBalancedSampler(qids, pairs, blobs([4, 4]), batch_size=4, n_clusters=2, seed=0)
    inputs = build_trainer_inputs(sampler, collection, epochs=2)

    class RecordingLoss(torch.nn.Module):
        def __init__(self, inner: MarginMSELoss) -> None:
            super().__init__()
            self.inner = inner
            self.model = inner.model
            self.seen: list[list[float]] = []

        def forward(self, features, labels):
            self.seen.append(labels.detach().reshape(-1).tolist())
            return self.inner(features, labels)

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    loss = RecordingLoss(MarginMSELoss(model))
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"),
        **inputs.training_arguments(),
        learning_rate=1e-3,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
        logging_strategy="no",
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=inputs.dataset, loss=loss)
    assert isinstance(trainer.get_train_dataloader().batch_sampler, PlannedBatchSampler)
    trainer.train()

    expected = [[e.margin for e in batch] for plan in inputs.plans for batch in plan]
    assert len(loss.seen) == 2 * len(sampler) == trainer.state.global_step
    assert inputs.plans[0] != inputs.plans[1]
    for seen, planned in zip(loss.seen, expected, strict=True):
        assert seen == pytest.approx(planned, abs=1e-5)


def test_pairs_from_a_compact_read_equal_the_plain_ones(tmp_path: Path) -> None:
    """Training reads stores with dictionary-encoded qid / pid / teacher (one dictionary per row
    group, unified): the pairs, their order and their margins are the plain read's, the passages
    are held as int32 codes, and a (qid, pid) repeated in another row group is still refused."""
    from irdistill.scores.table import read_scores

    rng = np.random.default_rng(1)
    rows = rng.permutation(3000)  # query i % 30, passage i // 30 + i % 30: shared across queries
    table = pa.table(
        {
            "qid": [f"q{i % 30}" for i in rows],
            "pid": [f"d{i // 30 + i % 30}" for i in rows],
            "score": rng.normal(size=len(rows)),
            "teacher": ["t"] * len(rows),
        }
    )
    pq.write_table(table, tmp_path / "scores.parquet", row_group_size=500)
    qrels = {f"q{i}": {f"d{j}": 1 for j in rng.integers(0, 130, 20)} for i in range(30)}
    compact = read_scores(tmp_path, compact=True)
    assert all(pa.types.is_dictionary(compact.schema.field(c).type) for c in ("qid", "pid", "teacher"))
    plain, small = pairs_from_scores(read_scores(tmp_path), qrels), pairs_from_scores(compact, qrels)
    from_file = pairs_from_scores(tmp_path, qrels)
    assert list(plain) == list(small) == list(from_file) and len(plain) > 10
    assert list(plain)[:3] == list(dict.fromkeys(table.column("qid").to_pylist()))[:3]  # order of first appearance
    assert pa.types.is_dictionary(from_file.pids.type) and from_file.pids.indices.type == pa.int32()
    for qid in plain:
        assert list(plain[qid]) == list(small[qid]) == list(from_file[qid])
        np.testing.assert_array_equal(plain[qid].margins(), small[qid].margins())
    repeated = pa.concat_tables([table, table.slice(0, 1)])  # row 3000 repeats row 0, in another row group
    pq.write_table(repeated, tmp_path / "scores.parquet", row_group_size=500)
    with pytest.raises(InputError, match="rows 0 and 3000"):
        read_scores(tmp_path, compact=True)


def shared_positive_pairs(n_topics: int, per_topic: int, seed: int = 0) -> tuple[list[str], dict, np.ndarray]:
    """SciFact-shaped: the queries of a topic share their judged positives (each the positive of 3
    queries of the topic) and draw negatives from the topic's own pool, so that topic batches meet
    the same passages again and again; embeddings cluster by topic."""
    rng = np.random.default_rng(seed)
    qids, pairs = [], {}
    for t in range(n_topics):
        pool = [f"t{t}-d{j}" for j in range(60)]
        for i in range(per_topic):
            q = f"t{t}-q{i}"
            qids.append(q)
            positive = f"t{t}-pos{i // 3}"
            negatives = rng.choice(pool, size=8, replace=False)
            pairs[q] = [Pair(positive, str(n), float(rng.uniform(0, 5))) for n in negatives]
    return qids, pairs, blobs([per_topic] * n_topics, dim=16)


def test_tas_batches_hold_no_passage_twice_with_shared_positives() -> None:
    qids, pairs, embeddings = shared_positive_pairs(n_topics=6, per_topic=40)
    first = TASBalancedSampler(qids, pairs, embeddings, batch_size=8, n_clusters=6, seed=1, distinct_passages=False)
    first.plan(0)
    assert first.last_plan["repeated_passages"] > 30  # the first version: topic batches repeat positives
    tas = TASBalancedSampler(qids, pairs, embeddings, batch_size=8, n_clusters=6, seed=1)
    for epoch in range(3):
        plan = tas.plan(epoch)
        assert len(plan) == len(tas) == 30 and all(len(b) == 8 for b in plan)
        for batch in plan:
            passages = [p for e in batch for p in (e.positive, e.negative)]
            assert len(passages) == len(set(passages))  # no passage twice, so no positive as a negative
            assert len({e.qid for e in batch}) == len(batch)
        stats = tas.last_plan
        assert stats["repeated_passages"] == 0 and stats["batches"] == 30 and stats["deferred"] > 0
        # every query is placed once or counted as left out (a top-up repeats a placed one)
        assert len({e.qid for b in plan for e in b}) + stats["left_out"] == len(qids)
        assert stats["left_out"] <= 3 and stats["topped_up"] == stats["left_out"]
        assert stats["single_topic"] >= 20  # a batch fills from its own topic before others


def test_tas_auto_clusters_hold_several_batches() -> None:
    from irdistill.sampling.tas_balanced import BATCHES_PER_CLUSTER, auto_clusters

    assert auto_clusters(809, 32) == 6 and auto_clusters(10, 32) == 1 and BATCHES_PER_CLUSTER == 4
    qids, pairs = make_pairs(200)
    tas = TASBalancedSampler(qids, pairs, blobs([50] * 4, dim=16), batch_size=10, seed=0)
    assert tas.n_clusters == 5  # 200 / (4 x 10)
    tas.plan(0)
    assert tas.last_plan["single_topic"] >= 12  # of 20 batches; clusters of ~40-50 hold 4 batches each


def test_ddp_plans_have_equal_batches() -> None:
    """Under DDP every rank's batch must be the same size (the losses all_gather): the random
    sampler's short last batch is filled from the epoch's other rows, none repeated in it."""
    from irdistill.sampling import build_trainer_inputs

    collection, qids, pairs = tiny_collection()  # 8 queries, batches of 3: 3, 3, 2
    sampler = RandomPairSampler(qids, pairs, batch_size=3, seed=0)
    assert [len(b) for b in sampler.plan(0)] == [3, 3, 2]
    single = build_trainer_inputs(sampler, collection, epochs=1)
    assert [len(b) for b in single.plans[0]] == [3, 3, 2]  # one process: the plan as the sampler made it
    ddp = build_trainer_inputs(sampler, collection, epochs=2, world_size=2)
    for plan in ddp.plans:
        assert [len(b) for b in plan] == [3, 3, 3, 3]  # filled, then padded to a multiple of 2 batches
        for batch in plan:
            assert len({e.qid for e in batch}) == len(batch)
