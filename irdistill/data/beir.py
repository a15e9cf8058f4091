"""Readers for the BEIR folder layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

Every malformed line raises :class:`~irdistill.errors.InputError` naming the file and line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from irdistill.data.collection import Collection, Document, Qrels, reconcile_qrels
from irdistill.data.lines import read_lines
from irdistill.data.store import CorpusStore, cached_corpus_store
from irdistill.errors import InputError


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield number, record


def _record_id(path: Path, number: int, record: dict[str, Any], seen: dict[str, int]) -> str:
    raw = record.get("_id")
    if raw is None or str(raw).strip() == "":
        raise InputError(f"{path}:{number}: missing '_id'")
    rid = str(raw)
    if rid in seen:
        raise InputError(f"{path}:{number}: duplicate _id {rid!r} (first on line {seen[rid]})")
    seen[rid] = number
    return rid


def corpus_records(path: str | os.PathLike[str]) -> Iterator[tuple[str, str, str, int]]:
    """``(id, title, text, line)`` of every document of ``corpus.jsonl``, streamed and checked (ids
    present, not both title and text empty); duplicate ids are left to the consumer."""
    path = Path(path)
    for number, record in _jsonl(path):
        raw = record.get("_id")
        if raw is None or str(raw).strip() == "":
            raise InputError(f"{path}:{number}: missing '_id'")
        doc_id, title, text = str(raw), str(record.get("title") or ""), str(record.get("text") or "")
        if not (title.strip() or text.strip()):
            raise InputError(f"{path}:{number}: document {doc_id!r} has an empty title and text")
        yield doc_id, title, text, number


def read_corpus(path: str | os.PathLike[str]) -> dict[str, Document]:
    """Read ``corpus.jsonl`` (``{"_id", "title", "text"}`` per line) into a dict (small corpora;
    :func:`irdistill.data.load_collection` opens a memory-mapped store instead)."""
    path = Path(path)
    corpus: dict[str, Document] = {}
    seen: dict[str, int] = {}
    for number, record in _jsonl(path):
        doc_id = _record_id(path, number, record, seen)
        title = str(record.get("title") or "")
        text = str(record.get("text") or "")
        if not (title.strip() or text.strip()):
            raise InputError(f"{path}:{number}: document {doc_id!r} has an empty title and text")
        corpus[doc_id] = Document(text=text, title=title)
    if not corpus:
        raise InputError(f"{path}: no documents")
    return corpus


def read_queries(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read ``queries.jsonl`` (``{"_id", "text"}`` per line)."""
    path = Path(path)
    queries: dict[str, str] = {}
    seen: dict[str, int] = {}
    for number, record in _jsonl(path):
        qid = _record_id(path, number, record, seen)
        text = str(record.get("text") or "")
        if not text.strip():
            raise InputError(f"{path}:{number}: query {qid!r} has an empty text")
        queries[qid] = text
    if not queries:
        raise InputError(f"{path}: no queries")
    return queries


def read_beir_qrels(
    path: str | os.PathLike[str],
    queries: dict[str, str] | None = None,
    corpus: Mapping[str, Document] | None = None,
) -> Qrels:
    """Read ``qrels/<split>.tsv`` (``query-id corpus-id score``, optional header line).

    When ``queries`` and ``corpus`` are given, the judgements are reconciled with them
    (:func:`~irdistill.data.collection.reconcile_qrels`: ids they lack are a warning, and
    an error only when almost none of the judged ids exist).
    """
    path = Path(path)
    qrels: Qrels = {}
    for number, line in read_lines(path):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t") if "\t" in line else line.split()
        if number == 1 and parts[0].strip().lower() in {"query-id", "query_id", "qid"}:
            continue
        if len(parts) != 3:
            raise InputError(
                f"{path}:{number}: expected 3 tab-separated fields 'query-id corpus-id score', got {len(parts)}"
            )
        qid, doc_id, score = (p.strip() for p in parts)
        try:
            rel = int(float(score))
        except (ValueError, OverflowError):  # "high", "nan", "inf"
            raise InputError(f"{path}:{number}: score {score!r} is not a number") from None
        qrels.setdefault(qid, {})[doc_id] = rel
    if not qrels:
        raise InputError(f"{path}: no judgements")
    if queries is not None and corpus is not None:
        qrels = reconcile_qrels(qrels, queries, corpus, str(path))
    return qrels


def available_splits(folder: str | os.PathLike[str]) -> list[str]:
    qrels_dir = Path(folder) / "qrels"
    return sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []


def beir_corpus_store(folder: str | os.PathLike[str], name: str = "") -> CorpusStore:
    """The memory-mapped store of a BEIR folder's ``corpus.jsonl`` (built once, cached)."""
    source = Path(folder) / "corpus.jsonl"
    return cached_corpus_store(source, corpus_records(source), name=name or Path(folder).name)


def load_beir_folder(folder: str | os.PathLike[str], split: str = "test", name: str = "") -> Collection:
    """Load a BEIR-layout folder; queries are restricted to those judged in ``split``."""
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split.replace('/', '_')}.tsv"
    if not qrels_path.is_file():
        known = available_splits(folder)
        raise InputError(f"{qrels_path}: no such file; splits in {folder}: {', '.join(known) or 'none'}")
    corpus = beir_corpus_store(folder, name)
    all_queries = read_queries(folder / "queries.jsonl")
    qrels = read_beir_qrels(qrels_path, all_queries, corpus)
    queries = {qid: text for qid, text in all_queries.items() if qid in qrels}
    return Collection(corpus, queries, qrels, name=name or folder.name, split=split)
