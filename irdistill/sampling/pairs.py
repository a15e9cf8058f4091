"""Per-query (positive, negative) passage pairs with their teacher margins.

For a query ``q`` with teacher scores ``t(q, p)`` over its scored candidates, every scored
passage judged relevant (``qrels[q][p] > 0``) is a positive ``p+``, every scored passage not
judged relevant (relevance ``<= 0`` or unjudged) is a negative ``p-``, and each of the
``|P+| x |P-|`` pairs carries the margin

    M(q, p+, p-) = t(q, p+) - t(q, p-)

that Margin-MSE (Hofstätter et al., arXiv 2010.02666) distills and TAS-Balanced (Hofstätter et
al., arXiv 2104.06967) bins. The pairing rule is the one of
:func:`irdistill.scores.msmarco.export_msmarco_tsv`, so the pairs here are the triples that
function writes.

Reused: the validated teacher-score table of :mod:`irdistill.scores`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from irdistill.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

__all__ = ["Pair", "PairsByQuery", "pairs_from_scores"]


class Pair(NamedTuple):
    """One training pair of a query: ``margin = t(q, positive) - t(q, negative)``."""

    positive: str
    negative: str
    margin: float


PairsByQuery = Mapping[str, Sequence[tuple[str, str, float]]]
"""``qid -> [(pos_pid, neg_pid, margin), ...]`` (plain 3-tuples or :class:`Pair`)."""


def pairs_from_scores(
    scores: str | os.PathLike[str] | pa.Table,
    qrels: Mapping[str, Mapping[str, int]],
    *,
    teacher: str | None = None,
) -> dict[str, list[Pair]]:
    """Every (judged-relevant, non-relevant) pair of scored passages of each query.

    Args:
        scores: a teacher-score Parquet file (or job folder) or a table with the columns
            ``qid, pid, score, teacher``; validated as :func:`~irdistill.scores.read_scores`
            does.
        qrels: ``qid -> {pid: relevance}``; relevance ``> 0`` is relevant.
        teacher: which teacher's scores to pair; required when the table holds several.

    Returns:
        ``qid -> [Pair(positive, negative, margin), ...]``: queries in order of first appearance
        in the table, positives and negatives each in table order (positive-major). Queries
        without a scored positive or without a scored negative are left out (their count is
        logged).

    Raises:
        InputError: an invalid table, an unknown or ambiguous teacher, or no query with both a
            scored positive and a scored negative.

    Example:
        >>> pairs = pairs_from_scores("scores/ce", collection.qrels)  # doctest: +SKIP
        >>> pairs["q1"][0]  # doctest: +SKIP
        Pair(positive='d1', negative='d7', margin=3.25)
    """
    from irdistill.scores.table import rows_by_query, scores_table, select_teacher

    table, teacher = select_teacher(scores_table(scores), teacher)
    by_query = rows_by_query(table)

    pairs: dict[str, list[Pair]] = {}
    skipped = 0
    for qid, rows in by_query.items():
        judged = qrels.get(qid, {})
        positives = [(pid, s) for pid, s in rows if judged.get(pid, 0) > 0]
        negatives = [(pid, s) for pid, s in rows if judged.get(pid, 0) <= 0]
        if not positives or not negatives:
            skipped += 1
            continue
        pairs[qid] = [
            Pair(pos, neg, pos_score - neg_score) for pos, pos_score in positives for neg, neg_score in negatives
        ]
    if not pairs:
        raise InputError(
            f"no query of teacher {teacher}'s scores has both a judged-relevant and a "
            "non-relevant scored passage; do the qrels belong to these queries?"
        )
    total = sum(len(p) for p in pairs.values())
    logger.info(
        "%d pairs of teacher %s over %d queries (%d queries skipped: no scored positive or no scored negative)",
        total,
        teacher,
        len(pairs),
        skipped,
    )
    return pairs
