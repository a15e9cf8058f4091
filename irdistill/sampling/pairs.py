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
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, overload

import numpy as np

from irdistill.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

__all__ = ["Pair", "PairTable", "QueryPairs", "PairsByQuery", "pairs_from_scores"]


class Pair(NamedTuple):
    """One training pair of a query: ``margin = t(q, positive) - t(q, negative)``."""

    positive: str
    negative: str
    margin: float


PairsByQuery = Mapping[str, Sequence[tuple[str, str, float]]]
"""``qid -> [(pos_pid, neg_pid, margin), ...]`` (plain 3-tuples or :class:`Pair`)."""


class QueryPairs(Sequence[Pair]):
    """The ``|P+| x |P-|`` pairs of one query of a :class:`PairTable`, computed on access
    (positive-major): pair ``k`` is positive ``k // |P-|`` with negative ``k % |P-|``."""

    __slots__ = ("_table", "_start", "_pos", "_neg")

    def __init__(self, table: PairTable, start: int, positives: int, negatives: int) -> None:
        self._table, self._start, self._pos, self._neg = table, start, positives, negatives

    def __len__(self) -> int:
        return self._pos * self._neg

    @overload
    def __getitem__(self, index: int) -> Pair: ...

    @overload
    def __getitem__(self, index: slice) -> list[Pair]: ...

    def __getitem__(self, index: int | slice) -> Pair | list[Pair]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        i, j = divmod(index, self._neg)
        pos, neg = self._start + i, self._start + self._pos + j
        table = self._table
        return Pair(table.pid(pos), table.pid(neg), float(table.scores[pos] - table.scores[neg]))

    def margins(self) -> np.ndarray:
        """Every pair's margin (float64), in pair order."""
        scores = self._table.scores
        pos = scores[self._start : self._start + self._pos]
        neg = scores[self._start + self._pos : self._start + self._pos + self._neg]
        return (pos[:, None] - neg[None, :]).ravel()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"QueryPairs({self._pos} positives x {self._neg} negatives)"


class PairTable(Mapping[str, QueryPairs]):
    """Every query's (positive, negative) pairs, columnar: ``qid -> QueryPairs``.

    One row per scored passage (its id in an Arrow array, dictionary-encoded when built by
    :func:`pairs_from_scores`: an int32 a row and each distinct id once; its score in a float64
    array), grouped by query with the query's positives first; a query is ``(start, |P+|, |P-|)``.
    The ``|P+| x |P-|`` pairs are never materialised: 40M MS MARCO score rows take ~0.6 GB here,
    against ~7 GB as a dict of :class:`Pair` lists.
    """

    def __init__(self, query_ids: list[str], pids: pa.Array, scores: np.ndarray, layout: np.ndarray) -> None:
        self.query_ids = query_ids
        self.pids = pids
        self.scores = scores
        self.layout = layout  # (queries, 3): start row, positives, negatives
        self._index = {qid: i for i, qid in enumerate(query_ids)}

    def pid(self, row: int) -> str:
        return self.pids[row].as_py()

    def __len__(self) -> int:
        return len(self.query_ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.query_ids)

    def __contains__(self, qid: object) -> bool:
        return qid in self._index

    def __getitem__(self, qid: str) -> QueryPairs:
        start, positives, negatives = self.layout[self._index[qid]].tolist()
        return QueryPairs(self, start, positives, negatives)

    def pair_count(self) -> int:
        return int((self.layout[:, 1] * self.layout[:, 2]).sum())


