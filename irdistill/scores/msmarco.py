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
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from irdistill.data.collection import Collection, Qrels
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

__all__ = ["export_msmarco_tsv", "import_msmarco_tsv", "import_msmarco_scores", "ImportSummary", "LAYOUTS"]

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


QUERIES_PER_BUCKET = 16_384
"""Queries per temporary bucket of the streaming import: bucket ``b`` holds the queries whose
first appearance ranks ``b * QUERIES_PER_BUCKET`` and up, so deduplicating one bucket at a time
needs the memory of one bucket (~2.6M score rows of MS MARCO), and the buckets in turn are the
output in order."""

LAYOUTS = ("ids", "text")


@dataclass
class ImportSummary:
    """What :func:`import_msmarco_scores` wrote."""

    out: Path
    lines: int
    rows: int
    queries: int


def import_msmarco_tsv(path: PathLike, teacher: str = "imported") -> pa.Table:
    """Read an MS MARCO teacher-score TSV (ids layout) into a ``qid, pid, score, teacher`` table.

    The table of :func:`import_msmarco_scores`, read back into memory: for files that fit; the
    published 40M-line files go through :func:`import_msmarco_scores` into a store.
    """
    with tempfile.TemporaryDirectory(prefix="irdistill-import-") as tmp:
        import_msmarco_scores(path, Path(tmp) / "scores.parquet", teacher)
        return pq.read_table(Path(tmp) / "scores.parquet", schema=SCHEMA)


def import_msmarco_scores(
    path: PathLike,
    out: PathLike,
    teacher: str = "imported",
    *,
    layout: str = "ids",
    collection: Collection | None = None,
    block_size: int = 16 << 20,
) -> ImportSummary:
    """Stream an MS MARCO teacher-score TSV into the Parquet score file ``out`` (atomically).

    Layouts (as published with Margin-MSE, arXiv 2010.02666):

    - ``ids``: ``score_pos<TAB>score_neg<TAB>qid<TAB>pid_pos<TAB>pid_neg``;
    - ``text``: ``score_pos<TAB>score_neg<TAB>query<TAB>passage_pos<TAB>passage_neg``, the texts
      mapped to the ids of ``collection`` (its queries, and its corpus by full text).

    Each (qid, pid) appears once: rows grouped by query, queries in order of first appearance,
    a query's passages in order of first appearance (positive before negative on a line); a
    repeat with the same score is dropped. Memory stays bounded whatever the file's length: the
    file is read in blocks of ``block_size`` bytes, each block's rows go to a temporary bucket of
    :data:`QUERIES_PER_BUCKET` queries, and the buckets are deduplicated and written one by one.
    The block size sets most of the peak, since pyarrow parses blocks ahead on its threads: on
    40M lines, 64 MiB blocks peaked at 2.0 GiB resident and 16 MiB at 1.0 GiB, in the same time.

    Raises :class:`InputError` naming ``file:line`` for a line without 5 tab-separated fields, a
    score that is not a finite number or an empty field (a problem found in a block is re-read
    line by line to name the line), naming both lines when a (qid, pid) has two different
    scores, and naming the line of a text the collection lacks.
    """
    import pyarrow.csv as csv

    source, out = Path(path), Path(out)
    if not source.is_file():
        raise InputError(f"{source}: no such file")
    if not teacher:
        raise InputError("teacher name for imported scores must not be empty")
    if layout not in LAYOUTS:
        raise InputError(f"unknown score layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if layout == "text" and collection is None:
        raise InputError("the text layout needs the collection whose texts it holds (its queries and corpus)")
    to_ids = _TextIds(collection, source) if layout == "text" else None
    out.parent.mkdir(parents=True, exist_ok=True)
    ranks: dict[str, int] = {}
    lines = 0
    with tempfile.TemporaryDirectory(prefix=".import-", dir=out.parent) as tmp:
        buckets: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        try:
            reader = csv.open_csv(
                source,
                read_options=csv.ReadOptions(column_names=list(_TSV_FIELDS), block_size=block_size),
                parse_options=csv.ParseOptions(
                    delimiter="\t", quote_char=False, double_quote=False, escape_char=False, newlines_in_values=False
                ),
                convert_options=csv.ConvertOptions(
                    column_types=_TSV_TYPES, strings_can_be_null=False, quoted_strings_can_be_null=False
                ),
            )
            for batch in reader:
                if not _valid_block(batch):
                    raise _Reread
                if to_ids is not None:
                    batch = to_ids(batch, lines)
                long = _long_rows(batch, lines, ranks)
                lines += batch.num_rows
                bucket_of = long.column("rank").to_numpy() // QUERIES_PER_BUCKET
                for b in np.unique(bucket_of).tolist():
                    part = long.filter(pa.array(bucket_of == b))
                    if b not in buckets:
                        buckets[b] = pa.ipc.new_stream(str(Path(tmp) / f"{b}.arrow"), part.schema)
                    buckets[b].write_table(part)
        except (pa.ArrowInvalid, _Reread):
            for writer in buckets.values():
                writer.close()
            _import_tsv_lines(source, teacher)  # names the first bad line
            raise InputError(f"{source}: not a 5-field score TSV (pyarrow could not read it)") from None
        for writer in buckets.values():
            writer.close()
        if not buckets:
            raise InputError(f"{source}: no triples (the file is empty)")
        with atomic_path(out) as target, pq.ParquetWriter(target, SCHEMA, compression="zstd") as writer:
            rows = 0
            for b in sorted(buckets):
                table = _dedupe(pa.ipc.open_stream(str(Path(tmp) / f"{b}.arrow")).read_all(), source, teacher)
                writer.write_table(table, row_group_size=1 << 20)
                rows += table.num_rows
                (Path(tmp) / f"{b}.arrow").unlink()
    logger.info("%s: %d lines, %d scores of %d queries written to %s", source, lines, rows, len(ranks), out)
    return ImportSummary(out, lines, rows, len(ranks))


_TSV_TYPES = {
    "score_pos": pa.float64(),
    "score_neg": pa.float64(),
    "qid": pa.string(),
    "pid_pos": pa.string(),
    "pid_neg": pa.string(),
}


class _Reread(Exception):
    """A block failed a check: the line reader names the line."""


def _valid_block(batch: pa.RecordBatch) -> bool:
    for name in _TSV_FIELDS:
        column = batch.column(name)
        if column.null_count:
            return False
        if name.startswith("score"):
            if not pc.all(pc.is_finite(column)).as_py():
                return False
        elif pc.any(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0)).as_py():
            return False
    return True


