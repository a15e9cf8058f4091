"""Ensemble teacher: per-query score normalisation, then a weighted mean of member teachers.

As in the heterogeneous dense + sparse teacher of Geng et al. (arXiv 2411.04403): each member
ranks the query's candidate list, its scores are normalised within the query, and the
normalised scores are averaged with weights ``w_m`` (summing to 1):

- ``minmax``: ``(s - min_q s) / (max_q s - min_q s)`` (0 when all scores are equal);
- ``zscore``: ``(s - mean_q s) / std_q s`` (0 when all scores are equal);
- ``rr`` (reciprocal rank): ``1 / (k + rank_q(s))`` with ``k = 60`` as in reciprocal rank
  fusion (Cormack et al., 2009); rank 1 is the best.

``s_ens(q, p) = sum_m w_m · norm_q(s_m(q, p))``. Normalising needs the whole list of a
query, so the ensemble is a listwise teacher.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from irdistill.errors import InputError
from irdistill.teachers.base import TEACHERS, ListwiseTeacher, ScoreScale, Teacher, check_scores

if TYPE_CHECKING:
    from irdistill.data.collection import Document

Normalization = Literal["minmax", "zscore", "rr"]
NORMALIZATIONS = ("minmax", "zscore", "rr")


def normalize_scores(scores: np.ndarray, method: Normalization, rr_k: int = 60) -> np.ndarray:
    """Normalise one query's scores."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s
    if method == "minmax":
        span = s.max() - s.min()
        return (s - s.min()) / span if span > 0 else np.zeros_like(s)
    if method == "zscore":
        std = s.std()
        return (s - s.mean()) / std if std > 0 else np.zeros_like(s)
    if method == "rr":
        order = np.argsort(-s, kind="stable")
        ranks = np.empty(len(s), dtype=np.float64)
        ranks[order] = np.arange(1, len(s) + 1)
        return 1.0 / (rr_k + ranks)
    raise InputError(f"unknown normalization {method!r}; known: {', '.join(NORMALIZATIONS)}")


@TEACHERS.register("ensemble")
class EnsembleTeacher(ListwiseTeacher):
    """Weighted mean of per-query-normalised member scores.

    Args:
        teachers: the members (pointwise or listwise).
        weights: one per member, non-negative; normalised to sum to 1 (default: equal).
        normalization: ``minmax``, ``zscore`` or ``rr``.
    """

    scale = ScoreScale.NORMALIZED

    def __init__(
        self,
        teachers: Sequence[Teacher],
        *,
        weights: Sequence[float] | None = None,
        normalization: Normalization = "minmax",
        rr_k: int = 60,
    ) -> None:
        if len(teachers) < 2:
            raise InputError("an ensemble needs at least two teachers")
        if normalization not in NORMALIZATIONS:
            raise InputError(f"unknown normalization {normalization!r}; known: {', '.join(NORMALIZATIONS)}")
        w = np.ones(len(teachers)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(teachers),) or (w < 0).any() or w.sum() <= 0:
            raise InputError(f"need {len(teachers)} non-negative weights with a positive sum, got {weights}")
        self.teachers = list(teachers)
        self.weights = w / w.sum()
        self.normalization: Normalization = normalization
        self.rr_k = rr_k
        self.name = f"ensemble-{normalization}:" + "+".join(t.name for t in self.teachers)

    def config(self) -> dict[str, Any]:
        members = [t.config() if hasattr(t, "config") else {"name": t.name} for t in self.teachers]
        return {
            "teacher": "ensemble",
            "normalization": self.normalization,
            "rr_k": self.rr_k,
            "weights": self.weights.tolist(),
            "members": members,
        }

    def add_passages(self, documents: Mapping[str, Document]) -> None:
        """Passes the passages outside the collection to every member (:meth:`Teacher.add_passages`)."""
        for teacher in self.teachers:
            teacher.add_passages(documents)

    def rank(self, query: str, passages: Sequence[str]) -> np.ndarray:
        total = np.zeros(len(passages), dtype=np.float64)
        for weight, teacher in zip(self.weights, self.teachers, strict=True):
            scores = check_scores(teacher.rank(query, passages), teacher.name)
            total += weight * normalize_scores(scores, self.normalization, self.rr_k)
        return total
