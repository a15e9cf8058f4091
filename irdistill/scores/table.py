"""The teacher-score table: its schema, reading and checking, one teacher's scores by query.

A teacher-score store is one Parquet table ``scores.parquet`` with the columns
``qid: string, pid: string, score: float64, teacher: string`` (rows in candidate order), written
by the scoring job (:func:`irdistill.workflows.scoring.score_candidates`) into its job folder.
Everything that reads scores (training rows, pair samplers, the MS MARCO TSV export, the HF
dataset, runs) goes through :func:`read_scores` / :func:`validate_scores` and picks its teacher
with :func:`select_teacher`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from irdistill.errors import InputError

__all__ = [
    "SCHEMA",
    "SCORES_NAME",
    "PathLike",
    "read_scores",
    "validate_scores",
    "scores_table",
    "scores_to_run",
    "select_teacher",
    "scores_by_query",
    "rows_by_query",
]

SCHEMA = pa.schema(
    [
        ("qid", pa.string()),
        ("pid", pa.string()),
        ("score", pa.float64()),
        ("teacher", pa.string()),
    ]
)
"""Columns of every shard, of ``scores.parquet`` and of the tables this package returns."""

SCORES_NAME = "scores.parquet"
_COLUMNS = tuple(SCHEMA.names)

PathLike = str | os.PathLike[str]


def read_scores(path: PathLike, *, compact: bool = False) -> pa.Table:
    """Read a teacher-score Parquet file (or a job folder's ``scores.parquet``), validated.

    Checks: the columns ``qid, pid, score, teacher`` (others are kept), string ids and a numeric
    score (cast to float64), no null, no NaN or infinite score, no (qid, pid, teacher) twice.
    Every failure is an :class:`InputError` naming the file, the column and the row (0-based).

    ``compact`` keeps ``qid`` and ``teacher`` dictionary-encoded (each value stored once, an
    int32 a row): what training reads from 40M-row stores, where the plain strings took a third
    of the table.
    """
    source = Path(path)
    if source.is_dir():
        source = source / SCORES_NAME
    if not source.is_file():
        raise InputError(f"{source}: no such file")
    try:
        table = pq.read_table(source, read_dictionary=["qid", "teacher"] if compact else None)
    except (OSError, pa.ArrowException) as err:
        raise InputError(f"{source}: not a readable Parquet file ({err})") from None
    return validate_scores(table, str(source), keep_dictionaries=compact)


def validate_scores(table: pa.Table, source: str = "scores table", *, keep_dictionaries: bool = False) -> pa.Table:
    """The checks of :func:`read_scores` on a table in memory; returns it with canonical types
    (dictionary-encoded strings kept as they are with ``keep_dictionaries``)."""
    missing = [c for c in _COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(
            f"{source}: missing column(s) {', '.join(missing)}; expected "
            f"{', '.join(_COLUMNS)} (found {', '.join(table.column_names) or 'none'})"
        )
    for field in SCHEMA:
        column = table.column(field.name)
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        ok = (
            pa.types.is_floating(kind) or pa.types.is_integer(kind)
            if field.name == "score"
            else pa.types.is_string(kind) or pa.types.is_large_string(kind)
        )
        if not ok:
            expected = "a number" if field.name == "score" else "a string"
            raise InputError(f"{source}: column {field.name} has type {column.type}, expected {expected}")
        kept = keep_dictionaries and pa.types.is_dictionary(column.type) and field.name != "score"
        if column.type != field.type and not kept:
            table = table.set_column(table.schema.get_field_index(field.name), field, column.cast(field.type))
        column = table.column(field.name)
        if column.null_count:
            row = pc.index(pc.is_null(column), True).as_py()
            raise InputError(f"{source}: row {row} (0-based): column {field.name} is null")
    finite = pc.is_finite(table.column("score"))
    if not pc.all(finite).as_py() and table.num_rows:
        row = pc.index(finite, False).as_py()
        value = table.column("score")[row].as_py()
        raise InputError(f"{source}: row {row} (0-based): score is {value}; teacher scores must be finite")
    _check_unique(table, source)
    return table


UNIQUE_CHECK_ROWS = 4_000_000
"""Rows per part of the uniqueness check: a part's passage ids are hashed at a time."""


def _check_unique(table: pa.Table, source: str) -> None:
    """No (qid, pid, teacher) twice. Rows are split into parts by query (a duplicate lies within
    one part); in each part the three columns' dictionary indices are packed into one int64 a row
    and sorted, so only one part's passage ids are hashed at a time (a group-by over the strings
    of MS MARCO's 40M rows took ~9 GB). The error names the pair whose second row comes first."""
    n = table.num_rows
    if n < 2:
        return
    query = pc.dictionary_encode(table.column("qid")).combine_chunks()
    teacher = pc.dictionary_encode(table.column("teacher")).combine_chunks()
    q_index, t_index, teachers = query.indices.to_numpy(), teacher.indices.to_numpy(), len(teacher.dictionary)
    del query, teacher
    parts = max(1, -(-n // UNIQUE_CHECK_ROWS))
    part_of = q_index % parts
    found: tuple[int, int] | None = None  # (second row, first row) of the earliest repeat
    for part in range(parts):
        rows = np.flatnonzero(part_of == part) if parts > 1 else np.arange(n)
        pid = pc.dictionary_encode(table.column("pid").take(pa.array(rows))).combine_chunks()
        key = (q_index[rows].astype(np.int64) * len(pid.dictionary) + pid.indices.to_numpy()) * teachers
        key += t_index[rows]
        del pid
        if not (np.diff(np.sort(key)) == 0).any():
            continue
        order = np.argsort(key, kind="stable")
        sorted_keys = key[order]
        start = np.r_[True, sorted_keys[1:-1] != sorted_keys[:-2]]
        second = np.flatnonzero((sorted_keys[1:] == sorted_keys[:-1]) & start) + 1
        best = second[np.argmin(rows[order[second]])]
        pair = int(rows[order[best]]), int(rows[order[best - 1]])
        found = pair if found is None or pair < found else found
    if found is None:
        return
    second_row, first_row = found
    first = table.slice(first_row, 1).to_pylist()[0]
    raise InputError(
        f"{source}: rows {first_row} and {second_row} (0-based) both hold query "
        f"{first['qid']!r}, passage {first['pid']!r}, teacher {first['teacher']!r}"
    )


def scores_table(scores: PathLike | pa.Table) -> pa.Table:
    return validate_scores(scores) if isinstance(scores, pa.Table) else read_scores(scores)


def scores_to_run(scores: PathLike | pa.Table) -> dict[str, dict[str, float]]:
    """A score table (or its file) as a run: ``qid -> {pid: score}``, rows in table order."""
    table = scores_table(scores)
    run: dict[str, dict[str, float]] = {}
    for qid, pid, score in zip(*(table.column(c).to_pylist() for c in ("qid", "pid", "score")), strict=True):
        run.setdefault(qid, {})[pid] = score
    return run


def select_teacher(table: pa.Table, teacher: str | None) -> tuple[pa.Table, str]:
    """The rows of one teacher and its name: ``teacher``, or the only one the table holds.

    Raises:
        InputError: an empty table, several teachers and none chosen, or an unknown teacher.
    """
    names = pc.unique(table.column("teacher")).to_pylist()
    if not names:
        raise InputError("the teacher-score table is empty")
    if teacher is None:
        if len(names) > 1:
            raise InputError(
                f"the scores hold {len(names)} teachers ({', '.join(sorted(names))}); choose one with teacher="
            )
        return table, names[0]
    if teacher not in names:
        raise InputError(f"no scores of teacher {teacher!r}; the scores hold {', '.join(sorted(names))}")
    return table.filter(pc.equal(table.column("teacher"), teacher)), teacher


def scores_by_query(scores: PathLike | pa.Table, teacher: str | None = None) -> dict[str, dict[str, float]]:
    """One teacher's scores (see :func:`select_teacher`) as ``qid -> {pid: score}``, queries in
    order of first appearance and passages in table order."""
    table, _ = select_teacher(scores_table(scores), teacher)
    return {qid: dict(rows) for qid, rows in rows_by_query(table).items()}


def rows_by_query(table: pa.Table) -> dict[str, list[tuple[str, float]]]:
    """``qid -> [(pid, score), ...]`` in table order (queries in order of first appearance)."""
    grouped: dict[str, list[tuple[str, float]]] = {}
    columns = zip(
        table.column("qid").to_pylist(), table.column("pid").to_pylist(), table.column("score").to_pylist(), strict=True
    )
    for qid, pid, score in columns:
        grouped.setdefault(qid, []).append((pid, score))
    return grouped
