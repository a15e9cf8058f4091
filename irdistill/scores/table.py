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
    "compact_scores_table",
    "dictionary_codes",
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

    ``compact`` keeps ``qid``, ``pid`` and ``teacher`` dictionary-encoded (each value stored once,
    an int32 a row; see :func:`dictionary_codes`): what training reads from 40M-row stores, where
    the plain strings took most of the table.
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
    index = table.schema.get_field_index("pid")
    if compact and index >= 0 and pa.types.is_string(table.schema.field(index).type):
        # encoded after the read, into one dictionary shared by every chunk: read as a dictionary,
        # each Parquet batch brings its own, and unifying them took 8 s for 10M rows against 2 s
        table = table.set_column(index, "pid", pc.dictionary_encode(table.column(index)))
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
    q_index, _ = dictionary_codes(table.column("qid"))
    t_index, teacher_values = dictionary_codes(table.column("teacher"))
    teachers = len(teacher_values)
    pid_column = table.column("pid")
    pid_codes, pid_values = (  # a compact table's passages are codes already: none is hashed here
        dictionary_codes(pid_column) if pa.types.is_dictionary(pid_column.type) else (None, None)
    )
    parts = max(1, -(-n // UNIQUE_CHECK_ROWS))
    part_of = q_index % parts
    found: tuple[int, int] | None = None  # (second row, first row) of the earliest repeat
    for part in range(parts):
        rows = np.flatnonzero(part_of == part) if parts > 1 else np.arange(n)
        if pid_codes is not None:
            passages, width = pid_codes[rows], len(pid_values)
        else:
            encoded = pc.dictionary_encode(pid_column.take(pa.array(rows))).combine_chunks()
            passages, width = encoded.indices.to_numpy(), len(encoded.dictionary)
            del encoded
        key = (q_index[rows].astype(np.int64) * width + passages) * teachers
        key += t_index[rows]
        del passages
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


def compact_scores_table(scores: PathLike | pa.Table) -> pa.Table:
    """A file read with ``compact=True``, or a table validated with its dictionaries kept (so a
    table that :func:`read_scores` made compact is not decoded again)."""
    if isinstance(scores, pa.Table):
        return validate_scores(scores, keep_dictionaries=True)
    return read_scores(scores, compact=True)


def _same_array(a: pa.Array, b: pa.Array) -> bool:
    """Whether ``a`` and ``b`` are views of the same memory (not merely equal: no value is read)."""
    return (
        len(a) == len(b)
        and a.offset == b.offset
        and [x.address if x is not None else None for x in a.buffers()]
        == [x.address if x is not None else None for x in b.buffers()]
    )


def dictionary_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """``column`` as int32 codes, one a row, into an array of its distinct values (string).

    A dictionary column (a compact read gives one dictionary per Parquet row group) has its
    dictionaries unified, so equal values have equal codes across chunks; a plain column is
    dictionary-encoded. No value is decoded into a string a row.
    """
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)  # one dictionary, shared by every chunk
    if column.num_chunks == 0:
        return np.empty(0, dtype=np.int32), pa.array([], pa.string())
    first = column.chunk(0).dictionary
    if not all(_same_array(chunk.dictionary, first) for chunk in column.chunks[1:]):
        column = column.unify_dictionaries()
    values = column.chunk(0).dictionary
    if values.type != pa.string():
        values = values.cast(pa.string())
    codes = np.concatenate([chunk.indices.to_numpy(zero_copy_only=False) for chunk in column.chunks])
    return codes.astype(np.int32, copy=False), values


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
