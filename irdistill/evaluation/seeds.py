"""Comparisons that count both sources of noise in a students table: the queries and the seeds.

A trained row is several runs (seeds) of one method, each scored per query. Averaging the seeds
and t-testing over queries ignores the spread between seeds, which on SciFact (0.004-0.013
nDCG@10) is as large as the effects compared. :func:`compare_over_seeds` instead resamples both
levels:

- **two-level bootstrap**: seeds drawn with replacement (the two methods' runs of one seed stay
  paired), then queries drawn with replacement (the same queries for every seed of a draw); the
  statistic is the mean difference. It gives the difference's 95 % and 90 % intervals and a
  two-sided p (the share of draws on the far side of 0, doubled, with the +1 of a resampling test);
- **a t-interval over seeds** of the per-seed mean differences (the between-seed test, scipy's
  Student t): with few seeds the bootstrap's seed level is coarse (resampling S seeds keeps
  (S - 1) / S of their variance), so the wider of the two intervals is the one reported as
  ``ci95``, and the larger p;
- **equivalence** (TOST at 5 %): two rows are called level only when both 90 % intervals lie
  inside ``±margin``; "not significantly different" is never read as "level".

:func:`holm` adjusts a table's family of p-values (Holm-Bonferroni). Comparisons run on the seeds
both rows have; fewer than two shared seeds is refused (no seed-level variance to count).

Example:
    >>> a = {1: {"q1": 0.5, "q2": 0.7, "q3": 0.2}, 2: {"q1": 0.6, "q2": 0.6, "q3": 0.3}}
    >>> b = {1: {"q1": 0.4, "q2": 0.7, "q3": 0.1}, 2: {"q1": 0.5, "q2": 0.5, "q3": 0.3}}
    >>> result = compare_over_seeds(a, b, resamples=2000)
    >>> round(result.difference, 4), result.seeds
    (0.0667, [1, 2])
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from irdistill.errors import InputError

__all__ = ["SeedComparison", "compare_over_seeds", "holm", "seed_means"]

PerSeed = Mapping[int, Mapping[str, float]]
"""``seed -> {query id: score}`` of one method."""


@dataclass
class SeedComparison:
    """``a - b`` over the seeds both have, and the queries."""

    difference: float
    """Mean over seeds and queries of ``a - b``."""
    ci95: list[float]
    """The wider of the bootstrap's and the seed t-interval's 95 % intervals."""
    p: float
    """Two-sided; the larger of the bootstrap's and the seed t-test's."""
    seeds: list[int]
    queries: int
    ci95_bootstrap: list[float]
    ci95_seeds_t: list[float]
    ci90_bootstrap: list[float]
    ci90_seeds_t: list[float]
    p_bootstrap: float
    p_seeds_t: float
    per_seed: list[float]
    """``a - b`` per seed (mean over the queries)."""
    resamples: int
    margin: float | None = None
    equivalent: bool | None = None
    """With a ``margin``: both 90 % intervals inside ``±margin`` (TOST at 5 %)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def brief(self) -> dict[str, Any]:
        """``{"diff", "ci95", "p"}`` rounded, as the result tables store a comparison."""
        return {
            "diff": round(self.difference, 4),
            "ci95": [round(x, 4) for x in self.ci95],
            "p": float(f"{self.p:.3g}"),
            "seeds": self.seeds,
            **({"equivalent": self.equivalent, "margin": self.margin} if self.margin is not None else {}),
        }


def _matrix(runs: PerSeed, seeds: list[int], queries: list[str]) -> np.ndarray:
    return np.array([[float(runs[s].get(q, 0.0)) for q in queries] for s in seeds])


def compare_over_seeds(
    a: PerSeed,
    b: PerSeed,
    *,
    resamples: int = 10_000,
    margin: float | None = None,
    rng_seed: int = 0,
) -> SeedComparison:
    """``a - b`` with a test over queries and seeds (see the module's text).

    Args:
        a, b: per seed, each query's score (e.g. nDCG@10). A query one run lacks counts 0 (not
            retrieved), as ranx and trec_eval count it; the queries are the union of all runs'.
        resamples: bootstrap draws.
        margin: equivalence margin; with it, :attr:`SeedComparison.equivalent` is set.
        rng_seed: the bootstrap's generator seed (a table is reproducible).
    """
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        raise InputError(
            f"a seed-aware comparison needs at least 2 seeds both rows have, got {seeds or 'none'} "
            f"(a: {sorted(a)}, b: {sorted(b)})"
        )
    if resamples < 100:
        raise InputError(f"resamples must be >= 100, got {resamples}")
    queries = sorted({q for runs in (a, b) for s in seeds for q in runs[s]})
    if not queries:
        raise InputError("no query scores to compare")
    difference = _matrix(a, seeds, queries) - _matrix(b, seeds, queries)  # seeds x queries
    n_seeds, n_queries = difference.shape
    rng = np.random.default_rng(rng_seed)
    draws = np.empty(resamples)
    for i in range(resamples):
        rows = difference[rng.integers(0, n_seeds, n_seeds)]
        draws[i] = rows[:, rng.integers(0, n_queries, n_queries)].mean()
    mean = float(difference.mean())
    p_boot = min(1.0, 2 * (1 + min(int(np.sum(draws <= 0)), int(np.sum(draws >= 0)))) / (1 + resamples))
    boot95 = [float(x) for x in np.quantile(draws, [0.025, 0.975])]
    boot90 = [float(x) for x in np.quantile(draws, [0.05, 0.95])]

    from scipy import stats

    per_seed = difference.mean(axis=1)
    half = float(np.std(per_seed, ddof=1)) / n_seeds**0.5
    df = n_seeds - 1
    if half == 0.0:  # identical per-seed differences: the seed level adds nothing
        t95, t90 = [mean, mean], [mean, mean]
        p_t = 1.0 if mean == 0.0 else 0.0
    else:
        q95, q90 = float(stats.t.ppf(0.975, df)), float(stats.t.ppf(0.95, df))
        t95, t90 = [mean - q95 * half, mean + q95 * half], [mean - q90 * half, mean + q90 * half]
        p_t = float(2 * stats.t.sf(abs(mean) / half, df))
    ci95 = [min(boot95[0], t95[0]), max(boot95[1], t95[1])]
    equivalent = None
    if margin is not None:
        if not margin > 0:
            raise InputError(f"margin must be > 0, got {margin}")
        equivalent = all(-margin < low and high < margin for low, high in (boot90, t90))
    return SeedComparison(
        difference=mean,
        ci95=ci95,
        p=max(p_boot, p_t),
        seeds=seeds,
        queries=n_queries,
        ci95_bootstrap=boot95,
        ci95_seeds_t=t95,
        ci90_bootstrap=boot90,
        ci90_seeds_t=t90,
        p_bootstrap=p_boot,
        p_seeds_t=p_t,
        per_seed=[float(x) for x in per_seed],
        resamples=resamples,
        margin=margin,
        equivalent=equivalent,
    )


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values of a family (monotone, capped at 1)."""
    order = sorted(pvalues, key=lambda k: pvalues[k])
    adjusted: dict[str, float] = {}
    running = 0.0
    for i, key in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * float(pvalues[key])))
        adjusted[key] = running
    return adjusted


def seed_means(runs: PerSeed) -> list[float]:
    """Each seed's mean over its queries, in seed order."""
    return [statistics.fmean(runs[s].values()) for s in sorted(runs)]
