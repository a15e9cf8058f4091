"""The scoring job: run a teacher over candidate lists into a resumable, sharded score store.

:func:`score_candidates` runs a teacher over ``qid -> [pid, ...]`` candidate lists and writes
its raw scores as one Parquet table ``scores.parquet`` with the columns
``qid: string, pid: string, score: float64, teacher: string`` (rows in candidate order). The
work is split into chunks of ``chunk_queries`` queries; each chunk is written as
``shard-00000.parquet`` through a temporary file and an atomic rename, so a shard that exists
is complete and a run killed at any moment (even by SIGKILL) resumes where it stopped.
``manifest.json`` fingerprints the job (teacher name, scale and settings, the ordered candidate
lists, the query and passage texts, the chunk size) so a folder is never resumed with another
job's scores. Under ``torchrun`` chunk ``i`` belongs to rank ``i % world_size``; rank 0 merges
the shards, in chunk order, once all are present (:func:`merge_shards`), so a resumed or
distributed run gives the same ``scores.parquet`` as one uninterrupted process, row for row.

Folder layout::

    out_dir/
        manifest.json            # format version, fingerprint, chunk count and row counts
        shard-00000.parquet      # chunk 0: the first chunk_queries queries
        shard-00001.parquet
        ...
        scores.parquet           # all shards, in chunk order

The table's schema, reading and conversions live in :mod:`irdistill.scores`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from irdistill.data.collection import Collection
from irdistill.errors import InputError
from irdistill.paths import atomic_path
from irdistill.scores.table import SCHEMA, SCORES_NAME, PathLike
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
from irdistill.teachers.base import Teacher, check_scores

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "MANIFEST_NAME", "merge_shards", "score_candidates", "shard_name", "with_positives"]

FORMAT_VERSION = 1
"""Version of the folder layout and manifest; a folder of another version is not resumed."""


def with_positives(candidates: Mapping[str, Iterable[str]], collection: Collection) -> dict[str, list[str]]:
    """Each query's judged positives (those the corpus holds) first, then its candidates without
    them: the lists a teacher scores for training, since :func:`irdistill.candidates.mine_candidates`
    keeps positives apart. A list that already starts with them comes back unchanged.

    Example:
        >>> with_positives({"q1": ["d3", "d1", "d2"]}, collection)  # d1 judged  # doctest: +SKIP
        {'q1': ['d1', 'd3', 'd2']}
    """
    out = {}
    for qid, docs in candidates.items():
        positives = collection.positives(qid)
        held = set(positives)
        out[qid] = positives + [d for d in docs if d not in held]
    return out


def score_candidates(
    teacher: Teacher,
    collection: Collection,
    candidates: Mapping[str, Iterable[str]],
    out_dir: PathLike,
    *,
    include_positives: bool = True,
    chunk_queries: int = 64,
    rank: int | None = None,
    world_size: int | None = None,
    batch_size: int | None = None,
    show_progress_bar: bool = True,
    overwrite: bool = False,
) -> Path:
    """Score every (query, candidate) pair with ``teacher``; resumable, shardable by rank.

    Args:
        teacher: a pointwise teacher (one ``score(queries, passages)`` call per chunk) or a
            listwise one (``rank(query, passages)`` per query). Its ``name``, ``scale`` and
            settings (:meth:`Teacher.config`; JSON-serialisable) are part of the job's
            fingerprint.
        collection: supplies the query texts and the passages (``Document.full_text()``).
        candidates: ``qid -> pids`` in the order to store them (a list, or a run's
            ``{pid: score}`` dict whose keys are taken in order). Every id is checked against
            ``collection`` before anything is scored or written.
        include_positives: a list that lacks one of its query's judged positives gets them first
            (:func:`with_positives`, the order ``irdistill score`` and ``irdistill run`` use): training
            needs the positive's score, and mined candidates leave it out. Lists that hold them all
            are scored as given. ``False`` scores every list as given (a reranking or fidelity run,
            where adding the judged documents would read the labels).
        out_dir: the job folder (created). Re-running the same job there skips the chunks
            already scored; another job there raises :class:`InputError`.
        chunk_queries: queries per chunk (one shard file each, the unit of resumption).
        rank, world_size: this process's share of the chunks (chunk ``i`` belongs to rank
            ``i % world_size``). Default: the ``RANK`` and ``WORLD_SIZE`` environment
            variables that ``torchrun`` sets, else a single process.
        batch_size: passed to ``teacher.score`` / ``teacher.rank`` as ``batch_size=`` when
            given (not part of the fingerprint); ``None`` leaves the teacher's own setting.
        show_progress_bar: a tqdm bar over this rank's chunks (rank 0 only).
        overwrite: discard the manifest, shards and scores already in ``out_dir`` (other
            files are left alone). Single process only.

    Returns:
        ``out_dir / "scores.parquet"``. Rank 0 (or a single process) writes it as soon as all
        shards are present. Other ranks return the path without merging, and rank 0 cannot
        merge while other ranks still score, so under ``torchrun`` call
        ``torch.distributed.barrier()`` after this function and then :func:`merge_shards`
        on rank 0 (merging is idempotent and deterministic).

    Raises:
        InputError: an unknown query or passage id, an empty text, a folder holding another
            job, or a non-finite score (the chunk's shard is then not written; earlier shards
            are kept and a re-run resumes after fixing the teacher).

    Example:
        >>> path = score_candidates(teacher, collection, candidates, "scores/ce")  # doctest: +SKIP
        >>> read_scores(path).num_rows  # doctest: +SKIP
    """
    out = Path(out_dir)
    if not isinstance(chunk_queries, int) or chunk_queries < 1:
        raise InputError(f"chunk_queries must be a positive integer, got {chunk_queries!r}")
    rank, world_size = rank_and_world_size(rank, world_size)
    if overwrite and world_size > 1:
        raise InputError(
            "overwrite=True is refused with world_size > 1 (ranks would delete each "
            f"other's shards); empty {out} before launching, or use a new folder"
        )
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: expected a folder for teacher scores, got a file")

    if include_positives:  # only lists that lack a positive change: the others are scored as given
        # read twice below: one-shot iterables become lists, lists and runs are kept as they are
        candidates = {q: d if isinstance(d, Sequence | Mapping) else list(d) for q, d in candidates.items()}
        lacking = {
            qid: docs
            for qid, docs in candidates.items()
            if qid in collection.queries and not set(collection.positives(qid)) <= set(docs)
        }
        if lacking:  # the other lists are not copied (a training run holds hundreds of thousands)
            candidates = {**candidates, **with_positives(lacking, collection)}
    name = _teacher_name(teacher)
    listwise = _is_listwise(teacher)
    call_kwargs = _batch_kwargs(teacher, name, listwise, batch_size)
    plan = _Plan.build(collection, candidates)
    chunks = [plan.qids[start : start + chunk_queries] for start in range(0, len(plan.qids), chunk_queries)]
    manifest = _manifest(teacher, name, listwise, plan, chunks, chunk_queries, collection)

    if overwrite:
        clear(out, SCORES_NAME)
    out.mkdir(parents=True, exist_ok=True)
    if open_job(out, manifest, merged=SCORES_NAME, what="teacher scores", differences=_differences):
        logger.info("%s: already complete", out / SCORES_NAME)
        return out / SCORES_NAME
    remove_stale_temp_files(out, rank, world_size, SCORES_NAME)

    mine = [i for i in range(len(chunks)) if i % world_size == rank]
    todo = [i for i in mine if not (out / shard_name(i)).exists()]
    if len(todo) < len(mine):
        logger.info(
            "%s: %d of %d chunks of rank %d already scored; skipping them", out, len(mine) - len(todo), len(mine), rank
        )

    from tqdm.auto import tqdm

    done = sum(len(chunks[i]) for i in mine) - sum(len(chunks[i]) for i in todo)
    bar = tqdm(
        total=sum(len(chunks[i]) for i in mine),
        initial=done,
        desc=f"teacher {name}",
        unit="query",
        disable=not show_progress_bar or rank != 0,
    )
    with bar:
        for chunk in todo:
            table = _score_chunk(
                teacher, name, listwise, collection, plan, chunks[chunk], chunk, call_kwargs, progress=bar.update
            )
            with atomic_path(out / shard_name(chunk)) as tmp:
                pq.write_table(table, tmp)
    if todo:
        logger.info(
            "%s: rank %d scored %d chunks (%d pairs)",
            out,
            rank,
            len(todo),
            sum(manifest["chunk_rows"][i] for i in todo),
        )

    scores = out / SCORES_NAME
    if rank != 0:
        logger.info("%s: rank %d done; rank 0 merges the shards", out, rank)
        return scores
    missing = missing_shards(out, len(chunks))
    if missing:
        logger.info(
            "%s: %d shards of other ranks are still missing; call merge_shards(%r) once every rank has finished",
            out,
            len(missing),
            str(out),
        )
        return scores
    return merge_shards(out)


def merge_shards(out_dir: PathLike) -> Path:
    """Concatenate the shards of a finished job, in chunk order, into ``scores.parquet``.

    Deterministic and idempotent; streams one shard at a time. Raises :class:`InputError`
    when a shard is missing or does not hold the rows the manifest expects.
    """
    out = Path(out_dir)
    manifest = read_manifest(out / MANIFEST_NAME, FORMAT_VERSION, "teacher-score")
    count = int(manifest["num_chunks"])
    missing = missing_shards(out, count)
    if missing:
        raise InputError(
            f"{out}: {len(missing)} of {count} shards are missing (first: {shard_name(missing[0])}); "
            "run score_candidates on every rank until it finishes, then merge"
        )
    target = out / SCORES_NAME
    rows = 0
    with atomic_path(target) as tmp, pq.ParquetWriter(tmp, SCHEMA) as writer:
        for chunk in range(count):
            path = out / shard_name(chunk)
            try:
                table = pq.read_table(path)
            except (OSError, pa.ArrowException) as err:
                raise InputError(f"{path}: unreadable shard ({err}); delete it and re-run") from None
            expected = manifest["chunk_rows"][chunk]
            if not table.schema.equals(SCHEMA, check_metadata=False) or table.num_rows != expected:
                raise InputError(
                    f"{path}: expected {expected} rows with columns {SCHEMA.names}, "
                    f"got {table.num_rows} rows with {table.schema.names}; delete "
                    "it and re-run"
                )
            writer.write_table(table)
            rows += table.num_rows
    logger.info("merged %d shards (%d rows) into %s", count, rows, target)
    return target


class _Plan:
    """Validated candidate lists plus the digests that fingerprint them."""

    def __init__(self, qids: list[str], pids: dict[str, list[str]], candidates_sha256: str, texts_sha256: str) -> None:
        self.qids = qids
        self.pids = pids
        self.candidates_sha256 = candidates_sha256
        self.texts_sha256 = texts_sha256

    @classmethod
    def build(cls, collection: Collection, candidates: Mapping[str, Iterable[str]]) -> _Plan:
        where = collection.label
        if not candidates:
            raise InputError("no candidates to score (the candidate dict is empty)")
        ids_hash, texts_hash = hashlib.sha256(), hashlib.sha256()
        seen: set[str] = set()
        pids_of: dict[str, list[str]] = {}
        for qid, raw in candidates.items():
            if qid not in collection.queries:
                raise InputError(f"candidates: query id {qid!r} is not among the queries of collection {where}")
            text = collection.queries[qid]
            if not text.strip():
                raise InputError(f"collection {where}: query {qid!r} has an empty text")
            pids = list(raw)
            first: dict[str, int] = {}
            for position, pid in enumerate(pids, start=1):
                if pid not in collection.corpus:
                    raise InputError(
                        f"candidates of query {qid!r}: passage id {pid!r} (position "
                        f"{position}) is not in the corpus of collection {where}"
                    )
                if pid in first:
                    raise InputError(
                        f"candidates of query {qid!r}: passage id {pid!r} is listed "
                        f"twice (positions {first[pid]} and {position})"
                    )
                first[pid] = position
                if pid not in seen:
                    seen.add(pid)
                    body = collection.corpus[pid].full_text()
                    if not body:
                        raise InputError(
                            f"collection {where}: passage {pid!r} (a candidate of query {qid!r}) has an empty text"
                        )
                    texts_hash.update(f"p\x00{pid}\x00{body}\x02".encode())
            pids_of[qid] = pids
            ids_hash.update(f"{qid}\x00{chr(1).join(pids)}\x02".encode())
            texts_hash.update(f"q\x00{qid}\x00{text}\x02".encode())
        if not any(pids_of.values()):
            raise InputError("no candidates to score (every query's candidate list is empty)")
        return cls(list(pids_of), pids_of, ids_hash.hexdigest(), texts_hash.hexdigest())


def _score_chunk(
    teacher: Teacher,
    name: str,
    listwise: bool,
    collection: Collection,
    plan: _Plan,
    qids: Sequence[str],
    chunk: int,
    call_kwargs: dict[str, Any],
    progress: Callable[[int], Any] | None = None,
) -> pa.Table:
    """One shard's table. ``progress(n)`` is called as each group of ``n`` queries is scored."""
    qid_col = [qid for qid in qids for _ in plan.pids[qid]]
    pid_col = [pid for qid in qids for pid in plan.pids[qid]]
    parts = []
    batched = listwise and getattr(teacher, "batches_queries", False)  # e.g. the LLM teacher on vLLM
    if batched:  # the whole chunk's queries in one call, their windows scored together
        ranked = [q for q in qids if plan.pids[q]]
        lists = [[collection.corpus[p].full_text() for p in plan.pids[q]] for q in ranked]
        results = teacher.rank_many([collection.queries[q] for q in ranked], lists, **call_kwargs)  # type: ignore[attr-defined]
        for qid, texts, scores in zip(ranked, lists, results, strict=True):
            parts.append(_as_vector(scores, len(texts), name, f"query {qid!r}"))
        if progress is not None:
            progress(len(qids))
    # a listwise teacher ranks one query's list at a time; a pointwise one gets whole queries,
    # about PAIRS_PER_CALL pairs a call
    groups = [] if batched else [[q] for q in qids] if listwise else _query_groups(qids, plan, PAIRS_PER_CALL)
    for group in groups:
        pairs = [(q, p) for q in group for p in plan.pids[q]]
        if pairs and listwise:
            texts = [collection.corpus[p].full_text() for _, p in pairs]
            parts.append(
                _as_vector(
                    teacher.rank(collection.queries[group[0]], texts, **call_kwargs),
                    len(texts),
                    name,
                    f"query {group[0]!r}",
                )
            )
        elif pairs:
            parts.append(
                _as_vector(
                    teacher.score(
                        [collection.queries[q] for q, _ in pairs],
                        [collection.corpus[p].full_text() for _, p in pairs],
                        **call_kwargs,
                    ),
                    len(pairs),
                    name,
                    f"chunk {chunk}",
                )
            )
        if progress is not None:
            progress(len(group))
    raw = np.concatenate(parts) if parts else np.zeros(0)
    try:
        scores = check_scores(raw, name)
    except InputError as err:  # name the pair, and say what is kept
        bad = int(np.flatnonzero(~np.isfinite(raw))[0])
        raise InputError(
            f"teacher {name} produced a non-finite score ({raw[bad]}) for query "
            f"{qid_col[bad]!r}, passage {pid_col[bad]!r}; shard {shard_name(chunk)} "
            "was not written (earlier shards are kept)"
        ) from err
    return pa.table(
        [
            pa.array(qid_col, pa.string()),
            pa.array(pid_col, pa.string()),
            pa.array(scores, pa.float64()),
            pa.nulls(len(qid_col), pa.string()).fill_null(name),
        ],
        schema=SCHEMA,
    )


