"""The in-memory collection every stage reads: corpus, queries and qrels of one split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from irdistill.errors import InputError


@dataclass(frozen=True, slots=True)
class Document:
    """One passage. ``title`` may be empty."""

    text: str
    title: str = ""

    def full_text(self) -> str:
        """Title and text joined as BEIR / MTEB do for bi-encoders: ``"title text"``."""
        return f"{self.title} {self.text}".strip() if self.title else self.text.strip()


Qrels = dict[str, dict[str, int]]
"""``qid -> {doc_id: relevance}``."""

Run = dict[str, dict[str, float]]
"""``qid -> {doc_id: score}``."""


@dataclass
class Collection:
    """Corpus, queries and relevance judgements of one split.

    ``queries`` holds the queries of the split (those with judgements, as BEIR does), in the
    order of the source file. Build one with :func:`irdistill.data.load_collection`.
    """

    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: Qrels
    name: str = ""
    split: str = ""
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.corpus:
            raise InputError(f"collection {self.name or '?'} has an empty corpus")

    @property
    def doc_ids(self) -> list[str]:
        return list(self.corpus)

    @property
    def query_ids(self) -> list[str]:
        return list(self.queries)

    def doc_texts(self) -> list[str]:
        """Texts to encode, in ``doc_ids`` order (title and text joined)."""
        return [doc.full_text() for doc in self.corpus.values()]

    def query_texts(self) -> list[str]:
        return list(self.queries.values())

    def corpus_fingerprint(self) -> str:
        """A SHA-256 over ids and texts: the corpus part of an embedding-cache key."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for doc_id, doc in self.corpus.items():
                digest.update(doc_id.encode())
                digest.update(b"\x00")
                digest.update(doc.full_text().encode())
                digest.update(b"\x01")
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def subset(self, query_ids: list[str] | None = None, doc_ids: list[str] | None = None) -> Collection:
        """A smaller collection (tests, quick runs); qrels are filtered to what is kept."""
        qids = query_ids if query_ids is not None else self.query_ids
        dids = doc_ids if doc_ids is not None else self.doc_ids
        for qid in qids:
            if qid not in self.queries:
                raise InputError(f"query id {qid!r} is not in collection {self.name}")
        for did in dids:
            if did not in self.corpus:
                raise InputError(f"document id {did!r} is not in collection {self.name}")
        keep_docs = set(dids)
        qrels = {
            qid: {d: r for d, r in self.qrels.get(qid, {}).items() if d in keep_docs}
            for qid in qids
        }
        return Collection(
            corpus={d: self.corpus[d] for d in dids},
            queries={q: self.queries[q] for q in qids},
            qrels={q: j for q, j in qrels.items() if j},
            name=self.name,
            split=self.split,
        )

    def __repr__(self) -> str:
        return (
            f"Collection(name={self.name!r}, split={self.split!r}, docs={len(self.corpus)}, "
            f"queries={len(self.queries)}, judgements={sum(len(j) for j in self.qrels.values())})"
        )
