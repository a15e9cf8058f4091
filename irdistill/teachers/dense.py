"""Dense teacher: a bi-encoder's similarity of query and passage embeddings.

Used as the in-batch teacher of TAS-Balanced (arXiv 2104.06967) and as the teacher of
Distill-VQ (arXiv 2204.00185). Reuses :class:`irdistill.encoding.DenseEncoder`, so passages
of a collection come from the embedding cache the evaluation harness already filled.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from irdistill.data.collection import Collection, Document
from irdistill.data.store import text_rows
from irdistill.encoding import DenseEncoder
from irdistill.teachers.base import (
    TEACHERS,
    PointwiseTeacher,
    ScoreScale,
    check_pairs,
    check_scores,
)

logger = logging.getLogger(__name__)

OUTSIDE_MEMO = 20_000
"""Embeddings of passages outside the collection a :class:`DenseTeacher` keeps (60 MiB at 768-d)."""

ADDED_BLOCK_ROWS = 512
"""Block size of the passages given to :meth:`DenseTeacher.add_passages`, encoded through the
embedding cache block by block: a stopped job loses at most one block (all-mpnet-base-v2 at 384
tokens: about 5-9 min on a 2-core CPU)."""


@TEACHERS.register("dense")
class DenseTeacher(PointwiseTeacher):
    """``s(q, p) = E_q(q) · E_d(p)``, cosine when the model's similarity is cosine.

    Args:
        model: a sentence-transformers bi-encoder (folder, ``$IRDISTILL_MODELS`` name or hub id).
        collection: when given, its whole corpus is encoded once through the cache (at the first
            :meth:`score`) and passages are looked up by text; other passages are encoded on the
            fly.
        batch_size: encoding batch size.
        max_seq_length: truncation length in tokens; ``None`` keeps the model's own.
        backend: ``torch`` (default), ``onnx``, ``openvino``, ``auto`` ... (:mod:`irdistill.backends`).
        show_progress_bar: a progress bar while the collection's corpus is encoded.
    """

    progress_on_setup = True

    def __init__(
        self,
        model: str,
        *,
        collection: Collection | None = None,
        batch_size: int = 64,
        max_seq_length: int | None = None,
        cache: bool = True,
        backend: str = "torch",
        show_progress_bar: bool = False,
    ) -> None:
        self.model_name = model
        self.name = f"dense:{Path(model).name}"
        self.max_seq_length = max_seq_length
        self.encoder = DenseEncoder(
            model,
            batch_size=batch_size,
            max_seq_length=max_seq_length,
            cache=cache,
            backend=backend,
            show_progress_bar=show_progress_bar,
        )
        self._rows: Callable[[Sequence[str]], np.ndarray] | None = None
        self._corpus: np.ndarray | None = None
        self._scale: ScoreScale | None = None
        self._outside: OrderedDict[str, np.ndarray] = OrderedDict()
        self._collection = collection  # its corpus is encoded at the first score: a score job that
        # resumes a complete store never pays for it
        self._added: Mapping[str, Document] | None = None  # add_passages, encoded at the first score too
        self._added_rows: Callable[[Sequence[str]], np.ndarray] | None = None
        self._added_embeddings: np.ndarray | None = None

    def add_passages(self, documents: Mapping[str, Document]) -> None:
        """Passages outside the collection that later calls will score (a cloze run's patched
        passages): encoded at the first :meth:`score`, block by block through the embedding cache
        (keyed by their ids and texts, as a corpus is), so a stopped score job resumes with them
        instead of encoding each again when it meets it. Passages neither in the collection nor
        added are still encoded per call (and kept in memory, ``OUTSIDE_MEMO``)."""
        self._added = documents if len(documents) else None
        self._added_rows = self._added_embeddings = None

    def _corpus_rows(self) -> Callable[[Sequence[str]], np.ndarray] | None:
        if self._collection is not None and self._rows is None:
            self._corpus = self.encoder.encode_corpus(self._collection).embeddings
            self._rows = text_rows(self._collection.corpus)  # passage text -> row, without a dict of the texts
        if self._added is not None and self._added_rows is None:
            logger.info("%s: encoding %d passages outside the collection", self.name, len(self._added))
            self._added_embeddings = self.encoder.encode_corpus(self._added, block_rows=ADDED_BLOCK_ROWS).embeddings
            self._added_rows = text_rows(self._added)
        self.encoder.show_progress_bar = False  # per-call query batches are small: no bar each
        return self._rows

    @property
    def scale(self) -> ScoreScale:  # type: ignore[override]
        if self._scale is None:
            normalized = self.encoder.normalize is True or (
                self.encoder.normalize == "auto" and str(self.encoder.model.similarity_fn_name) == "cosine"
            )
            self._scale = ScoreScale.COSINE if normalized else ScoreScale.DOT
        return self._scale

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"teacher": "dense", "model": self.model_name}
        if self.max_seq_length is not None:  # absent when unset: earlier score stores still resume
            config["max_seq_length"] = self.max_seq_length
        backend = self.encoder.resolved_backend()
        if backend != "torch":
            config["backend"] = backend
        if backend != self.encoder.backend:  # auto-bf16, decided on this machine
            config["backend_requested"] = self.encoder.backend
        check = self.encoder.precision_check
        if check is not None:  # reduced precision: its ranking agreement with fp32 is part of the store's identity
            from irdistill.backends import fingerprint_check

            config["precision_check"] = fingerprint_check(check)  # decide_reduced logged it once
        return config

    def _embed(self, texts: list[str], side: str) -> np.ndarray:
        """Ad hoc batches (a call's queries, passages outside the collection) skip the embedding
        cache: caching them wrote one file and one log line per call, and a score job's
        resumption works by chunk, not by embedding."""
        return self.encoder.embed(texts, side)  # type: ignore[arg-type]

    def _outside_embeddings(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Embeddings of passages outside the collection, kept in memory for later calls (the
        ``OUTSIDE_MEMO`` most recently used): a score job meets the same ones again, e.g. the passages a
        label-free cloze run cut its queries out of, which are candidates of other queries too."""
        found: dict[str, np.ndarray] = {}
        for text in texts:
            if text in self._outside:
                self._outside.move_to_end(text)  # the least recently used goes first
                found[text] = self._outside[text]
        todo = [t for t in texts if t not in found]
        if todo:
            for text, embedding in zip(todo, self._embed(todo, "document"), strict=True):
                found[text] = self._outside[text] = embedding
            while len(self._outside) > OUTSIDE_MEMO:
                self._outside.popitem(last=False)
        return found

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        check_pairs(queries, passages)
        if not queries:
            return np.zeros(0)
        uq = list(dict.fromkeys(queries))
        q_emb = self._embed(uq, "query")
        q_row = {q: i for i, q in enumerate(uq)}
        lookup = self._corpus_rows()
        rows = lookup(passages) if lookup is not None else np.full(len(passages), -1, dtype=np.int64)
        added = np.full(len(passages), -1, dtype=np.int64)
        if self._added_rows is not None and (rows < 0).any():
            away = np.flatnonzero(rows < 0)
            added[away] = self._added_rows([passages[i] for i in away.tolist()])
        missing = list(
            dict.fromkeys(p for p, r, a in zip(passages, rows.tolist(), added.tolist(), strict=True) if r < 0 and a < 0)
        )
        outside = self._outside_embeddings(missing)

        def embedding(passage: str, row: int, added_row: int) -> np.ndarray:
            if row >= 0 and self._corpus is not None:
                return self._corpus[row]
            if added_row >= 0 and self._added_embeddings is not None:
                return self._added_embeddings[added_row]
            return outside[passage]

        p_emb = np.stack([embedding(p, r, a) for p, r, a in zip(passages, rows.tolist(), added.tolist(), strict=True)])
        scores = np.einsum("ij,ij->i", q_emb[[q_row[q] for q in queries]].astype(np.float64), p_emb.astype(np.float64))
        return check_scores(scores, self.name)
