"""The in-memory collection every stage reads: corpus, queries and qrels of one split."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from irdistill.errors import InputError

logger = logging.getLogger(__name__)


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

MIN_MATCHED_SHARE = 0.1
"""Below this share of judged ids found in the corpus (or queries file), the judgements are
taken to use other ids altogether (a wrong column, another collection) and are refused."""


def add_to_fingerprint(digest: Any, text_id: str, text: str) -> None:
    """Feed one ``(id, text)`` into a SHA-256 fingerprint of texts: the one formula behind
    :meth:`Collection.corpus_fingerprint`, the corpus store's fingerprint and the embedding
    cache's :func:`irdistill.encoding.texts_fingerprint`, so their keys agree."""
    digest.update(text_id.encode())
    digest.update(b"\x00")
    digest.update(text.encode())
    digest.update(b"\x01")


def missing_ids(corpus: Mapping[str, Document], ids: Iterable[str]) -> list[str]:
    """The ids of ``ids`` that ``corpus`` lacks (one vectorised lookup for a store)."""
    wanted = list(ids)
    rows_of = getattr(corpus, "rows_of", None)
    if rows_of is not None:
        rows = rows_of(wanted)
        return [i for i, r in zip(wanted, rows.tolist(), strict=True) if r < 0]
    return [i for i in wanted if i not in corpus]


def reconcile_qrels(qrels: Qrels, queries: dict[str, str], corpus: Mapping[str, Document], source: str) -> Qrels:
    """Judgements checked against the corpus and queries they come with.

    Real collections judge documents their distributed text lacks (classic test collections
    do); trec_eval and ranx count those as relevant and never retrieved, and so does irdistill:
    they are kept, with one warning giving their count and a few ids. Judged queries missing
    from the queries file cannot be run: they are dropped, with one warning. Only when (almost)
    none of the judged ids exist (fewer than :data:`MIN_MATCHED_SHARE`) is this an error, since
    then the ids clearly do not match (a wrong id column, another collection's files).
    """
    judged_docs = {d for docs in qrels.values() for d in docs}
    missing_docs = sorted(missing_ids(corpus, judged_docs))
    missing_queries = [q for q in qrels if q not in queries]
    for what, missing, total, where in (
        ("document", missing_docs, len(judged_docs), "the corpus"),
        ("query", missing_queries, len(qrels), "the queries file"),
    ):
        if not missing:
            continue
        examples = ", ".join(repr(x) for x in missing[:5]) + (", ..." if len(missing) > 5 else "")
        if total - len(missing) < MIN_MATCHED_SHARE * total:
            raise InputError(
                f"{source}: {len(missing)} of {total} judged {what} ids are not in "
                f"{where} ({examples}); the ids do not match: check the id column "
                "and that the files belong together"
            )
        if what == "document":
            logger.warning(
                "%s: %d of %d judged document ids are not in %s (%s); they count as "
                "relevant and never retrieved, as in trec_eval and ranx",
                source,
                len(missing),
                total,
                where,
                examples,
            )
        else:
            logger.warning(
                "%s: %d of %d judged query ids are not in %s (%s); those queries are left out",
                source,
                len(missing),
                total,
                where,
                examples,
            )
    return {q: docs for q, docs in qrels.items() if q in queries}


class SealedQrels(Mapping[str, dict[str, int]]):
    """The judgements of a collection that must not be read: any access raises.

    The label-free recipes (``generate:`` in ``irdistill run``) hand their stages before the
    evaluation a collection whose qrels are sealed, so a stage that would read a judgement fails
    loudly instead of quietly using labels.
    """

    def __init__(self, where: str) -> None:
        self.where = where

    def _refuse(self, *_: Any) -> Any:
        raise InputError(
            f"{self.where}: a stage before the evaluation read the judgements of a label-free run; "
            "only the evaluation may read them"
        )

    __getitem__ = __iter__ = __len__ = __contains__ = get = keys = values = items = _refuse