PAIRS_PER_CALL = 2048
"""A pointwise teacher gets at most about this many pairs per ``score`` call (whole queries),
so the progress bar moves within a chunk; duplicates are still found within each call."""


def _query_groups(qids: Sequence[str], plan: _Plan, max_pairs: int) -> Iterator[list[str]]:
    """Consecutive runs of whole queries holding at most ``max_pairs`` pairs (at least one query)."""
    group: list[str] = []
    pairs = 0
    for qid in qids:
        if group and pairs + len(plan.pids[qid]) > max_pairs:
            yield group
            group, pairs = [], 0
        group.append(qid)
        pairs += len(plan.pids[qid])
    if group:
        yield group


def _as_vector(raw: Any, expected: int, name: str, where: str) -> np.ndarray:
    values = np.asarray(raw, dtype=np.float64)
    if values.shape != (expected,):
        raise ValueError(
            f"teacher {name} returned scores of shape {values.shape} for {expected} "
            f"pairs ({where}); expected ({expected},)"
        )
    return values


def _teacher_name(teacher: Teacher) -> str:
    name = getattr(teacher, "name", None) or type(teacher).__name__
    return str(name)


def _is_listwise(teacher: Teacher) -> bool:
    return bool(getattr(teacher, "listwise", False)) or not callable(getattr(teacher, "score", None))


