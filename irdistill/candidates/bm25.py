"""BM25 over a collection with bm25s (Lucene variant, English stop words, Snowball stemmer).

Reused: ``bm25s.tokenize`` and ``bm25s.BM25`` (sparse-matrix scoring); PyStemmer for stemming.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from irdistill.errors import InputError, MissingDependencyError

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


class BM25Retriever:
    """Index document texts once, then retrieve top-k (row positions and scores) per query.

    The defaults k1=0.9, b=0.4 are Anserini's BEIR settings.
    """

    def __init__(self, params: BM25Params | None = None, show_progress_bar: bool = True) -> None:
        try:
            import bm25s
        except ImportError as err:  # pragma: no cover - core dependency
            raise MissingDependencyError("BM25 needs bm25s: pip install bm25s") from err
        # bm25s sets its logger to DEBUG when imported; let the application's config decide
        logging.getLogger("bm25s").setLevel(logging.NOTSET)
        self.params = params or BM25Params()
        self.show_progress_bar = show_progress_bar
        self._bm25s = bm25s
        self._stemmer = self._make_stemmer()
        self._retriever: Any = None
        self.num_docs = 0
        self.index_seconds = 0.0

    def _make_stemmer(self) -> Any:
        if not self.params.stemmer:
            return None
        try:
            import Stemmer
        except ImportError as err:
            raise MissingDependencyError("stemming needs PyStemmer: pip install PyStemmer") from err
        return Stemmer.Stemmer(self.params.stemmer)

    def _tokenize(self, texts: list[str]) -> Any:
        return self._bm25s.tokenize(texts, stopwords=self.params.stopwords, stemmer=self._stemmer,
                                    show_progress=self.show_progress_bar)

    def index(self, texts: list[str]) -> None:
        if not texts:
            raise InputError("BM25: no documents to index")
        start = time.perf_counter()
        retriever = self._bm25s.BM25(k1=self.params.k1, b=self.params.b, method=self.params.method)
        retriever.index(self._tokenize(texts), show_progress=self.show_progress_bar)
        self._retriever, self.num_docs = retriever, len(texts)
        self.index_seconds = time.perf_counter() - start

    def scores_of(self, query: str) -> np.ndarray:
        """BM25 of one query against every indexed document (row order)."""
        if self._retriever is None:
            raise InputError("BM25: call index() before scoring")
        tokens = self._bm25s.tokenize([query], stopwords=self.params.stopwords, stemmer=self._stemmer,
                                      return_ids=False, show_progress=False)[0]
        if not tokens:  # only stopwords or unknown terms: BM25 is 0 everywhere (bm25s would raise)
            return np.zeros(self.num_docs, dtype=np.float64)
        return np.asarray(self._retriever.get_scores(tokens), dtype=np.float64)

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores, ids)`` of shape ``(n_queries, min(k, num_docs))``."""
        if self._retriever is None:
            raise InputError("BM25: call index() before search()")
        k = min(k, self.num_docs)
        ids, scores = self._retriever.retrieve(self._tokenize(queries), k=k,
                                               show_progress=self.show_progress_bar)
        return np.asarray(scores, dtype=np.float32), np.asarray(ids, dtype=np.int64)
