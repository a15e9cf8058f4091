"""The generation job: synthetic queries for a corpus into a resumable, sharded Parquet store.

:func:`generate_queries` runs a :class:`~irdistill.generation.generators.QueryGenerator` over the
passages of a corpus, ``chunk_passages`` passages a shard, with the guarantees of the teacher-score
store (:mod:`irdistill.workflows.scoring`): each shard is written through a temporary file and an
atomic rename, so a run killed at any moment (even by SIGKILL) resumes after its last complete
shard; ``manifest.json`` fingerprints the job (generator settings, passages, texts, seed, chunk size)
so a folder is never resumed with another job's queries; under ``torchrun`` chunk ``i`` belongs to
rank ``i % world_size`` and rank 0 merges. Merging drops queries that repeat an earlier one (case
and white space folded), whatever their passage, since a query cannot be the pseudo-query of two
passages, and writes ``queries.parquet`` and ``generated.json`` (counts and throughput)::

    out_dir/
        manifest.json
        shard-00000.parquet      # qid, pid, query, generator; the shard's seconds in its metadata
        ...
        queries.parquet          # every shard, in chunk order, without repeated queries
        generated.json           # passages, generated, duplicates, queries, seconds, queries_per_s,
                                 # peak_rss_gib (the generating processes' peak memory)

A query's id is ``<pid>-q<i>``; its source passage is its pseudo-positive (:func:`pseudo_collection`).
:func:`round_trip_filter` keeps the queries whose source passage a retriever ranks in its top ``k``
(Promptagator's round-trip consistency).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from irdistill.data.collection import Collection, Document
from irdistill.errors import InputError
from irdistill.generation.generators import QueryGenerator
from irdistill.memory import peak_rss_mb
from irdistill.paths import atomic_path, write_text_atomic
from irdistill.scores.table import PathLike
from irdistill.shards import (
    MANIFEST_NAME,
    clear,
    missing_shards,
    open_job,
    rank_and_world_size,
    read_manifest,
    remove_stale_temp_files,
    shard_name,
)

logger = logging.getLogger(__name__)

__all__ = [
    "QUERIES_NAME",
    "SCHEMA",
    "filter_queries",
    "generate_queries",
    "merge_query_shards",
    "pseudo_collection",
    "read_queries",
    "round_trip_filter",
    "sample_passages",
]

FORMAT_VERSION = 1
QUERIES_NAME = "queries.parquet"
SUMMARY_NAME = "generated.json"
SCHEMA = pa.schema(
    [
        pa.field("qid", pa.string(), nullable=False),
        pa.field("pid", pa.string(), nullable=False),
        pa.field("query", pa.string(), nullable=False),
        pa.field("generator", pa.string(), nullable=False),
    ]
)
_SECONDS_KEY = b"irdistill.seconds"
_PEAK_KEY = b"irdistill.peak_rss_gib"


def sample_passages(collection: Collection, max_passages: int | None, seed: int) -> list[str]:
    """The ids of the passages to generate for: every passage, or ``max_passages`` drawn with ``seed``
    (in corpus order)."""
    ids = collection.doc_ids
    if max_passages is None or max_passages >= len(ids):
        return list(ids)
    if max_passages < 1:
        raise InputError(f"generate: max_passages must be >= 1, got {max_passages}")
    keep = sorted(random.Random(seed).sample(range(len(ids)), max_passages))
    return [ids[i] for i in keep]


def generate_queries(
    generator: QueryGenerator,
    collection: Collection,
    out_dir: PathLike,
    *,
    passages: Sequence[str] | None = None,
    per_passage: int = 1,
    seed: int = 0,
    chunk_passages: int = 256,
    rank: int | None = None,
    world_size: int | None = None,
    show_progress_bar: bool = True,
    overwrite: bool = False,
) -> Path:
    """Generate up to ``per_passage`` queries for each passage; resumable, shardable by rank.

    Args:
        generator: the query generator; its ``name`` and ``config()`` are part of the fingerprint.
        collection: supplies the passages (its judgements are never read).
        out_dir: the job folder (created).
        passages: the passage ids to generate for (default: the whole corpus), e.g. from
            :func:`sample_passages`.
        per_passage: queries asked for each passage (fewer remain when duplicates are dropped).
        seed: the generator's seed; a passage's queries depend only on it and the passage.
        chunk_passages: passages a shard (the unit of resumption).
        rank, world_size: this process's share of the chunks; default ``RANK`` / ``WORLD_SIZE``.
        show_progress_bar: a bar over this rank's passages (rank 0).
        overwrite: discard an earlier job's files in ``out_dir``.

    Returns:
        ``out_dir / "queries.parquet"`` (merged by rank 0 once every shard exists).
    """
    out = Path(out_dir)
    if per_passage < 1 or chunk_passages < 1:
        raise InputError(f"generate: per_passage and chunk_passages must be >= 1, got {per_passage}, {chunk_passages}")
    rank, world_size = rank_and_world_size(rank, world_size)
    pids = list(collection.doc_ids if passages is None else passages)
    if not pids:
        raise InputError("generate: no passages to generate queries for")
    for pid in pids:
        if pid not in collection.corpus:
            raise InputError(f"generate: passage id {pid!r} is not in the corpus of {collection.label}")
    # the corpus's own fingerprint (kept by the corpus store) covers the texts, the ids the choice
    passages = hashlib.sha256(collection.corpus_fingerprint().encode())
    for pid in pids:
        passages.update(f"{pid}\x00".encode())
    chunks = [pids[start : start + chunk_passages] for start in range(0, len(pids), chunk_passages)]
    job = {
        "format_version": FORMAT_VERSION,
        "generator": {"name": generator.name, "config": json.loads(json.dumps(generator.config(), default=str))},
        "per_passage": per_passage,
        "seed": seed,
        "chunk_passages": chunk_passages,
        "passages_sha256": passages.hexdigest(),
    }
    manifest = {
        **job,
        "fingerprint": hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest(),
        "num_chunks": len(chunks),
        "num_passages": len(pids),
        "collection": collection.label,
        "chunk_rows": [len(c) for c in chunks],  # passages a chunk (its queries vary)
    }
    if overwrite:
        clear(out, QUERIES_NAME)
        (out / SUMMARY_NAME).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if open_job(out, manifest, merged=QUERIES_NAME, what="generated queries", differences=_differences):
        logger.info("%s: already complete", out / QUERIES_NAME)
        return out / QUERIES_NAME
    remove_stale_temp_files(out, rank, world_size, QUERIES_NAME)

    mine = [i for i in range(len(chunks)) if i % world_size == rank]
    todo = [i for i in mine if not (out / shard_name(i)).exists()]
    from tqdm.auto import tqdm

    bar = tqdm(
        total=sum(len(chunks[i]) for i in mine),
        initial=sum(len(chunks[i]) for i in mine if i not in todo),
        desc=f"queries {generator.name}",
        unit="passage",
        disable=not show_progress_bar or rank != 0,
    )
    with bar:
        for chunk in todo:
            started = time.perf_counter()
            docs = [(pid, collection.corpus[pid]) for pid in chunks[chunk]]
            queries = generator.generate(docs, per_passage, seed)
            if len(queries) != len(docs):
                raise ValueError(f"generator {generator.name} returned {len(queries)} lists for {len(docs)} passages")
            table = _chunk_table(generator.name, docs, queries, time.perf_counter() - started)
            with atomic_path(out / shard_name(chunk)) as tmp:
                pq.write_table(table, tmp)
            bar.update(len(docs))
    target = out / QUERIES_NAME
    if rank != 0:
        return target
    if missing_shards(out, len(chunks)):
        logger.info("%s: shards of other ranks are still missing; rank 0 merges once all exist", out)
        return target
    return merge_query_shards(out)


def _chunk_table(name: str, docs: list[tuple[str, Document]], queries: list[list[str]], seconds: float) -> pa.Table:
    qids, pids, texts = [], [], []
    for (pid, _), own in zip(docs, queries, strict=True):
        for i, query in enumerate(own):
            qids.append(f"{pid}-q{i}")
            pids.append(pid)
            texts.append(query)
    table = pa.table([qids, pids, texts, [name] * len(qids)], schema=SCHEMA)
    return table.replace_schema_metadata(
        {_SECONDS_KEY: repr(seconds).encode(), _PEAK_KEY: repr(peak_rss_mb() / 1024).encode()}
    )


def merge_query_shards(out_dir: PathLike) -> Path:
    """Concatenate a finished job's shards in chunk order, without repeated queries, into
    ``queries.parquet``, and write ``generated.json``. Deterministic and idempotent."""
    out = Path(out_dir)
    manifest = read_manifest(out / MANIFEST_NAME, FORMAT_VERSION, "query-generation")
    count = int(manifest["num_chunks"])
    missing = missing_shards(out, count)
    if missing:
        raise InputError(f"{out}: {len(missing)} of {count} shards are missing (first: {shard_name(missing[0])})")
    seen: set[str] = set()
    parts, generated, seconds, peak = [], 0, 0.0, 0.0
    for chunk in range(count):
        table = pq.read_table(out / shard_name(chunk))
        seconds += float((table.schema.metadata or {}).get(_SECONDS_KEY, b"0"))
        peak = max(peak, float((table.schema.metadata or {}).get(_PEAK_KEY, b"0")))
        generated += table.num_rows
        keep = []
        for query in table.column("query").to_pylist():
            key = " ".join(query.lower().split())
            keep.append(key not in seen)
            seen.add(key)
        parts.append(table.filter(pa.array(keep, pa.bool_())).replace_schema_metadata(None))
    merged = pa.concat_tables(parts) if parts else SCHEMA.empty_table()
    with atomic_path(out / QUERIES_NAME) as tmp:
        pq.write_table(merged, tmp)
    summary = {
        "generator": manifest["generator"]["name"],
        "passages": int(manifest["num_passages"]),
        "generated": generated,
        "duplicates": generated - merged.num_rows,
        "queries": merged.num_rows,
        "seconds": round(seconds, 2),
        "queries_per_s": round(generated / seconds, 2) if seconds > 0 else None,
        "peak_rss_gib": round(peak, 3),
    }
    write_text_atomic(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    logger.info(
        "%s: %d queries for %d passages (%d repeats dropped)",
        out,
        merged.num_rows,
        summary["passages"],
        summary["duplicates"],
    )
    return out / QUERIES_NAME


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    found = [
        f"{key} {json.dumps(old.get(key), sort_keys=True)} there, {json.dumps(new[key], sort_keys=True)} now"
        for key in ("generator", "per_passage", "seed", "chunk_passages")
        if old.get(key) != new[key]
    ]
    if old.get("passages_sha256") != new["passages_sha256"]:
        found.append(
            f"the passages differ ({old.get('num_passages')} there, {new['num_passages']} now, or other texts)"
        )
    return "; ".join(found) or "the fingerprints differ"


def read_queries(path: PathLike) -> pa.Table:
    """A ``queries.parquet`` (or its job folder), checked against :data:`SCHEMA`."""
    path = Path(path)
    if path.is_dir():
        path = path / QUERIES_NAME
    if not path.is_file():
        raise InputError(f"{path}: no such file; generate queries first (irdistill generate-queries)")
    table = pq.read_table(path)
    if table.schema.names != SCHEMA.names:
        raise InputError(f"{path}: expected the columns {SCHEMA.names}, got {table.schema.names}")
    return table


def pseudo_collection(
    queries: pa.Table, collection: Collection, *, split: str = "generated", cloze: bool = False
) -> Collection:
    """The generated queries as a training collection: the corpus of ``collection`` and each query's
    source passage as its one pseudo-judgement (relevance 1).

    ``cloze``: the inverse cloze task (Lee et al., arXiv 1906.00300): each source passage loses the
    text of its queries (a :class:`ClozeCorpus`), so that an extractive query (a sentence, a span,
    the title) is not found word for word in its pseudo-positive. A query that leaves its passage
    empty is dropped; one not found in its passage (an LLM's) leaves the passage as it is.
    """
    qids = queries.column("qid").to_pylist()
    pids = queries.column("pid").to_pylist()
    texts = queries.column("query").to_pylist()
    if not qids:
        raise InputError("no generated queries to train on (all were filtered out, or none was generated)")
    corpus: Mapping[str, Document] = collection.corpus
    if cloze:
        cuts: dict[str, list[str]] = {}
        for pid, text in zip(pids, texts, strict=True):
            cuts.setdefault(pid, []).append(text)
        corpus = ClozeCorpus(collection.corpus, cuts)
        emptied = corpus.emptied
        if emptied:
            keep = [i for i, pid in enumerate(pids) if pid not in emptied]
            logger.info("cloze: %d queries dropped (their passage held nothing else)", len(qids) - len(keep))
            qids, pids, texts = ([xs[i] for i in keep] for xs in (qids, pids, texts))
            if not qids:
                raise InputError("cloze: every generated query was its whole passage; nothing is left to train on")
        logger.info(
            "cloze: the queries cut out of %d source passages (%d not found in theirs, left whole)",
            len(corpus.patched),
            corpus.not_found,
        )
    return Collection(
        corpus=corpus,
        queries=dict(zip(qids, texts, strict=True)),
        qrels={q: {p: 1} for q, p in zip(qids, pids, strict=True)},
        name=collection.name,
        split=split,
    )


def cut_out(text: str, piece: str) -> tuple[str, bool]:
    """``text`` without its first occurrence of ``piece`` (white space between the words of
    ``piece`` may differ), and whether it occurred; the seam's white space is tidied."""
    words = piece.split()
    if not words:
        return text, False
    pattern = r"\s+".join(re.escape(w) for w in words)
    match = re.search(pattern, text)
    if match is None:
        return text, False
    return " ".join((text[: match.start()] + " " + text[match.end() :]).split()), True


class ClozeCorpus(Mapping[str, Document]):
    """``base`` with given pieces of text cut out of some passages: what the inverse cloze task
    trains on (:func:`pseudo_collection` with ``cloze=True``).

    A passage's pieces are cut from its title and its text. The corpus keeps ``base``'s ids and
    rows and the row interface training reads (``rows_of``, ``doc_id``, ``texts``), so a
    memory-mapped store stays memory-mapped; only the patched passages are held in memory.
    Teachers are built on :attr:`base` (its statistics and cached embeddings) and score the
    patched texts as passages outside it.

    Attributes:
        patched: ``pid -> Document`` of the passages that lost text.
        emptied: the pids whose pieces were all there was (left out of :attr:`patched`).
        not_found: how many pieces did not occur in their passage (left whole).
    """

    def __init__(self, base: Mapping[str, Document], cuts: Mapping[str, Sequence[str]]) -> None:
        from irdistill.data.store import corpus_rows

        self.base = base
        self._rows = corpus_rows(base)
        self.patched: dict[str, Document] = {}
        self.emptied: set[str] = set()
        self.not_found = 0
        for pid, pieces in cuts.items():
            doc = base[pid]
            title, text, changed = doc.title, doc.text, False
            for piece in pieces:
                text, found = cut_out(text, piece)
                if not found:
                    title, found = cut_out(title, piece)
                changed |= found
                self.not_found += not found
            if not changed:
                continue
            if not (title.strip() or text.strip()):
                self.emptied.add(pid)
                continue
            self.patched[pid] = Document(text=text, title=title)
        ids = list(self.patched)
        self._patched_ids = dict(zip(self._rows.rows_of(ids).tolist(), ids, strict=True))  # row -> pid

    def __getitem__(self, doc_id: str) -> Document:
        patched = self.patched.get(doc_id)
        return patched if patched is not None else self.base[doc_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self.base

    def rows_of(self, doc_ids: Iterable[str]) -> np.ndarray:
        return self._rows.rows_of(doc_ids)

    def doc_id(self, row: int) -> str:
        return self._rows.doc_id(row)

    def texts(self, rows: Iterable[int]) -> list[str]:
        rows = [int(r) for r in rows]
        return [
            self.patched[self._patched_ids[row]].full_text() if row in self._patched_ids else text
            for row, text in zip(rows, self._rows.texts(rows), strict=True)
        ]

    def full_texts(self) -> list[str]:
        return self.texts(range(len(self)))


def unpatched(collection: Collection) -> Collection:
    """``collection`` over the corpus its :class:`ClozeCorpus` patches (itself when none): what a
    teacher is built on, so that its statistics and cached embeddings are the corpus's own."""
    base = getattr(collection.corpus, "base", None)
    if base is None:
        return collection
    return Collection(
        corpus=base, queries=collection.queries, qrels=collection.qrels, name=collection.name, split=collection.split
    )


def round_trip_filter(
    queries: pa.Table,
    collection: Collection,
    *,
    retriever: str = "bm25",
    k: int = 1,
    show_progress_bar: bool = False,
    **search: Any,
) -> tuple[pa.Table, dict[str, Any]]:
    """Keep the queries whose source passage ``retriever`` ranks in its top ``k`` of the corpus
    (round-trip consistency, arXiv 2209.11755). Returns the kept rows and a report with the
    counts and a few kept and dropped examples."""
    from irdistill.candidates import iter_candidates

    if k < 1:
        raise InputError(f"filter: k must be >= 1, got {k}")
    pseudo = pseudo_collection(queries, collection)
    kept: set[str] = set()
    for qid, hits in iter_candidates(
        pseudo, retriever, k, exclude_positives=False, show_progress_bar=show_progress_bar, **search
    ):
        if any(pid in pseudo.qrels[qid] for pid, _ in hits):  # the source passage came back
            kept.add(qid)
    mask = [q in kept for q in queries.column("qid").to_pylist()]
    table = queries.filter(pa.array(mask, pa.bool_()))
    dropped = queries.filter(pa.array([not m for m in mask], pa.bool_()))
    report = {
        "retriever": retriever,
        "k": k,
        "queries": queries.num_rows,
        "kept": table.num_rows,
        "kept_share": round(table.num_rows / queries.num_rows, 4) if queries.num_rows else 0.0,
        "kept_examples": table.column("query").to_pylist()[:5],
        "dropped_examples": dropped.column("query").to_pylist()[:5],
    }
    logger.info("round-trip filter (%s, top %d): kept %d of %d queries", retriever, k, table.num_rows, queries.num_rows)
    return table, report


def filter_queries(
    queries: pa.Table,
    collection: Collection,
    kept_path: PathLike,
    report_path: PathLike,
    *,
    retriever: str | None,
    k: int = 1,
    show_progress_bar: bool = False,
) -> dict[str, Any]:
    """:func:`round_trip_filter` (or, with ``retriever=None``, every query kept), written atomically:
    the kept rows to ``kept_path`` and the report to ``report_path``; returns the report."""
    if retriever is None:
        kept = queries
        report: dict[str, Any] = {"retriever": None, "k": None, "queries": queries.num_rows, "kept": queries.num_rows}
    else:
        kept, report = round_trip_filter(
            queries, collection, retriever=retriever, k=k, show_progress_bar=show_progress_bar
        )
    write_text_atomic(Path(report_path), json.dumps(report, indent=2) + "\n")
    with atomic_path(kept_path) as tmp:
        pq.write_table(kept, tmp)
    return report
