"""Collections (corpus, queries, qrels) from ir_datasets ids, BEIR folders or MS MARCO TSV
folders; TREC run and qrels files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from irdistill.data.beir import load_beir_folder, read_beir_qrels, read_corpus, read_queries
from irdistill.data.collection import Collection, Document, Qrels, Run
from irdistill.data.holdout import split_part, take_part
from irdistill.data.msmarco import load_msmarco_folder
from irdistill.data.spec import parse_dataset_spec
from irdistill.data.trec import read_run, read_trec_qrels, write_run, write_trec_qrels
from irdistill.errors import InputError
from irdistill.paths import local_dataset_dir

logger = logging.getLogger(__name__)

__all__ = [
    "Collection",
    "Document",
    "Qrels",
    "Run",
    "judgements_loaded",
    "load_collection",
    "load_corpus",
    "parse_dataset_spec",
    "load_beir_folder",
    "load_msmarco_folder",
    "read_corpus",
    "read_queries",
    "read_beir_qrels",
    "read_run",
    "write_run",
    "read_trec_qrels",
    "write_trec_qrels",
]


def _load_folder(folder: Path, split: str | None, name: str) -> Collection:
    if (folder / "corpus.jsonl").is_file():
        return load_beir_folder(folder, split or "test", name=name)
    if (folder / "collection.tsv").is_file():
        return load_msmarco_folder(folder, split or "dev", name=name)
    raise InputError(
        f"{folder}: not a data set folder; expected corpus.jsonl + queries.jsonl + qrels/<split>.tsv "
        "(BEIR) or collection.tsv + queries.<split>.tsv + qrels.<split>.tsv (MS MARCO)"
    )


_JUDGEMENTS_LOADED = 0


def judgements_loaded() -> int:
    """Judgements (query, document) that :func:`load_collection` has handed out in this process: the
    ledger behind a label-free run's ``labels_used`` (its count before the evaluation stage)."""
    return _JUDGEMENTS_LOADED


def _count(collection: Collection) -> Collection:
    global _JUDGEMENTS_LOADED
    _JUDGEMENTS_LOADED += sum(len(docs) for docs in collection.qrels.values())
    return collection


def load_corpus(spec: str | os.PathLike[str], split: str | None = None, *, where: str = "") -> Collection:
    """The corpus of a data set alone: no queries, judgements sealed
    (:class:`~irdistill.data.collection.SealedQrels`). A BEIR folder's judgements are not read at
    all; other sources are loaded whole and their judgements dropped without being counted or
    handed out."""
    from irdistill.data.collection import without_judgements

    text = str(spec)
    path = Path(text).expanduser()
    folder = path if path.is_dir() else None
    if folder is None and not path.exists():
        base, _ = parse_dataset_spec(text, split)
        folder = local_dataset_dir(base)
    if folder is not None and (folder / "corpus.jsonl").is_file():
        from irdistill.data.beir import beir_corpus_store

        name = folder.name if path.is_dir() else parse_dataset_spec(text, split)[0]
        whole = Collection(beir_corpus_store(folder, name), {}, {}, name=name, split=split or "")
    else:
        whole = _load(text, split)
    return without_judgements(whole, where=where)


def _spec_split(text: str) -> str | None:
    """The split a name such as ``beir/scifact/train:dev`` ends in (a folder path has none)."""
    if Path(text).expanduser().exists():
        return None
    return parse_dataset_spec(text)[1]


def load_collection(spec: str | os.PathLike[str], split: str | None = None) -> Collection:
    """Load corpus, queries and qrels of one split.

    Args:
        spec: a folder (BEIR layout or MS MARCO TSV layout), a name such as ``beir/scifact``
            or ``beir/scifact/test`` (looked up as ``$IRDISTILL_DATA/scifact`` first), or any
            ir_datasets id.
        split: the split (``test``, ``train``, ``dev`` ...); overrides one named in ``spec``.
            Defaults to ``test`` for BEIR folders and ``dev`` for MS MARCO folders. A split
            ending in ``:dev`` or ``:fit`` (``train:dev``) is that part of the fixed dev split
            of :mod:`irdistill.data.holdout`.

    Example:
        >>> collection = load_collection("beir/scifact", split="test")  # doctest: +SKIP
        >>> len(collection.queries), len(collection.corpus)  # doctest: +SKIP
        (300, 5183)
    """
    return _count(_load(spec, split))


def _load(spec: str | os.PathLike[str], split: str | None = None) -> Collection:
    text = str(spec)
    base_split, part = split_part(split if split is not None else _spec_split(text))
    if part is not None:
        whole = _load(text if split is not None else text.rsplit(":", 1)[0], base_split)
        return take_part(whole, part)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{path}: expected a data set folder, got a file")
        return _load_folder(path, split, name=path.name)
    base, split = parse_dataset_spec(text, split)
    local = local_dataset_dir(base)
    if local is not None:
        logger.info("data set %s found locally at %s", base, local)
        return _load_folder(local, split, name=base)
    from irdistill.data.irds import load_ir_datasets

    return load_ir_datasets(f"{base}/{split}" if split else base)