def _long_rows(batch: pa.RecordBatch, first_line: int, ranks: dict[str, int]) -> pa.Table:
    """One row per (query, passage) of the block, with the query's rank of first appearance and
    the row's order in the file (``2 * line + 0`` for the positive, ``+ 1`` for the negative)."""
    qid = batch.column("qid")
    unique = pc.unique(qid)  # in order of first appearance
    for value in unique.to_pylist():
        ranks.setdefault(value, len(ranks))
    unique_ranks = np.fromiter((ranks[v] for v in unique.to_pylist()), dtype=np.int64, count=len(unique))
    rank = unique_ranks[pc.index_in(qid, unique).to_numpy()]
    order = (first_line + np.arange(batch.num_rows, dtype=np.int64)) * 2
    return pa.concat_tables(
        [
            pa.table(
                {
                    "qid": qid,
                    "pid": batch.column("pid_pos"),
                    "score": batch.column("score_pos"),
                    "rank": rank,
                    "order": order,
                }
            ),
            pa.table(
                {
                    "qid": qid,
                    "pid": batch.column("pid_neg"),
                    "score": batch.column("score_neg"),
                    "rank": rank,
                    "order": order + 1,
                }
            ),
        ]
    )


def _dedupe(long: pa.Table, source: Path, teacher: str) -> pa.Table:
    """One bucket's (qid, pid) rows once each, in output order; two scores of a pair are an error."""
    pairs = long.group_by(["qid", "pid"]).aggregate(
        [("score", "min"), ("score", "max"), ("rank", "min"), ("order", "min")]
    )
    if not pc.all(pc.equal(pairs.column("score_min"), pairs.column("score_max"))).as_py():
        _import_tsv_lines(source, teacher)  # names both lines
        raise InputError(f"{source}: a (query, passage) pair has two different scores")
    pairs = pairs.sort_by([("rank_min", "ascending"), ("order_min", "ascending")])
    return pa.table(
        [
            pairs.column("qid"),
            pairs.column("pid"),
            pairs.column("score_min"),
            pa.nulls(pairs.num_rows, pa.string()).fill_null(teacher),
        ],
        schema=SCHEMA,
    )


class _TextIds:
    """Maps the text layout's query and passage texts to the collection's ids."""

    def __init__(self, collection: Collection | None, source: Path) -> None:
        assert collection is not None
        self.collection, self.source = collection, source
        self.query_ids = {" ".join(text.split()): qid for qid, text in collection.queries.items()}
        self.passages = _passage_text_index(collection)

    def __call__(self, batch: pa.RecordBatch, first_line: int) -> pa.RecordBatch:
        columns = {"score_pos": batch.column("score_pos"), "score_neg": batch.column("score_neg")}
        queries = [self.query_ids.get(" ".join(t.split())) for t in batch.column("qid").to_pylist()]
        for i, qid in enumerate(queries):
            if qid is None:
                raise InputError(
                    f"{self.source}: data line {first_line + i + 1}: query "
                    f"{batch.column('qid')[i].as_py()[:80]!r} is not among the queries of {self.collection.label}"
                )
        columns["qid"] = pa.array(queries, pa.string())
        for name in ("pid_pos", "pid_neg"):
            texts = batch.column(name).to_pylist()
            ids = self.passages(texts)
            for i, pid in enumerate(ids):
                if pid is None:
                    raise InputError(
                        f"{self.source}: data line {first_line + i + 1}: passage {texts[i][:80]!r} "
                        f"is not in the corpus of {self.collection.label}"
                    )
            columns[name] = pa.array(ids, pa.string())
        return pa.RecordBatch.from_pydict(columns)


def _passage_text_index(collection: Collection) -> Any:
    """``texts -> ids`` (``None`` for a text the corpus lacks) by white-space-normalised full text."""
    from irdistill.data.store import corpus_rows, text_rows

    rows_of, corpus = text_rows(collection.corpus), corpus_rows(collection.corpus)
    return lambda texts: [corpus.doc_id(int(r)) if r >= 0 else None for r in rows_of(texts)]


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
    rank: dict[str, int] = {}
    for qid, _ in first:
        rank.setdefault(qid, len(rank))
    keys = sorted(first, key=lambda k: rank[k[0]])  # grouped by query, as the streaming import writes
    return pa.table(
        [
            pa.array([k[0] for k in keys], pa.string()),
            pa.array([k[1] for k in keys], pa.string()),
            pa.array([first[k][0] for k in keys], pa.float64()),
            pa.nulls(len(keys), pa.string()).fill_null(teacher),
        ],
        schema=SCHEMA,
    )