def pairs_from_scores(
    scores: str | os.PathLike[str] | pa.Table,
    qrels: Mapping[str, Mapping[str, int]],
    *,
    teacher: str | None = None,
) -> PairTable:
    """Every (judged-relevant, non-relevant) pair of scored passages of each query.

    Args:
        scores: a teacher-score Parquet file (or job folder) or a table with the columns
            ``qid, pid, score, teacher``; validated as :func:`~irdistill.scores.read_scores`
            does (once: a file is read with its ids dictionary-encoded, and a table read with
            ``read_scores(..., compact=True)`` keeps its encoding).
        qrels: ``qid -> {pid: relevance}``; relevance ``> 0`` is relevant.
        teacher: which teacher's scores to pair; required when the table holds several.

    Returns:
        A :class:`PairTable`, ``qid -> [Pair(positive, negative, margin), ...]``: queries in order
        of first appearance in the table, positives and negatives each in table order
        (positive-major). Queries without a scored positive or without a scored negative are left
        out (their count is logged). Built with vectorised Arrow / NumPy operations on integer
        codes of the ids (one sort; only rows whose passage is judged relevant somewhere are
        joined with the judgements by text), so its memory is a few int32 columns of the table.

    Raises:
        InputError: an invalid table, an unknown or ambiguous teacher, or no query with both a
            scored positive and a scored negative.

    Example:
        >>> pairs = pairs_from_scores("scores/ce", collection.qrels)  # doctest: +SKIP
        >>> pairs["q1"][0]  # doctest: +SKIP
        Pair(positive='d1', negative='d7', margin=3.25)
    """
    import pyarrow as pa

    from irdistill.scores.table import compact_scores_table, dictionary_codes, select_teacher

    table, teacher = select_teacher(compact_scores_table(scores), teacher)
    qid_column, pid_column, score_column = (table.column(c) for c in ("qid", "pid", "score"))
    del scores, table  # each column goes once it is coded (the caller's table, with every teacher, too)
    query_of, unique_qids = _first_appearance(*dictionary_codes(qid_column))
    del qid_column
    pid_codes, pid_values = dictionary_codes(pid_column)
    del pid_column
    relevant = _judged_rows(query_of, unique_qids, pid_codes, pid_values, qrels)
    order = np.lexsort((~relevant, query_of))  # stable: by query, positives first, then table order
    counts = np.bincount(query_of, minlength=len(unique_qids))
    positives = np.bincount(query_of, weights=relevant, minlength=len(unique_qids)).astype(np.int64)
    del query_of, relevant
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep = (positives > 0) & (counts - positives > 0)
    skipped = int((~keep).sum())
    if not keep.any():
        raise InputError(
            f"no query of teacher {teacher}'s scores has both a judged-relevant and a "
            "non-relevant scored passage; do the qrels belong to these queries?"
        )
    layout = np.stack([starts, positives, counts - positives], axis=1)[keep]
    score_values = score_column.to_numpy()[order].astype(np.float64, copy=False)
    del score_column
    pids = pa.DictionaryArray.from_arrays(pa.array(pid_codes[order]), pid_values)  # int32 a row, each id once
    del pid_codes, order
    out = PairTable([q for q, k in zip(unique_qids, keep.tolist(), strict=True) if k], pids, score_values, layout)
    logger.info(
        "%d pairs of teacher %s over %d queries (%d queries skipped: no scored positive or no scored negative)",
        out.pair_count(),
        teacher,
        len(out),
        skipped,
    )
    return out


def _first_appearance(codes: np.ndarray, values: pa.Array) -> tuple[np.ndarray, list[str]]:
    """``codes`` into ``values`` renumbered in order of first appearance: (int32 codes, the values
    in that order)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    recoded = pc.dictionary_encode(pa.array(codes))
    return recoded.indices.to_numpy(), values.take(recoded.dictionary).to_pylist()


def _judged_rows(
    query_of: np.ndarray,
    qids: list[str],
    pid_codes: np.ndarray,
    pid_values: pa.Array,
    qrels: Mapping[str, Mapping[str, int]],
) -> np.ndarray:
    """Whether each row (query ``qids[query_of]``, passage ``pid_values[pid_codes]``) is judged
    relevant. Only rows whose passage is judged relevant for some query are compared by text
    (MS MARCO: a few per query of 40M rows); the rest never leave their integer codes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    relevant = np.zeros(len(query_of), dtype=bool)
    judged = [(q, p) for q, docs in qrels.items() for p, r in docs.items() if r > 0]
    if not judged or not len(query_of):
        return relevant
    judged_pid = pc.is_in(pid_values, value_set=pa.array(sorted({p for _, p in judged}), pa.string()))
    candidates = np.flatnonzero(judged_pid.to_numpy(zero_copy_only=False)[pid_codes]).astype(np.int64)
    if not len(candidates):
        return relevant
    index = {q: i for i, q in enumerate(qids)}
    right = [(index[q], p) for q, p in judged if q in index]
    if not right:
        return relevant
    hits = pa.table(
        {
            "q": pa.array(query_of[candidates]),
            "pid": pid_values.take(pa.array(pid_codes[candidates])),
            "_row": pa.array(candidates),
        }
    ).join(
        pa.table(
            {"q": pa.array([q for q, _ in right], pa.int32()), "pid": pa.array([p for _, p in right], pa.string())}
        ),
        keys=["q", "pid"],
        join_type="inner",
    )
    relevant[hits.column("_row").to_numpy()] = True
    return relevant
