"""Metrics: hand-computed values on inline TREC files, metric parsing, and a cross-check of
ranx (what irdistill uses) against ir_measures and a hand-written nDCG@10."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from irdistill.data import read_run, read_trec_qrels
from irdistill.data.collection import Qrels, Run
from irdistill.errors import InputError
from irdistill.evaluation import evaluate_run, paired_t_test, parse_metric, parse_metrics, per_query_scores

RUN_TEXT = """\
q1 Q0 d1 1 3.0 t
q1 Q0 d2 2 2.0 t
q1 Q0 d3 3 1.0 t
q2 Q0 d5 1 0.9 t
q2 Q0 d4 2 0.8 t
q9 Q0 d1 1 5.0 t
"""
# q3 is judged but missing from the run; q9 is in the run but not judged.
QRELS_TEXT = """\
q1 0 d1 1
q1 0 d3 2
q1 0 d9 1
q2 0 d4 1
q2 0 d5 0
q3 0 d7 1
"""

LOG2_3 = math.log2(3)
# q1 ranks d1 (rel 1), d2 (unjudged), d3 (rel 2); d9 (rel 1) is not retrieved.
#   DCG@3  = 1/log2(2) + 0/log2(3) + 2/log2(4) = 1 + 0 + 1 = 2
#   IDCG@3 = 2/log2(2) + 1/log2(3) + 1/log2(4) = 2 + 1/log2(3) + 0.5    (ideal: 2, 1, 1)
Q1_NDCG_3 = 2 / (2.5 + 1 / LOG2_3)  # = 0.6388
# q2 ranks d5 (judged 0), d4 (rel 1): DCG = 1/log2(3), IDCG = 1
Q2_NDCG_3 = 1 / LOG2_3  # = 0.6309
# q3: not in the run, scores 0 and counts in the mean over 3 judged queries


@pytest.fixture
def run_and_qrels(tmp_path: Path) -> tuple[Run, Qrels]:
    (tmp_path / "run.trec").write_text(RUN_TEXT)
    (tmp_path / "qrels.txt").write_text(QRELS_TEXT)
    return read_run(tmp_path / "run.trec"), read_trec_qrels(tmp_path / "qrels.txt")


def test_ndcg_with_graded_relevance(run_and_qrels: tuple[Run, Qrels]) -> None:
    run, qrels = run_and_qrels
    scores = evaluate_run(qrels, run, ["ndcg@3", "ndcg@10", "ndcg@1"])
    assert scores["ndcg@3"] == pytest.approx((Q1_NDCG_3 + Q2_NDCG_3 + 0) / 3)
    # nothing more is retrieved after rank 3, and IDCG@10 = IDCG@3 here (3 relevant docs)
    assert scores["ndcg@10"] == pytest.approx((Q1_NDCG_3 + Q2_NDCG_3 + 0) / 3)
    # @1: q1 has DCG 1 (d1, rel 1) and IDCG 2 (d3, rel 2); q2 has d5 (rel 0) first
    assert scores["ndcg@1"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert list(scores) == ["ndcg@3", "ndcg@10", "ndcg@1"]


def test_mrr(run_and_qrels: tuple[Run, Qrels]) -> None:
    run, qrels = run_and_qrels
    scores = evaluate_run(qrels, run, ["mrr@10", "mrr@1"])
    # first relevant at rank 1 (q1), rank 2 (q2; d5 is judged 0), never (q3)
    assert scores["mrr@10"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert scores["mrr@1"] == pytest.approx((1 + 0 + 0) / 3)


def test_recall_and_precision(run_and_qrels: tuple[Run, Qrels]) -> None:
    run, qrels = run_and_qrels
    scores = evaluate_run(qrels, run, ["recall@1", "recall@2", "recall@3", "precision@2"])
    # q1 has 3 relevant (d1, d3, d9), q2 has 1 (d4), q3 has 1 (d7, not retrieved)
    assert scores["recall@1"] == pytest.approx((1 / 3 + 0 + 0) / 3)
    assert scores["recall@2"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert scores["recall@3"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert scores["precision@2"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)


def test_missing_query_scores_zero_and_counts(run_and_qrels: tuple[Run, Qrels]) -> None:
    run, qrels = run_and_qrels
    per_query = per_query_scores(qrels, run, "ndcg@3")
    assert per_query == pytest.approx({"q1": Q1_NDCG_3, "q2": Q2_NDCG_3, "q3": 0.0})
    # the unjudged q9 is ignored; the same run without q3 in the qrels has a higher mean
    without_q3 = {q: j for q, j in qrels.items() if q != "q3"}
    assert evaluate_run(without_q3, run, ["ndcg@3"])["ndcg@3"] == pytest.approx((Q1_NDCG_3 + Q2_NDCG_3) / 2)
    # a run without a result for any judged query scores 0 everywhere
    for nothing in ({}, {"q9": run["q9"]}, {"q1": {}, "q2": {}}):
        assert evaluate_run(qrels, nothing, ["ndcg@10", "recall@100"]) == {
            "ndcg@10": 0.0,
            "recall@100": 0.0,
        }
        assert per_query_scores(qrels, nothing, "mrr@10") == {"q1": 0.0, "q2": 0.0, "q3": 0.0}


def test_evaluate_run_errors(run_and_qrels: tuple[Run, Qrels]) -> None:
    run, qrels = run_and_qrels
    with pytest.raises(InputError, match="qrels are empty"):
        evaluate_run({}, run, ["ndcg@10"])
    with pytest.raises(InputError, match="unknown metric 'ndgc@10'"):
        evaluate_run(qrels, run, ["ndgc@10"])


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("NDCG@10", "ndcg@10"),
        (" MRR@010 ", "mrr@10"),
        ("Recall@1000", "recall@1000"),
        ("map", "map"),
        ("R-Precision", "r-precision"),
        ("bpref", "bpref"),
    ],
)
def test_parse_metric_normalises(given: str, expected: str) -> None:
    assert parse_metric(given) == expected


def test_parse_metric_unknown_lists_known_ones() -> None:
    with pytest.raises(InputError, match=r"unknown metric 'NDGC@10'; known: .*mrr@k.*ndcg@k.*recall@k.*bpref"):
        parse_metric("NDGC@10")
    with pytest.raises(InputError, match=r"unknown metric 'bpref@10'"):
        parse_metric("bpref@10")


@pytest.mark.parametrize("metric", ["ndcg@x", "ndcg@0", "ndcg@-1", "ndcg@", "recall@1.5"])
def test_parse_metric_bad_cutoff(metric: str) -> None:
    with pytest.raises(InputError, match=f"metric '{metric}'.*positive integer"):
        parse_metric(metric)


def test_parse_metrics_keeps_order_without_repeats() -> None:
    assert parse_metrics("NDCG@10, mrr@10,,ndcg@10") == ["ndcg@10", "mrr@10"]
    assert parse_metrics(["recall@100", "Recall@100", "map@10"]) == ["recall@100", "map@10"]
    with pytest.raises(InputError, match="no metric given"):
        parse_metrics(" , ")


# --- cross-check -------------------------------------------------------------------------


def random_qrels_and_run(seed: int = 13) -> tuple[Qrels, Run]:
    """50 queries over 200 docs: graded qrels 0-2 (at least one relevant each), and a run of
    150 docs per query with distinct random scores (some relevant docs not retrieved)."""
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(200)]
    qrels: Qrels = {}
    run: Run = {}
    for q in range(50):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(3, 25))
        qrels[qid] = {d: rng.randint(0, 2) for d in judged}
        qrels[qid][judged[0]] = rng.randint(1, 2)
        retrieved = rng.sample(docs, 150)
        values = rng.sample(range(1_000_000), len(retrieved))  # distinct: no ties
        run[qid] = {d: v / 1_000_000 for d, v in zip(retrieved, values, strict=True)}
    return qrels, run


def hand_ndcg_at_10(judgements: dict[str, int], scores: dict[str, float]) -> float:
    """Linear gain, log2(rank + 1) discount, the ideal ranking from the qrels."""
    ranked = sorted(scores, key=scores.__getitem__, reverse=True)[:10]
    dcg = sum(judgements.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranked, start=1))
    ideal = sorted(judgements.values(), reverse=True)[:10]
    idcg = sum(rel / math.log2(rank + 1) for rank, rel in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def test_ranx_agrees_with_ir_measures_and_by_hand() -> None:
    import ir_measures
    from ir_measures import RR, R, nDCG

    qrels, run = random_qrels_and_run()
    ours = evaluate_run(qrels, run, ["ndcg@10", "mrr@10", "recall@100"])
    reference = ir_measures.calc_aggregate([nDCG @ 10, RR @ 10, R @ 100], qrels, run)
    assert ours["ndcg@10"] == pytest.approx(reference[nDCG @ 10], abs=1e-6)
    assert ours["mrr@10"] == pytest.approx(reference[RR @ 10], abs=1e-6)
    assert ours["recall@100"] == pytest.approx(reference[R @ 100], abs=1e-6)
    # the data are not degenerate: values strictly between 0 and 1
    assert all(0.05 < value < 0.95 for value in ours.values())

    by_hand = {qid: hand_ndcg_at_10(qrels[qid], run[qid]) for qid in qrels}
    assert ours["ndcg@10"] == pytest.approx(sum(by_hand.values()) / len(by_hand), abs=1e-6)

    per_query = per_query_scores(qrels, run, "ndcg@10")
    assert set(per_query) == set(qrels)
    for qid, value in by_hand.items():
        assert per_query[qid] == pytest.approx(value, abs=1e-6), qid


@pytest.mark.parametrize("metric", ["ndcg@10", "mrr@10", "recall@100"])
def test_per_query_scores_average_to_the_mean(metric: str) -> None:
    qrels, run = random_qrels_and_run(seed=7)
    del run["q3"], run["q17"]  # judged queries missing from the run score 0 and still count
    per_query = per_query_scores(qrels, run, metric.upper())
    assert set(per_query) == set(qrels)
    assert per_query["q3"] == per_query["q17"] == 0.0
    mean = evaluate_run(qrels, run, [metric])[metric]
    assert sum(per_query.values()) / len(per_query) == pytest.approx(mean, abs=1e-12)


def test_paired_t_test_by_hand_with_a_missing_query_at_zero() -> None:
    from scipy.stats import t as student_t

    a = {"q1": 0.9, "q2": 0.4, "q3": 0.7, "q4": 0.2}
    b = {"q1": 0.5, "q2": 0.5, "q3": 0.1}  # q4 unanswered: 0
    d = [0.4, -0.1, 0.6, 0.2]
    mean = sum(d) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 3)
    t = mean / (sd / math.sqrt(4))
    assert paired_t_test(a, b) == pytest.approx(2 * student_t.sf(abs(t), df=3))
    assert paired_t_test(a, b) == pytest.approx(paired_t_test(b, a))
    assert paired_t_test(a, dict(a)) is None  # no difference anywhere
    assert paired_t_test({"q1": 1.0}, {"q1": 0.0}) is None  # one query