def _teacher_config(teacher: Teacher) -> Any:
    # a JSON round trip makes tuples lists and keys strings, as the manifest stores them
    return json.loads(json.dumps(dict(teacher.config()), sort_keys=True, default=str))


def _batch_kwargs(teacher: Teacher, name: str, listwise: bool, batch_size: int | None) -> dict[str, Any]:
    if batch_size is None:
        return {}
    method = teacher.rank if listwise else teacher.score  # type: ignore[attr-defined]
    params = inspect.signature(method).parameters.values()
    if not any(p.name == "batch_size" or p.kind is p.VAR_KEYWORD for p in params):
        raise InputError(
            f"teacher {name} takes no batch_size in {method.__name__}(); set its batch size where the teacher is built"
        )
    return {"batch_size": batch_size}


def _manifest(
    teacher: Teacher,
    name: str,
    listwise: bool,
    plan: _Plan,
    chunks: list[list[str]],
    chunk_queries: int,
    collection: Collection,
) -> dict[str, Any]:
    scale = getattr(teacher, "scale", None)
    job = {
        "format_version": FORMAT_VERSION,
        "teacher": {
            "name": name,
            "scale": None if scale is None else str(getattr(scale, "value", scale)),
            "listwise": listwise,
            "config": _teacher_config(teacher),
        },
        "chunk_queries": chunk_queries,
        "candidates_sha256": plan.candidates_sha256,
        "texts_sha256": plan.texts_sha256,
    }
    fingerprint = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()
    return {
        **job,
        "fingerprint": fingerprint,
        "num_chunks": len(chunks),
        "num_queries": len(plan.qids),
        "num_pairs": sum(len(p) for p in plan.pids.values()),
        "collection": collection.label,
        "chunk_rows": [sum(len(plan.pids[q]) for q in chunk) for chunk in chunks],
    }


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    found = []
    if old.get("teacher") != new["teacher"]:
        found.append(
            f"teacher {json.dumps(old.get('teacher'), sort_keys=True)} there, "
            f"{json.dumps(new['teacher'], sort_keys=True)} now"
        )
    if old.get("chunk_queries") != new["chunk_queries"]:
        found.append(f"chunk_queries {old.get('chunk_queries')} there, {new['chunk_queries']} now")
    if old.get("candidates_sha256") != new["candidates_sha256"]:
        found.append(
            f"the candidate lists differ ({old.get('num_queries')} queries / "
            f"{old.get('num_pairs')} pairs there, {new['num_queries']} / "
            f"{new['num_pairs']} now, or another order)"
        )
    elif old.get("texts_sha256") != new["texts_sha256"]:  # texts of the same ids
        found.append(
            f"the query or passage texts differ (collection {old.get('collection')} there, {new['collection']} now)"
        )
    return "; ".join(found) or "the fingerprints differ"