def without_judgements(collection: Collection, where: str = "") -> Collection:
    """``collection``'s corpus alone: no queries, and sealed judgements (:class:`SealedQrels`)."""
    return Collection(
        corpus=collection.corpus,
        queries={},
        qrels=SealedQrels(where or f"collection {collection.label}"),  # type: ignore[arg-type]
        name=collection.name,
        split=collection.split,
        _fingerprint=collection._fingerprint,
    )


Run = dict[str, dict[str, float]]
"""``qid -> {doc_id: score}``."""


@dataclass
class Collection:
    """Corpus, queries and relevance judgements of one split.

    ``queries`` holds the queries of the split (those with judgements, as BEIR does), in the
    order of the source file. Build one with :func:`irdistill.data.load_collection`.
    """

    corpus: Mapping[str, Document]
    """A dict, or a memory-mapped :class:`~irdistill.data.store.CorpusStore` (what
    :func:`~irdistill.data.load_collection` gives)."""
    queries: dict[str, str]
    qrels: Qrels
    name: str = ""
    split: str = ""
    _fingerprint: str | None = field(default=None, repr=False, compare=False)
    _doc_ids: list[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.corpus:
            raise InputError(f"collection {self.name or '?'} has an empty corpus")

    @property
    def doc_ids(self) -> list[str]:
        if isinstance(self.corpus, dict):
            return list(self.corpus)
        if self._doc_ids is None:  # a store: read its id column once
            self._doc_ids = list(self.corpus)
        return self._doc_ids

    @property
    def query_ids(self) -> list[str]:
        return list(self.queries)

    def positives(self, qid: str) -> list[str]:
        """Judged-relevant documents of ``qid`` (relevance > 0) that the corpus holds, sorted.

        Judgements of documents the corpus lacks count for evaluation (relevant, never
        retrieved) but give no text to train or score with, so they are left out here.
        """
        return sorted(d for d, r in self.qrels.get(qid, {}).items() if r > 0 and d in self.corpus)

    def doc_texts(self) -> list[str]:
        """Texts to encode, in ``doc_ids`` order (title and text joined)."""
        full_texts = getattr(self.corpus, "full_texts", None)
        return full_texts() if full_texts is not None else [doc.full_text() for doc in self.corpus.values()]

    def query_texts(self) -> list[str]:
        return list(self.queries.values())

    def corpus_fingerprint(self) -> str:
        """A SHA-256 over ids and texts: the corpus part of an embedding-cache key."""
        if self._fingerprint is None and isinstance(getattr(self.corpus, "fingerprint", None), str):
            self._fingerprint = self.corpus.fingerprint  # type: ignore[attr-defined]  # computed by the store
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for doc_id, doc in self.corpus.items():
                add_to_fingerprint(digest, doc_id, doc.full_text())
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
        qrels = {qid: {d: r for d, r in self.qrels.get(qid, {}).items() if d in keep_docs} for qid in qids}
        return Collection(
            corpus={d: self.corpus[d] for d in dids},
            queries={q: self.queries[q] for q in qids},
            qrels={q: j for q, j in qrels.items() if j},
            name=self.name,
            split=self.split,
        )

    def with_queries(self, query_ids: list[str], split: str) -> Collection:
        """The same corpus (shared, not copied: a memory-mapped store stays one) with only
        ``query_ids`` and their judgements, named ``split``."""
        keep = set(query_ids)
        return Collection(
            corpus=self.corpus,
            queries={q: self.queries[q] for q in query_ids},
            qrels={q: j for q, j in self.qrels.items() if q in keep},
            name=self.name,
            split=split,
            _fingerprint=self._fingerprint,
            _doc_ids=self._doc_ids,
        )

    @property
    def label(self) -> str:
        """``name/split`` (``?`` for an unnamed collection), for messages and manifests."""
        label = self.name or "?"
        return f"{label}/{self.split}" if self.split else label

    def __repr__(self) -> str:
        judged = "sealed" if isinstance(self.qrels, SealedQrels) else sum(len(j) for j in self.qrels.values())
        return (
            f"Collection(name={self.name!r}, split={self.split!r}, docs={len(self.corpus)}, "
            f"queries={len(self.queries)}, judgements={judged})"
        )
