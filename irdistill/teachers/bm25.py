"""BM25 teacher: bm25s scores of given (query, passage) pairs over a collection's statistics.

Reuses :class:`irdistill.retrieval.BM25Retriever` (bm25s, Lucene BM25, stemming): a query's
scores against the whole corpus come from one sparse-matrix product, then the pairs' passages
are looked up by text. A passage the collection lacks (e.g. a passage with its generated query
cut out, :func:`irdistill.generation.pseudo_collection`) is scored on the collection's statistics
(:meth:`~irdistill.retrieval.BM25Retriever.scores_of_texts`), as if it were one more document that
leaves them unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from irdistill.data.collection import Collection
from irdistill.data.store import text_rows
from irdistill.retrieval.bm25 import BM25Params, BM25Retriever
from irdistill.teachers.base import (
    TEACHERS,
    PointwiseTeacher,
    ScoreScale,
    check_pairs,
    check_scores,
)


@TEACHERS.register("bm25")
class BM25Teacher(PointwiseTeacher):
    """BM25 of each pair; the corpus is indexed once at construction."""

    scale = ScoreScale.BM25
    progress_on_setup = True

    def __init__(
        self, collection: Collection, *, params: BM25Params | None = None, show_progress_bar: bool = False
    ) -> None:
        self.name = "bm25"
        self.params = params or BM25Params()
        self.retriever = BM25Retriever(self.params, show_progress_bar=show_progress_bar)
        self._collection = collection  # indexed at the first score: a resumed complete job never is
        self._rows: Any = None

    def _ready(self) -> None:
        if self._rows is None:
            self.retriever.index_texts(self._collection.doc_texts(), self._collection.doc_ids)
            self._rows = text_rows(self._collection.corpus)  # passage text -> row, no dict of every text

    def config(self) -> dict[str, Any]:
        return {"teacher": "bm25", **vars(self.params)}

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        check_pairs(queries, passages)
        self._ready()
        out = np.empty(len(queries), dtype=np.float64)
        rows = self._rows(passages)
        by_query: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            by_query.setdefault(q, []).append(i)
        for query, positions in by_query.items():
            all_scores = self.retriever.scores_of(query)
            outside = [i for i in positions if rows[i] < 0]
            for i in positions:
                if rows[i] >= 0:
                    out[i] = all_scores[int(rows[i])]
            if outside:
                out[outside] = self.retriever.scores_of_texts(query, [passages[i] for i in outside])
        return check_scores(out, self.name)
