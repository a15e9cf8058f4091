"""The MS MARCO teacher-score TSV layout, to and from the score table.

The layout published with Margin-MSE (Hofstätter et al., arXiv 2010.02666) holds one
(query, positive, negative) triple per line::

    score_pos<TAB>score_neg<TAB>qid<TAB>pid_pos<TAB>pid_neg

:func:`export_msmarco_tsv` writes it (every judged-relevant scored passage of a query paired
with every other scored passage of that query) and :func:`import_msmarco_tsv` reads it back
into the table's columns (a pyarrow CSV fast path, and a line reader that names a bad line).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from irdistill.data.collection import Qrels
from irdistill.data.lines import read_lines
from irdistill.errors import InputError
from irdistill.paths import atomic_path
from irdistill.scores.table import (
    SCHEMA,
    PathLike,
    rows_by_query,
    scores_table,
    select_teacher,
)

logger = logging.getLogger(__name__)

__all__ = ["export_msmarco_tsv", "import_msmarco_tsv"]

_TSV_FIELDS = ("score_pos", "score_neg", "qid", "pid_pos", "pid_neg")


def export_msmarco_tsv(
    scores: PathLike | pa.Table, qrels: Qrels, out_path: PathLike, teacher: str | None = None
) -> Path:
    """Write scores as MS MARCO teacher-score triples ``score_pos score_neg qid pid_pos pid_neg``.

    For each query (in order of first appearance in the scores), every scored passage judged
    relevant (``qrels[qid][pid] > 0``) is paired with every scored passage that is not (judged
    0 or unjudged), positives and negatives each in score-table order. Scores are written with
    Python's shortest round-trip float format, so :func:`import_msmarco_tsv` reads them back
    exactly. Queries without a scored positive or negative are skipped (and counted in the
    log). The file is written atomically.

    Args:
        scores: a teacher-score Parquet path (or job folder) or a table of the same columns.
        qrels: ``qid -> {pid: relevance}``.
        out_path: the TSV file to write.
        teacher: which teacher's scores to export; required when the scores hold several.
    """
    table, name = select_teacher(scores_table(scores), teacher)
    grouped = rows_by_query(table)
    lines = 0
    skipped = 0
    for qid, rows in grouped.items():
        judged = qrels.get(qid, {})
        positives = sum(1 for pid, _ in rows if judged.get(pid, 0) > 0)
        if positives == 0 or positives == len(rows):
            skipped += 1
        lines += positives * (len(rows) - positives)
    if lines == 0:
        raise InputError(
            f"no query of teacher {name}'s scores has both a judged-relevant and a "
            "non-relevant scored passage; do the qrels belong to these queries?"
        )
    for qid, rows in grouped.items():
        for value in (qid, *(pid for pid, _ in rows)):
            if any(c in value for c in "\t\r\n"):
                raise InputError(f"id {value!r} holds a tab or newline; it cannot be written as TSV")
    target = Path(out_path)
    with atomic_path(target) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as out:
        for qid, rows in grouped.items():
            judged = qrels.get(qid, {})
            positives = [(pid, s) for pid, s in rows if judged.get(pid, 0) > 0]
            negatives = [(pid, s) for pid, s in rows if judged.get(pid, 0) <= 0]
            for pos, pos_score in positives:
                for neg, neg_score in negatives:
                    out.write(f"{pos_score!r}\t{neg_score!r}\t{qid}\t{pos}\t{neg}\n")
    logger.info(
        "wrote %d triples of teacher %s to %s (%d queries skipped: no scored positive or no scored negative)",
        lines,
        name,
        target,
        skipped,
    )
    return target


def import_msmarco_tsv(path: PathLike, teacher: str = "imported") -> pa.Table:
    """Read an MS MARCO teacher-score TSV into a ``qid, pid, score, teacher`` table.

    Each (qid, pid) appears once, in order of first appearance (positive before negative on a
    line); repeats with the same score are dropped. Raises :class:`InputError` naming
    ``file:line`` for a line without 5 tab-separated fields, a score that is not a finite
    number or an empty id, and naming both lines when a (qid, pid) has two different scores.
    Blank lines are skipped. Large files go through pyarrow's CSV reader; a problem found
    there is re-read line by line to name the offending line.
    """
    source = Path(path)
    if not source.is_file():
        raise InputError(f"{source}: no such file")
    if not teacher:
        raise InputError("teacher name for imported scores must not be empty")
    table = _import_tsv_fast(source, teacher)
    return table if table is not None else _import_tsv_lines(source, teacher)


def _import_tsv_fast(source: Path, teacher: str) -> pa.Table | None:
    """pyarrow's CSV reader plus vectorised checks; ``None`` when anything looks wrong."""
    import pyarrow.csv as csv

    types = {
        "score_pos": pa.float64(),
        "score_neg": pa.float64(),
        "qid": pa.string(),
        "pid_pos": pa.string(),
        "pid_neg": pa.string(),
    }
    try:
        raw = csv.read_csv(
            source,
            read_options=csv.ReadOptions(column_names=list(_TSV_FIELDS)),
            parse_options=csv.ParseOptions(
                delimiter="\t", quote_char=False, double_quote=False, escape_char=False, newlines_in_values=False
            ),
            convert_options=csv.ConvertOptions(
                column_types=types, strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
    except pa.ArrowException:
        return None
    if raw.num_rows == 0:
        return None
    for name in _TSV_FIELDS:
        column = raw.column(name)
        if column.null_count:
            return None
        if name.startswith("score"):
            if not pc.all(pc.is_finite(column)).as_py():
                return None
        elif pc.any(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0)).as_py():
            return None
    order = np.arange(raw.num_rows, dtype=np.int64) * 2
    long = pa.concat_tables(
        [
            pa.table(
                {
                    "qid": raw.column("qid"),
                    "pid": raw.column("pid_pos"),
                    "score": raw.column("score_pos"),
                    "order": order,
                }
            ),
            pa.table(
                {
                    "qid": raw.column("qid"),
                    "pid": raw.column("pid_neg"),
                    "score": raw.column("score_neg"),
                    "order": order + 1,
                }
            ),
        ]
    )
    pairs = long.group_by(["qid", "pid"]).aggregate([("score", "min"), ("score", "max"), ("order", "min")])
    if not pc.all(pc.equal(pairs.column("score_min"), pairs.column("score_max"))).as_py():
        return None
    pairs = pairs.sort_by("order_min")
    return pa.table(
        [
            pairs.column("qid"),
            pairs.column("pid"),
            pairs.column("score_min"),
            pa.nulls(pairs.num_rows, pa.string()).fill_null(teacher),
        ],
        schema=SCHEMA,
    )


def _import_tsv_lines(source: Path, teacher: str) -> pa.Table:
    """The reference line-by-line reader: exact ``file:line`` errors."""
    first: dict[tuple[str, str], tuple[float, int]] = {}
    for number, line in read_lines(source):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(_TSV_FIELDS):
            raise InputError(
                f"{source}:{number}: expected 5 tab-separated fields '{' '.join(_TSV_FIELDS)}', got {len(fields)}"
            )
        values = []
        for label, text in zip(_TSV_FIELDS[:2], fields[:2], strict=True):
            try:
                value = float(text)
            except ValueError:
                raise InputError(f"{source}:{number}: {label} {text!r} is not a number") from None
            if not np.isfinite(value):
                raise InputError(f"{source}:{number}: {label} is {text!r}; teacher scores must be finite")
            values.append(value)
        for label, text in zip(_TSV_FIELDS[2:], fields[2:], strict=True):
            if not text.strip():
                raise InputError(f"{source}:{number}: {label} is empty")
        qid, pid_pos, pid_neg = fields[2:]
        for pid, value in ((pid_pos, values[0]), (pid_neg, values[1])):
            seen = first.get((qid, pid))
            if seen is None:
                first[(qid, pid)] = (value, number)
            elif seen[0] != value:
                raise InputError(
                    f"{source}: query {qid!r}, passage {pid!r} has score "
                    f"{seen[0]!r} on line {seen[1]} and {value!r} on line {number}"
                )
    if not first:
        raise InputError(f"{source}: no triples (the file is empty)")
    keys = list(first)
    return pa.table(
        [
            pa.array([k[0] for k in keys], pa.string()),
            pa.array([k[1] for k in keys], pa.string()),
            pa.array([first[k][0] for k in keys], pa.float64()),
            pa.nulls(len(keys), pa.string()).fill_null(teacher),
        ],
        schema=SCHEMA,
    )
