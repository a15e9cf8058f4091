"""Candidate mining: top-k passages per query from BM25 or a dense model, in query batches.

The corpus side is a :class:`~irdistill.retrieval.Retriever` (:func:`~irdistill.retrieval.make_retriever`).

Queries are processed ``query_batch_size`` at a time and each batch's lines are appended to
the output run file, so memory stays flat as the number of queries grows (the corpus side, a
BM25 index or a FAISS index of the corpus embeddings, is built once). Judged positives are
kept apart: by default they are removed from the candidates, so the run lists negatives only
and positives come from the qrels.

Optional false-negative filter: with a teacher and a margin ``m``, a negative ``n`` of query
``q`` is dropped when ``t(q, n) > min_{p+} t(q, p+) - m``, that is, when the teacher scores it
within ``m`` of (or above) the weakest judged positive: such passages are likely unjudged
positives (as RocketQA's denoising, arXiv 2010.08191).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from irdistill.data.collection import Collection, Run
from irdistill.errors import InputError
from irdistill.paths import atomic_path
from irdistill.retrieval import make_retriever
from irdistill.teachers.base import Teacher

logger = logging.getLogger(__name__)


@dataclass
class FalseNegativeFilter:
    teacher: Teacher
    margin: float = 0.0


def iter_candidates(
    collection: Collection,
    retriever: str = "bm25",
    k: int = 100,
    *,
    query_ids: list[str] | None = None,
    exclude_positives: bool = True,
    false_negatives: FalseNegativeFilter | None = None,
    query_batch_size: int = 256,
    index: str = "flat",
    batch_size: int = 64,
    backend: str = "torch",
    show_progress_bar: bool = True,
) -> Iterator[tuple[str, list[tuple[str, float]]]]:
    """Yield ``(qid, [(pid, score), ...])`` per query, best first, batch after batch.

    ``backend``: the dense retriever's inference backend (:mod:`irdistill.backends`); bm25 ignores it.
    """
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    if query_batch_size < 1:
        raise InputError(f"query_batch_size must be >= 1, got {query_batch_size}")
    qids = query_ids if query_ids is not None else collection.query_ids
    for qid in qids:
        if qid not in collection.queries:
            raise InputError(f"query id {qid!r} is not in {collection.name}/{collection.split}")
    searcher = make_retriever(
        retriever, index=index, batch_size=batch_size, backend=backend, show_progress_bar=show_progress_bar
    )
    searcher.index(collection)
    doc_ids = searcher.doc_ids
    dropped = 0
    for start in tqdm(
        range(0, len(qids), query_batch_size), desc="candidates", unit="batch", disable=not show_progress_bar
    ):
        batch = qids[start : start + query_batch_size]
        positives = [set(collection.positives(q)) for q in batch]
        depth = k + (max((len(p) for p in positives), default=0) if exclude_positives else 0)
        # query embeddings are not cached here: batches differ from run to run
        scores, ids = searcher.search(batch, [collection.queries[q] for q in batch], depth, cache=False)
        for row, qid in enumerate(batch):
            hits = [(doc_ids[i], float(s)) for s, i in zip(scores[row], ids[row], strict=True) if i >= 0]
            if exclude_positives:
                hits = [(d, s) for d, s in hits if d not in positives[row]]
            hits = hits[:k]
            if false_negatives is not None and positives[row] and hits:
                before = len(hits)
                hits = _filter_false_negatives(collection, qid, hits, positives[row], false_negatives)
                dropped += before - len(hits)
            yield qid, hits
    if false_negatives is not None:
        logger.info("false-negative filter dropped %d candidates", dropped)


def _filter_false_negatives(
    collection: Collection, qid: str, hits: list[tuple[str, float]], positives: set[str], flt: FalseNegativeFilter
) -> list[tuple[str, float]]:
    query = collection.queries[qid]
    pos = sorted(positives)
    texts = [collection.corpus[d].full_text() for d in pos] + [collection.corpus[d].full_text() for d, _ in hits]
    scores = flt.teacher.rank(query, texts)
    threshold = float(np.min(scores[: len(pos)])) - flt.margin
    return [hit for hit, s in zip(hits, scores[len(pos) :], strict=True) if s <= threshold]


def mine_candidates(collection: Collection, retriever: str = "bm25", k: int = 100, **kwargs: Any) -> Run:
    """All candidates in memory (``qid -> {pid: score}``); see :func:`iter_candidates` for options."""
    return {qid: dict(hits) for qid, hits in iter_candidates(collection, retriever, k, **kwargs)}


def write_candidates(
    collection: Collection, out: str | os.PathLike[str], retriever: str = "bm25", k: int = 100, **kwargs: Any
) -> int:
    """Stream candidates to a TREC run file, batch by batch (memory stays flat); atomic.

    Returns the number of queries written.
    """
    tag = Path(retriever).name.replace(" ", "_") or "candidates"
    count = 0
    with atomic_path(out) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for qid, hits in iter_candidates(collection, retriever, k, **kwargs):
            handle.writelines(
                f"{qid} Q0 {pid} {rank} {score:.6f} {tag}\n" for rank, (pid, score) in enumerate(hits, start=1)
            )
            count += 1
    logger.info("candidates of %d queries written to %s", count, out)
    return count
