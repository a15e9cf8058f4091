"""MS MARCO-style TSV collections: ``collection.tsv`` (``pid<TAB>text``),
``queries.<split>.tsv`` (``qid<TAB>text``) and ``qrels.<split>.tsv`` (TREC qrels, 4 fields, or
3 tab-separated fields as BEIR writes them)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from irdistill.data.collection import Collection, Document, Qrels, reconcile_qrels
from irdistill.data.lines import read_lines
from irdistill.data.store import cached_corpus_store
from irdistill.errors import InputError


def _read_id_text_tsv(path: Path, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for number, line in read_lines(path):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 2:
            raise InputError(f"{path}:{number}: expected 'id<TAB>text', got no tab")
        rid, text = parts[0].strip(), "\t".join(parts[1:]).strip()
        if rid in seen:
            raise InputError(f"{path}:{number}: duplicate id {rid!r} (first on line {seen[rid]})")
        if not text:
            raise InputError(f"{path}:{number}: {what} {rid!r} has an empty text")
        seen[rid] = number
        out[rid] = text
    if not out:
        raise InputError(f"{path}: no {what}s")
    return out


def passage_records(path: Path) -> Iterator[tuple[str, str, str, int]]:
    """``(pid, "", text, line)`` of every line of ``collection.tsv``, streamed and checked."""
    for number, line in read_lines(path):
        if not line.strip():
            continue
        rid, tab, text = line.rstrip("\n").partition("\t")
        if not tab:
            raise InputError(f"{path}:{number}: expected 'id<TAB>text', got no tab")
        rid, text = rid.strip(), text.strip()
        if not text:
            raise InputError(f"{path}:{number}: passage {rid!r} has an empty text")
        yield rid, "", text, number


def _read_qrels(path: Path, queries: dict[str, str], corpus: Mapping[str, Document]) -> Qrels:
    qrels: Qrels = {}
    for number, line in read_lines(path):
        parts = line.split()
        if not parts or (number == 1 and parts[0].lower() in {"query-id", "qid"}):
            continue
        if len(parts) == 4:
            qid, _, doc_id, rel = parts
        elif len(parts) == 3:
            qid, doc_id, rel = parts
        else:
            raise InputError(f"{path}:{number}: expected 'qid 0 pid relevance' or 'qid pid relevance'")
        try:
            qrels.setdefault(qid, {})[doc_id] = int(rel)
        except ValueError:
            raise InputError(f"{path}:{number}: relevance {rel!r} is not an integer") from None
    if not qrels:
        raise InputError(f"{path}: no judgements")
    return reconcile_qrels(qrels, queries, corpus, str(path))


def _pick(folder: Path, stem: str, split: str) -> Path:
    split = split.replace("/", ".")  # dev/small -> queries.dev.small.tsv, as MS MARCO names it
    for name in (f"{stem}.{split}.tsv", f"{stem}.tsv", f"{stem}.{split}.txt"):
        if (folder / name).is_file():
            return folder / name
    return folder / f"{stem}.{split}.tsv"


def load_msmarco_folder(folder: str | os.PathLike[str], split: str = "dev", name: str = "") -> Collection:
    folder = Path(folder)
    corpus = cached_corpus_store(
        folder / "collection.tsv", passage_records(folder / "collection.tsv"), name=name or folder.name
    )
    all_queries = _read_id_text_tsv(_pick(folder, "queries", split), "query")
    qrels = _read_qrels(_pick(folder, "qrels", split), all_queries, corpus)
    queries = {qid: text for qid, text in all_queries.items() if qid in qrels}
    return Collection(corpus, queries, qrels, name=name or folder.name, split=split)
