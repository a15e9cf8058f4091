"""Teachers: models that score query-passage pairs for students to learn from.

A pointwise teacher scores pairs independently (``score(queries, passages)``); a listwise
teacher scores one query's candidate list at once (``rank(query, passages)``). Every teacher
declares the scale of its raw scores (:class:`ScoreScale`), because students and ensembles
treat logits, probabilities, cosine similarities and BM25 scores differently; irdistill stores
raw scores and normalises only where a method asks for it (see
:mod:`irdistill.teachers.ensemble`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from irdistill.errors import InputError
from irdistill.registry import Registry

if TYPE_CHECKING:
    from irdistill.data.collection import Document


class ScoreScale(str, Enum):
    """What a teacher's raw score means."""

    LOGIT = "logit"
    """Unbounded relevance logit (a cross-encoder without its sigmoid)."""
    PROBABILITY = "probability"
    """In [0, 1] (a cross-encoder with its sigmoid)."""
    COSINE = "cosine"
    """Cosine similarity in [-1, 1]."""
    DOT = "dot"
    """Unbounded inner product of embeddings."""
    BM25 = "bm25"
    """Non-negative BM25 score; its range depends on the query."""
    LLM_LOGIT = "llm_logit"
    """First-token logit of a listwise LLM; comparable within one window only."""
    NORMALIZED = "normalized"
    """Per-query normalised (an ensemble's output)."""


class Teacher(ABC):
    """Common interface: a name, a score scale, and ``rank`` over one query's candidates."""

    listwise: ClassVar[bool] = False
    progress_on_setup: ClassVar[bool] = False
    """True when building the teacher does long work (encoding or indexing a corpus): the
    factory then passes it the caller's ``show_progress_bar``."""
    scale: ScoreScale
    name: str

    @abstractmethod
    def rank(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """Scores (higher is more relevant) for ``passages`` of one ``query``, in input order."""

    def config(self) -> dict[str, Any]:
        """The settings that change the scores (model, truncation, normalisation, ...), JSON
        values only: the score store fingerprints a job with them, so a re-run with other
        settings is refused instead of mixing scores. Override it in every teacher with settings."""
        return {}

    def add_passages(self, documents: Mapping[str, Document]) -> None:
        """Passages outside the teacher's collection that later calls will score, e.g. a cloze
        run's patched passages (:class:`~irdistill.generation.ClozeCorpus`). A teacher that embeds
        passages (:class:`~irdistill.teachers.dense.DenseTeacher`) encodes them once through its
        embedding cache, so a stopped score job keeps them; an ensemble passes them to its members.
        A teacher that reads each pair afresh (BM25, a cross-encoder, an LLM) has nothing to
        prepare and keeps this default, which ignores them."""
        del documents


class PointwiseTeacher(Teacher):
    """Scores each (query, passage) pair on its own."""

    @abstractmethod
    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """One float per pair ``(queries[i], passages[i])``."""

    def rank(self, query: str, passages: Sequence[str]) -> np.ndarray:
        return self.score([query] * len(passages), list(passages))


class ListwiseTeacher(Teacher):
    """Scores a query's whole candidate list at once (scores comparable within the list)."""

    listwise = True


def check_pairs(queries: Sequence[str], passages: Sequence[str]) -> None:
    """Equal lengths and no empty text, or an :class:`InputError` naming the position."""
    if len(queries) != len(passages):
        raise InputError(f"{len(queries)} queries but {len(passages)} passages")
    for i, (q, p) in enumerate(zip(queries, passages, strict=True)):
        if not q or not q.strip():
            raise InputError(f"pair {i}: empty query text")
        if not p or not p.strip():
            raise InputError(f"pair {i}: empty passage text")


def check_scores(scores: np.ndarray, teacher: str) -> np.ndarray:
    """Refuse NaN or infinite scores: they would poison every student trained on them."""
    scores = np.asarray(scores, dtype=np.float64)
    bad = ~np.isfinite(scores)
    if bad.any():
        where = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"teacher {teacher} produced a non-finite score ({scores[where]}) for pair {where}; nothing was written"
        )
    return scores


TEACHERS: Registry[type[Teacher]] = Registry("teacher")
"""Teacher classes by name. Each teacher module registers itself; ``irdistill.teachers`` imports
them all, so a new teacher is one module plus one import line there."""
