"""A cross-fitted teacher: bi-encoders trained on judgements, each scoring only queries it never saw.

A teacher member trained on the training judgements is stronger on the training queries than on
any other, because it saw them: scoring those same queries for distillation would hand the student
the labels again, dressed as teacher scores. Cross-fitting removes that. The queries are cut into
``K`` folds by a salted hash of their text (:func:`text_fold`; the text, since a teacher sees texts,
not ids), member ``k`` is trained on the queries of the other folds
(:func:`irdistill.workflows.teacher_training.train_crossfit_members`), and a query of fold ``k``
is scored by member ``k`` alone. Queries that were never training queries (a dev or test split)
fall in some fold too and are scored by a member that did not see them either.

Use it as an ensemble member beside the unsupervised ones (BM25, a pretrained bi-encoder), with
per-query normalisation, e.g.::

    teacher: ensemble
    normalization: zscore
    members:
      - {teacher: bm25}
      - {teacher: dense, model: sentence-transformers/all-mpnet-base-v2}
      - {teacher: cross-fit, members: [runs/crossfit/fold0, runs/crossfit/fold1]}

Member ``k`` must be the model trained without fold ``k``, in that order; the folds count is the
number of members.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from irdistill.data.collection import Collection, Document
from irdistill.errors import InputError
from irdistill.teachers.base import TEACHERS, PointwiseTeacher, ScoreScale, check_pairs, check_scores
from irdistill.teachers.dense import DenseTeacher

__all__ = ["FOLD_SALT", "CrossFitTeacher", "text_fold"]

FOLD_SALT = b"irdistill-fold-v1"
"""Salt of the fold hash (another salt than the dev split's, so folds and dev are independent)."""


def text_fold(text: str, folds: int) -> int:
    """The fold of a query text: a salted BLAKE2b hash of the stripped text, modulo ``folds``.

    Example:
        >>> [text_fold(t, 2) for t in ("a claim", "another claim", "a claim ")]
        [1, 0, 1]
    """
    if folds < 2:
        raise InputError(f"cross-fitting needs at least 2 folds, got {folds}")
    digest = hashlib.blake2b(text.strip().encode(), digest_size=8, key=FOLD_SALT).digest()
    return int.from_bytes(digest, "big") % folds


@TEACHERS.register("cross-fit")
class CrossFitTeacher(PointwiseTeacher):
    """``s(q, p) = member_{fold(q)}(q, p)``: each query scored by the member trained without its fold.

    Args:
        members: ``K >= 2`` sentence-transformers bi-encoders; member ``k`` was trained without the
            queries of fold ``k`` (:func:`text_fold` with ``K`` folds).
        collection: as for :class:`~irdistill.teachers.dense.DenseTeacher` (each member encodes
            the corpus once through the embedding cache).
        batch_size, max_seq_length, backend: each member's, as for the dense teacher.
    """

    progress_on_setup = True

    def __init__(
        self,
        members: Sequence[str],
        *,
        collection: Collection | None = None,
        batch_size: int = 64,
        max_seq_length: int | None = None,
        backend: str = "torch",
        show_progress_bar: bool = False,
    ) -> None:
        if isinstance(members, str) or len(members) < 2:
            raise InputError("teacher cross-fit: members must list at least 2 models, one per fold")
        self.members = [
            DenseTeacher(
                str(m),
                collection=collection,
                batch_size=batch_size,
                max_seq_length=max_seq_length,
                backend=backend,
                show_progress_bar=show_progress_bar,
            )
            for m in members
        ]
        self.folds = len(self.members)
        self.name = f"cross-fit:{self.folds}x{self.members[0].name.split(':', 1)[-1]}"

    @property
    def scale(self) -> ScoreScale:  # type: ignore[override]
        scales = {m.scale for m in self.members}
        if len(scales) != 1:
            raise InputError(f"teacher cross-fit: members score on different scales {sorted(s.value for s in scales)}")
        return scales.pop()

    def config(self) -> dict[str, Any]:
        return {"teacher": "cross-fit", "members": [m.config() for m in self.members], "fold_salt": FOLD_SALT.decode()}

    def add_passages(self, documents: Mapping[str, Document]) -> None:
        for member in self.members:
            member.add_passages(documents)

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        check_pairs(queries, passages)
        folds = np.fromiter((text_fold(q, self.folds) for q in queries), dtype=np.int64, count=len(queries))
        out = np.empty(len(queries), dtype=np.float64)
        for k, member in enumerate(self.members):
            rows = np.flatnonzero(folds == k)
            if rows.size:
                out[rows] = member.score([queries[i] for i in rows], [passages[i] for i in rows])
        return check_scores(out, self.name)
