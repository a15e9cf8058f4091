"""Teachers: pointwise and listwise scorers of query-passage pairs.

Importing this package registers every teacher in :data:`TEACHERS` (one import line each, below)
and stays light (no torch, no pyarrow): each teacher module imports its heavy dependencies where
it is used. The scores a teacher writes live in :mod:`irdistill.scores`; the scoring job is
:mod:`irdistill.workflows.scoring`.
"""

from __future__ import annotations

# every teacher module, for its registration
from irdistill.teachers import bm25, cross_encoder, crossfit, dense, ensemble, sparse  # noqa: F401
from irdistill.teachers.base import (
    TEACHERS,
    ListwiseTeacher,
    PointwiseTeacher,
    ScoreScale,
    Teacher,
    check_pairs,
    check_scores,
)
from irdistill.teachers.listwise_llm import ListwiseLLMTeacher

__all__ = [
    "TEACHERS",
    "Teacher",
    "PointwiseTeacher",
    "ListwiseTeacher",
    "ScoreScale",
    "check_pairs",
    "check_scores",
    "ListwiseLLMTeacher",
]
