"""Seed-aware comparisons (irdistill.evaluation.seeds) on synthetic per-query scores."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from irdistill.errors import InputError
from irdistill.evaluation.seeds import compare_over_seeds, holm, seed_means


def runs(matrix: np.ndarray, seeds: list[int] | None = None) -> dict[int, dict[str, float]]:
    seeds = seeds or list(range(1, len(matrix) + 1))
    return {s: {f"q{j}": float(v) for j, v in enumerate(row)} for s, row in zip(seeds, matrix, strict=True)}


def test_identical_rows_are_level_and_not_different() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(size=(3, 100))
    result = compare_over_seeds(runs(base), runs(base), resamples=500, margin=0.01)
    assert result.difference == 0.0 and result.p == 1.0 and result.equivalent is True
    assert result.ci95 == [0.0, 0.0] and result.seeds == [1, 2, 3] and result.queries == 100


def test_consistent_gain_is_found() -> None:
    rng = np.random.default_rng(1)
    b = rng.uniform(size=(5, 300))
    a = b + 0.05 + rng.normal(scale=0.05, size=b.shape)
    result = compare_over_seeds(runs(a), runs(b), resamples=2000, margin=0.01)
    assert result.difference == pytest.approx(0.05, abs=0.01)
    assert result.ci95[0] > 0.03 and result.p < 0.01 and result.equivalent is False


def test_seed_noise_that_a_query_level_test_ignores() -> None:
    # per-seed effects +0.05, -0.03, +0.04 with little query noise: the seed-averaged per-query
    # t-test calls it significant; over seeds it is not
    rng = np.random.default_rng(2)
    b = rng.uniform(size=(3, 300))
    a = b + np.array([[0.05], [-0.03], [0.04]]) + rng.normal(scale=0.02, size=b.shape)
    pooled = stats.ttest_rel(a.mean(axis=0), b.mean(axis=0)).pvalue
    assert pooled < 1e-6
    result = compare_over_seeds(runs(a), runs(b), resamples=2000)
    assert result.p > 0.05 and result.ci95[0] < 0 < result.ci95[1]
    assert result.ci95[0] <= result.ci95_seeds_t[0] and result.ci95[1] >= result.ci95_bootstrap[1]
    assert result.per_seed == pytest.approx([0.05, -0.03, 0.04], abs=0.01)


def test_only_shared_seeds_are_compared() -> None:
    rng = np.random.default_rng(3)
    a = runs(rng.uniform(size=(3, 20)), [1, 2, 3])
    b = runs(rng.uniform(size=(3, 20)), [2, 3, 4])
    assert compare_over_seeds(a, b, resamples=200).seeds == [2, 3]
    with pytest.raises(InputError, match="at least 2 seeds both rows have, got \\[3\\]"):
        compare_over_seeds(a, runs(rng.uniform(size=(2, 20)), [3, 5]), resamples=200)
    with pytest.raises(InputError, match="margin must be > 0"):
        compare_over_seeds(a, b, resamples=200, margin=0)


def test_reproducible_and_brief() -> None:
    rng = np.random.default_rng(4)
    a, b = runs(rng.uniform(size=(3, 50))), runs(rng.uniform(size=(3, 50)))
    first = compare_over_seeds(a, b, resamples=300, rng_seed=7)
    assert first == compare_over_seeds(a, b, resamples=300, rng_seed=7)
    brief = first.brief()
    assert set(brief) == {"diff", "ci95", "p", "seeds"} and brief["diff"] == round(first.difference, 4)


def test_holm() -> None:
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adjusted == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert holm({"x": 0.6, "y": 0.5}) == {"y": 1.0, "x": 1.0}


def test_seed_means() -> None:
    assert seed_means({2: {"q": 1.0, "r": 0.0}, 1: {"q": 0.5, "r": 0.5}}) == [0.5, 0.5]
