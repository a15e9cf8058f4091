"""BM25 over a collection with bm25s (Lucene variant, English stop words, Snowball stemmer).

:class:`BM25Retriever` is a :class:`~irdistill.retrieval.Retriever`: the harness, candidate
mining and the BM25 teacher (``scores_of``) share one implementation.

Reused: ``bm25s.tokenize`` and ``bm25s.BM25`` (sparse-matrix scoring); PyStemmer for stemming.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from irdistill.data.collection import Collection
from irdistill.errors import InputError, MissingDependencyError
from irdistill.retrieval.base import Retriever

logger = logging.getLogger(__name__)


BM25_NAMES = frozenset({"bm25", "bm25s"})
"""What a model or retriever argument may say to mean BM25 instead of a dense model."""


def is_bm25(name: str) -> bool:
    """``name`` asks for BM25 (``bm25`` or ``bm25s``, any case), not a model."""
    return str(name).lower() in BM25_NAMES


@dataclass
class BM25Params:
    k1: float = 0.9
    b: float = 0.4
    method: str = "lucene"
    stopwords: str | None = "en"
    stemmer: str | None = "english"


class BM25Retriever(Retriever):
    """Index a corpus once, then retrieve top-k (row positions and scores) per query text.

    The defaults k1=0.9, b=0.4 are Anserini's BEIR settings. Queries are tokenised inside the
    search, so :attr:`query_seconds` stays 0 and the search time includes tokenising.
    """

    name = "bm25s"

    def __init__(self, params: BM25Params | None = None, show_progress_bar: bool = True, *, threads: int = -1) -> None:
        try:
            import bm25s
        except ImportError as err:  # pragma: no cover - core dependency
            raise MissingDependencyError("BM25 needs bm25s: pip install bm25s") from err
        # bm25s sets its logger to DEBUG when imported; let the application's config decide
        logging.getLogger("bm25s").setLevel(logging.NOTSET)
        self.params = params or BM25Params()
        self.show_progress_bar = show_progress_bar
        self.threads = (os.cpu_count() or 1) if threads == -1 else max(0, threads)
        """Threads bm25s searches with (``-1``: every core; 0 or 1: this thread only)."""
        self._bm25s = bm25s
        self._stemmer = self._make_stemmer()
        self._retriever: Any = None
        self.num_docs = 0

    def _make_stemmer(self) -> Any:
        if not self.params.stemmer:
            return None
        try:
            import Stemmer
        except ImportError as err:
            raise MissingDependencyError("stemming needs PyStemmer: pip install PyStemmer") from err
        return Stemmer.Stemmer(self.params.stemmer)

    def _tokenize(self, texts: list[str]) -> Any:
        return self._bm25s.tokenize(
            texts, stopwords=self.params.stopwords, stemmer=self._stemmer, show_progress=self.show_progress_bar
        )

    def index(self, collection: Collection) -> None:
        self.index_texts(collection.doc_texts(), collection.doc_ids)

    def index_texts(self, texts: list[str], ids: list[str] | None = None) -> None:
        """Index ``texts`` (result rows are their positions; ``ids`` name them, default ``"0"..``)."""
        if not texts:
            raise InputError("BM25: no documents to index")
        start = time.perf_counter()
        retriever = self._bm25s.BM25(k1=self.params.k1, b=self.params.b, method=self.params.method)
        tokens = self._tokenize(texts)
        retriever.index(tokens, show_progress=self.show_progress_bar)
        self._retriever, self.num_docs = retriever, len(texts)
        self.avg_doc_len = float(np.mean([len(ids) for ids in tokens.ids]))  # as bm25s computes it
        self.doc_ids = list(ids) if ids is not None else [str(i) for i in range(len(texts))]
        self.corpus_seconds = time.perf_counter() - start

    def tokenize(self, texts: list[str]) -> Any:
        """bm25s tokens of ``texts`` with this retriever's stop words and stemmer (``.ids``, ``.vocab``)."""
        return self._tokenize(texts)

    @property
    def nbytes(self) -> int:
        """The score matrix bm25s keeps (CSC data, indices, pointers)."""
        if self._retriever is None:
            return 0
        return int(sum(getattr(a, "nbytes", 0) for a in self._retriever.scores.values()))

    def scores_of(self, query: str) -> np.ndarray:
        """BM25 of one query against every indexed document (row order)."""
        if self._retriever is None:
            raise InputError("BM25: call index() before scoring")
        tokens = self._bm25s.tokenize(
            [query], stopwords=self.params.stopwords, stemmer=self._stemmer, return_ids=False, show_progress=False
        )[0]
        if not tokens:  # only stopwords or unknown terms: BM25 is 0 everywhere (bm25s would raise)
            return np.zeros(self.num_docs, dtype=np.float64)
        return np.asarray(self._retriever.get_scores(tokens), dtype=np.float64)

    def scores_of_texts(self, query: str, texts: list[str]) -> np.ndarray:
        """BM25 (Lucene) of one query against passages that need not be indexed, with the index's
        statistics: document frequencies, document count and average length. An indexed passage
        gets the score :meth:`scores_of` gives it; a query term the index lacks scores 0 in both.

        ``score = sum_t idf(t) tf / (tf + k1 (1 - b + b |d| / avgdl))``, ``idf(t) = ln(1 + (N -
        df + 0.5) / (df + 0.5))``, over the query's tokens (a repeated token counts each time).
        """
        if self._retriever is None:
            raise InputError("BM25: call index() before scoring")
        if self.params.method != "lucene":
            raise InputError(
                f"BM25: passages outside the index are scored with method 'lucene' only, not {self.params.method!r}"
            )
        vocab = self._retriever.vocab_dict
        query_tokens = self._bm25s.tokenize(
            [query], stopwords=self.params.stopwords, stemmer=self._stemmer, return_ids=False, show_progress=False
        )[0]
        terms = [t for t in query_tokens if t in vocab]
        out = np.zeros(len(texts), dtype=np.float64)
        if not terms or not texts:
            return out
        indptr = np.asarray(self._retriever.scores["indptr"])
        term_ids = np.asarray([vocab[t] for t in terms])
        df = (indptr[term_ids + 1] - indptr[term_ids]).astype(np.float64)
        idf = np.log1p((self.num_docs - df + 0.5) / (df + 0.5))
        k1, b = self.params.k1, self.params.b
        docs = self._bm25s.tokenize(
            texts, stopwords=self.params.stopwords, stemmer=self._stemmer, return_ids=False, show_progress=False
        )
        for i, doc in enumerate(docs):
            counts: dict[str, int] = {}
            for token in doc:
                counts[token] = counts.get(token, 0) + 1
            tf = np.array([counts.get(t, 0) for t in terms], dtype=np.float64)
            norm = k1 * (1 - b + b * len(doc) / self.avg_doc_len)
            out[i] = float((idf * tf / (tf + norm)).sum())
        return out

    def search_encoded(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, rows)`` of shape ``(n_queries, min(k, num_docs))`` for query texts."""
        if self._retriever is None:
            raise InputError("BM25: call index() before search()")
        k = min(k, self.num_docs)
        threads = self.threads if len(queries) > 1 and self.threads > 1 else 0
        ids, scores = self._retriever.retrieve(
            self._tokenize(list(queries)), k=k, show_progress=self.show_progress_bar, n_threads=threads
        )
        return np.asarray(scores, dtype=np.float32), np.asarray(ids, dtype=np.int64)
