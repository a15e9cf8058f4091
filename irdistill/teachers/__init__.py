"""Teachers (pointwise and listwise scorers) and the resumable teacher-score store.

Importing this package registers every teacher in :data:`TEACHERS` (one import line each, below)
and stays light (no torch, no pyarrow): the store's functions are loaded on first access, and
each teacher module imports its heavy dependencies where it is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# every teacher module, for its registration
from irdistill.teachers import bm25, cross_encoder, dense, ensemble, sparse  # noqa: F401
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

_LAZY = {
    name: "irdistill.teachers.store"
    for name in (
        "score_candidates", "merge_shards", "read_scores", "validate_scores",
        "export_msmarco_tsv", "import_msmarco_tsv", "to_hf_dataset", "scores_to_run",
    )
}

__all__ = [
    "TEACHERS", "Teacher", "PointwiseTeacher", "ListwiseTeacher", "ScoreScale", "check_pairs",
    "check_scores", "ListwiseLLMTeacher", *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
