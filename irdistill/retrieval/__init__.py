"""Retrieval: one interface for every way irdistill searches a corpus.

- :class:`Retriever`: index a collection's corpus, encode queries, search (:mod:`.base`);
  :func:`retrieve` searches a collection's queries and returns a run.
- :class:`BM25Retriever` (bm25s), :class:`DenseRetriever` (a bi-encoder and a FAISS index),
  :class:`SparseRetriever` (a learned sparse student and an inverted index),
  :class:`SavedIndexRetriever` (an index folder written by ``irdistill index``).
- :func:`make_retriever`: ``bm25`` or a dense model name, as the CLI and recipes say it.

The evaluation harness (:func:`irdistill.evaluation.evaluate_retrieval`), candidate mining, the
training evaluator and the index workflow all search through it.
"""

from __future__ import annotations

from typing import Any

from irdistill.retrieval.base import Retriever, hits_to_run, retrieve, search_batched
from irdistill.retrieval.bm25 import BM25_NAMES, BM25Params, BM25Retriever, is_bm25
from irdistill.retrieval.dense import DenseRetriever
from irdistill.retrieval.saved import SavedIndexRetriever
from irdistill.retrieval.sparse import SparseRetriever

__all__ = [
    "Retriever",
    "BM25Retriever",
    "BM25Params",
    "BM25_NAMES",
    "DenseRetriever",
    "SparseRetriever",
    "SavedIndexRetriever",
    "hits_to_run",
    "is_bm25",
    "make_retriever",
    "retrieve",
    "search_batched",
]


def make_retriever(model: str, *, show_progress_bar: bool = False, **dense_options: Any) -> Retriever:
    """``bm25`` (or ``bm25s``) as :class:`BM25Retriever`, any other name as a
    :class:`DenseRetriever` with ``dense_options`` (index kind, its parameters, encoding settings,
    inference backend; bm25 ignores the backend)."""
    if is_bm25(model):
        kind = dense_options.get("index", "flat")
        if kind != "flat":
            import logging

            logging.getLogger(__name__).info("bm25 uses its own sparse index; index=%s ignored", kind)
        if dense_options.get("backend", "torch") != "torch":
            import logging

            logging.getLogger(__name__).info("bm25 runs no model; backend=%s ignored", dense_options["backend"])
        return BM25Retriever(show_progress_bar=show_progress_bar)
    return DenseRetriever(model, show_progress_bar=show_progress_bar, **dense_options)
