"""Metric strings and their computation with ranx.

A metric is named by one string, ``name@k`` or ``name``, parsed in :func:`parse_metric` only.
Definitions (ranx's, TREC-compatible; ``rel(d)`` is the judged relevance, ``R`` the judged
relevant set of a query, ``rank_i`` the i-th retrieved document):

- ``ndcg@k`` = DCG@k / IDCG@k with ``DCG@k = sum_{i<=k} rel(rank_i) / log2(i + 1)``
  (linear gain, as trec_eval's ndcg_cut);
- ``mrr@k`` = 1 / (rank of the first relevant document within k, else 0);
- ``recall@k`` = |relevant in top k| / |R|; ``precision@k`` = |relevant in top k| / k;
- ``map@k``, ``hit_rate@k``, ``f1@k``, ``r-precision``, ``bpref``, ``ndcg_burges@k``,
  ``dcg@k`` as in ranx.

Every figure is a mean over the queries of the qrels; a query without results scores 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from irdistill.data.collection import Qrels, Run
from irdistill.errors import InputError

DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@100", "recall@1000")

_CUTOFF_METRICS = {
    "hits",
    "hit_rate",
    "precision",
    "recall",
    "f1",
    "mrr",
    "map",
    "dcg",
    "dcg_burges",
    "ndcg",
    "ndcg_burges",
}
_PLAIN_METRICS = {"r-precision", "bpref"}


def known_metrics() -> list[str]:
    return sorted(f"{m}@k" for m in _CUTOFF_METRICS) + sorted(_PLAIN_METRICS)


def parse_metric(metric: str) -> str:
    """Validate and normalise one metric string (``"NDCG@10"`` -> ``"ndcg@10"``)."""
    text = metric.strip().lower()
    name, sep, cutoff = text.partition("@")
    if name in _PLAIN_METRICS and not sep:
        return name
    if name in _CUTOFF_METRICS:
        if not sep:
            return name
        if cutoff.isdigit() and int(cutoff) > 0:
            return f"{name}@{int(cutoff)}"
        raise InputError(f"metric {metric!r}: the cutoff after '@' must be a positive integer")
    raise InputError(f"unknown metric {metric!r}; known: {', '.join(known_metrics())}")


def parse_metrics(metrics: str | Iterable[str]) -> list[str]:
    """Parse a comma-separated string or a list of metric strings, keeping order, no repeats."""
    items = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    parsed: list[str] = []
    for item in items:
        if item.strip():
            name = parse_metric(item)
            if name not in parsed:
                parsed.append(name)
    if not parsed:
        raise InputError("no metric given")
    return parsed


def _ranx_inputs(qrels: Qrels, run: Run, name: str = "run"):
    from ranx import Qrels as RanxQrels
    from ranx import Run as RanxRun

    if not qrels:
        raise InputError("qrels are empty")
    judged = {q: docs for q, docs in qrels.items() if docs}
    # queries of the qrels missing from the run score 0; queries not judged are ignored
    full_run = {q: (run.get(q) or {}) for q in judged}
    return RanxQrels(judged), RanxRun(full_run, name=name)


def _no_results(qrels: Qrels, run: Run) -> bool:
    """True when no judged query has a single result: ranx cannot build such a run (it
    raises ValueError), and every metric is 0 for it."""
    return bool(qrels) and not any(run.get(q) for q, docs in qrels.items() if docs)


def evaluate_run(qrels: Qrels, run: Run, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over the judged queries (ranx)."""
    from ranx import evaluate

    names = parse_metrics(metrics)
    if _no_results(qrels, run):
        return dict.fromkeys(names, 0.0)
    ranx_qrels, ranx_run = _ranx_inputs(qrels, run)
    scores = evaluate(ranx_qrels, ranx_run, names, make_comparable=True)
    if isinstance(scores, float):
        scores = {names[0]: scores}
    return {name: float(scores[name]) for name in names}


def per_query_scores(qrels: Qrels, run: Run, metric: str) -> dict[str, float]:
    """One metric for every judged query (for significance tests and fidelity)."""
    from ranx import evaluate

    name = parse_metric(metric)
    if _no_results(qrels, run):
        return {q: 0.0 for q, docs in qrels.items() if docs}
    ranx_qrels, ranx_run = _ranx_inputs(qrels, run)
    values = evaluate(ranx_qrels, ranx_run, name, return_mean=False, make_comparable=True)
    return {qid: float(v) for qid, v in zip(ranx_run.keys(), values, strict=True)}


def paired_t_test(a: dict[str, float], b: dict[str, float]) -> float | None:
    """Two-sided paired t-test (scipy) of two systems' per-query scores, such as
    :func:`per_query_scores` gives: over every query either holds, a query one of them lacks
    scoring 0 there (as a query without results does in every metric here). ``None`` when the
    test is undefined: fewer than two queries, or the same score on every query.

    Example:
        >>> round(paired_t_test({"q1": 1.0, "q2": 0.5, "q3": 0.0}, {"q1": 0.5, "q2": 0.5}), 4)
        0.4226
    """
    from scipy.stats import ttest_rel

    queries = sorted(set(a) | set(b))
    x, y = [a.get(q, 0.0) for q in queries], [b.get(q, 0.0) for q in queries]
    if len(queries) < 2 or x == y:
        return None
    return float(ttest_rel(x, y).pvalue)
