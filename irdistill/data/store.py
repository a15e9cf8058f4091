"""A corpus on disk: one memory-mapped Arrow file with integer row ids, opened in constant memory.

MS MARCO passage holds 8.8M passages (~3 GB of text); a ``dict[str, Document]`` of it takes
~5.5 GiB per process, and every torchrun rank would hold its own. :class:`CorpusStore` keeps
the corpus in an Arrow IPC file (columns ``id``, ``title``, ``text``, written in record batches
of :data:`BATCH_ROWS` rows) that is memory-mapped, never read into the heap: every process on
a machine shares the page cache's one copy, and a text is fetched by row when a batch needs it.

Ids map to rows through a sorted array of 64-bit keys (``keys.npy``, with the row of each key
in ``rows.npy``, both memory-mapped): the integer itself when every id is a canonical decimal
integer (MS MARCO's), else the first 8 bytes of the id's BLAKE2b digest; a lookup is a binary
search, then a check of the id text (so a hash collision costs a comparison, never a wrong
row). 8.8M ids take 106 MB of keys and rows, against ~1 GiB for a Python dict of them.

:class:`CorpusStore` is a ``Mapping[str, Document]``, so code written for the dict works
unchanged; code that walks the whole corpus should use :meth:`CorpusStore.texts` /
:meth:`CorpusStore.blocks` (by row range) and :meth:`CorpusStore.rows_of` (many ids at once).

:func:`build_corpus_store` streams ``(id, title, text)`` records into a store in bounded memory
and computes, on the way, the same SHA-256 corpus fingerprint that
:meth:`irdistill.data.Collection.corpus_fingerprint` gives for the dict, so embedding caches
keyed by it stay valid. :func:`cached_corpus_store` builds a store once per source file (keyed
by its path, size and modification time) under ``$IRDISTILL_CACHE/corpora``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import shutil
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from irdistill.data.collection import Document, add_to_fingerprint
from irdistill.errors import InputError

logger = logging.getLogger(__name__)

__all__ = [
    "BATCH_ROWS",
    "STORE_VERSION",
    "CorpusStore",
    "DictCorpusRows",
    "build_corpus_store",
    "cached_corpus_store",
    "corpus_rows",
    "store_folder",
    "text_rows",
]

BATCH_ROWS = 65_536
"""Rows per Arrow record batch: row ``r`` lies in batch ``r // BATCH_ROWS``."""

STORE_VERSION = 1
SCHEMA = pa.schema([("id", pa.string()), ("title", pa.string()), ("text", pa.string())])
_INT_ID = r"^(0|[1-9][0-9]{0,17})$"
_NO_KEY = np.uint64(2**64 - 1)  # the key of an id that cannot be in an integer-keyed store


def _random_access_map(path: Path) -> pa.Buffer:
    """``path`` memory-mapped read-only and advised for random access. The map serves the record
    batches' ids and value offsets; texts are read with ``pread`` instead (through the map, 10,000
    random rows of an 880k-passage store put 400 MB of text pages into resident memory)."""
    with path.open("rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(mapped, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        mapped.madvise(mmap.MADV_RANDOM)
    return pa.py_buffer(mapped)


def _offsets(column: pa.Array) -> np.ndarray:
    """The int32 value offsets of a string column, as a view of its buffer."""
    return np.frombuffer(column.buffers()[1], dtype=np.int32, count=len(column) + 1, offset=column.offset * 4)


def _normalised(text: str) -> str:
    """``text`` with its white space runs as single spaces: how texts are matched."""
    return " ".join(text.split())


def _find(keys: np.ndarray, rows: np.ndarray, wanted: np.ndarray, same: Callable[[int, int], bool]) -> np.ndarray:
    """The row of each of ``wanted`` (hash keys) in the sorted ``keys`` (with their ``rows``), or
    -1: among equal keys, the first row for which ``same(position in wanted, row)`` holds."""
    at = np.searchsorted(keys, wanted)
    out = np.full(len(wanted), -1, dtype=np.int64)
    for i, j in enumerate(at.tolist()):
        while j < len(keys) and keys[j] == wanted[i]:
            if same(i, int(rows[j])):
                out[i] = int(rows[j])
                break
            j += 1
    return out


def _hash_key(doc_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "little")


def _keys(ids: pa.Array, integer: bool) -> np.ndarray:
    """The uint64 keys of ``ids`` (an Arrow string array) in the store's key scheme."""
    if not integer:
        return np.fromiter((_hash_key(i) for i in ids.to_pylist()), dtype=np.uint64, count=len(ids))
    canonical = pc.match_substring_regex(ids, _INT_ID).fill_null(False)
    values = pc.cast(pc.if_else(canonical, ids, "0"), pa.uint64()).to_numpy(zero_copy_only=False)
    return np.where(canonical.to_numpy(zero_copy_only=False), values, _NO_KEY).astype(np.uint64)


class CorpusStore(Mapping[str, Document]):
    """A memory-mapped corpus: ``store[doc_id] -> Document``, rows ``0 .. len(store) - 1``.

    Args:
        folder: a folder :func:`build_corpus_store` wrote.

    Example:
        >>> source = Path("data/msmarco/collection.tsv")  # doctest: +SKIP
        >>> store = cached_corpus_store(source, passage_records(source))  # doctest: +SKIP
        >>> store["7"].text, store.row("7"), store.texts([0, 5])  # doctest: +SKIP
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise InputError(f"{self.folder}: not a corpus store (no meta.json)")
        meta = json.loads(meta_path.read_text())
        if meta.get("version") != STORE_VERSION:
            raise InputError(f"{self.folder}: corpus store version {meta.get('version')}, expected {STORE_VERSION}")
        self.meta = meta
        self.fingerprint: str = meta["fingerprint"]
        self._integer = bool(meta["integer_ids"])
        path = self.folder / "corpus.arrow"
        mapped = _random_access_map(path)
        reader = pa.ipc.open_file(pa.BufferReader(mapped))
        self._batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        # per column and batch: the value offsets (a view of the map) and where the values start
        # in the file; a cell is then one pread of its bytes, so fetching texts by row maps no
        # text pages into this process (the page cache still holds one copy for the machine)
        self._offsets = [[_offsets(b.column(c)) for b in self._batches] for c in range(3)]
        self._starts = [[b.column(c).buffers()[2].address - mapped.address for b in self._batches] for c in range(3)]
        self._fd = os.open(path, os.O_RDONLY)
        self._len = int(meta["count"])
        self._keys = np.load(self.folder / "keys.npy", mmap_mode="r")
        self._rows = np.load(self.folder / "rows.npy", mmap_mode="r")

    # -- Mapping -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[str]:
        for batch in self._batches:  # the id column only: pages of ids, never of texts
            yield from batch.column(0).to_pylist()

    def __getitem__(self, doc_id: str) -> Document:
        row = self.row(doc_id)
        if row < 0:
            raise KeyError(doc_id)
        return self.document(row)

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and self.row(doc_id) >= 0

    def __getstate__(self) -> dict[str, str]:  # DataLoader workers and spawned ranks re-open the map
        return {"folder": str(self.folder)}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.__init__(state["folder"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"CorpusStore({str(self.folder)!r}, docs={self._len})"

    # -- rows --------------------------------------------------------------------------------

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        # os.close bound at definition: at interpreter exit the module's globals may already be None
        fd = getattr(self, "_fd", None)
        if fd is not None:
            _close(fd)

    def _cell(self, row: int, column: int) -> str:
        batch, i = divmod(row, BATCH_ROWS)
        offsets = self._offsets[column][batch]
        start, end = int(offsets[i]), int(offsets[i + 1])
        if start == end:
            return ""
        return os.pread(self._fd, end - start, self._starts[column][batch] + start).decode("utf-8")

    def doc_id(self, row: int) -> str:
        return self._cell(row, 0)

    def document(self, row: int) -> Document:
        if not 0 <= row < self._len:
            raise IndexError(f"row {row} is outside the corpus of {self._len} documents")
        return Document(text=self._cell(row, 2), title=self._cell(row, 1))

    def row(self, doc_id: str) -> int:
        """The row of ``doc_id``, or -1 when the corpus lacks it."""
        return int(self.rows_of([doc_id])[0])

    def rows_of(self, doc_ids: Iterable[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The rows (int64) of many ids at once, -1 for ids the corpus lacks."""
        if isinstance(doc_ids, pa.ChunkedArray):
            doc_ids = doc_ids.combine_chunks()
        ids = doc_ids if isinstance(doc_ids, pa.Array) else pa.array(list(doc_ids), type=pa.string())
        if len(ids) == 0:
            return np.empty(0, dtype=np.int64)
        keys = _keys(ids.cast(pa.string()), self._integer)
        if self._integer:  # the key is the id itself and ids are unique: no text to compare
            at = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
            return np.where(self._keys[at] == keys, self._rows[at], -1).astype(np.int64)
        wanted = ids.to_pylist()
        return _find(self._keys, self._rows, keys, lambda i, row: self.doc_id(row) == wanted[i])

    def rows_of_texts(self, texts: Iterable[str]) -> np.ndarray:
        """The rows of documents by full text (whitespace-normalised), -1 where none matches; the
        first row for a text the corpus holds twice. The text index (16 bytes per document) is
        built on first use and kept in the store's folder."""
        keys, rows = self._text_index()
        wanted = [_normalised(t) for t in texts]
        hashed = np.fromiter((_hash_key(t) for t in wanted), dtype=np.uint64, count=len(wanted))
        return _find(keys, rows, hashed, lambda i, row: _normalised(self.full_text(row)) == wanted[i])

    def _text_index(self) -> tuple[np.ndarray, np.ndarray]:
        keys_path, rows_path = self.folder / "text_keys.npy", self.folder / "text_rows.npy"
        if not rows_path.is_file():
            logger.info("indexing the texts of %s (once)", self.folder)
            keys = np.fromiter(
                (_hash_key(_normalised(t)) for _, _, block in self.blocks() for t in block),
                dtype=np.uint64,
                count=self._len,
            )
            order = np.argsort(keys, kind="stable")
            from irdistill.paths import atomic_path

            with atomic_path(keys_path) as tmp, tmp.open("wb") as handle:
                np.save(handle, keys[order])
            with atomic_path(rows_path) as tmp, tmp.open("wb") as handle:
                np.save(handle, order.astype(np.int64))
        return np.load(keys_path, mmap_mode="r"), np.load(rows_path, mmap_mode="r")

    def full_text(self, row: int) -> str:
        return self.document(row).full_text()

    def texts(self, rows: Iterable[int]) -> list[str]:
        """``Document.full_text()`` of each row (title and text joined), in the order given."""
        return [self.full_text(int(r)) for r in rows]

    def blocks(self, block_rows: int = BATCH_ROWS) -> Iterator[tuple[int, list[str], list[str]]]:
        """``(first row, ids, full texts)`` of consecutive blocks of up to ``block_rows`` rows."""
        start, ids, texts = 0, [], []
        path = str(self.folder / "corpus.arrow")
        with pa.OSFile(path) as handle:  # read batch by batch into the heap, not through the map
            reader = pa.ipc.open_file(handle)
            for b in range(reader.num_record_batches):
                batch = reader.get_batch(b)
                titles = batch.column(1).to_pylist()
                columns = (batch.column(0).to_pylist(), titles, batch.column(2).to_pylist())
                for doc_id, title, text in zip(*columns, strict=True):
                    ids.append(doc_id)
                    texts.append(Document(text=text, title=title).full_text())
                    if len(ids) == block_rows:
                        yield start, ids, texts
                        start, ids, texts = start + block_rows, [], []
        if ids:
            yield start, ids, texts

    def full_texts(self) -> list[str]:
        """Every full text in row order (for corpora that fit in memory)."""
        return [t for _, _, block in self.blocks() for t in block]


class DictCorpusRows:
    """Rows over a dict corpus, with the interface of :class:`CorpusStore` that training uses."""

    def __init__(self, corpus: Mapping[str, Document]) -> None:
        self.corpus = corpus
        self.ids = list(corpus)
        self._row = {doc_id: i for i, doc_id in enumerate(self.ids)}

    def rows_of(self, doc_ids: Iterable[str]) -> np.ndarray:
        ids = list(doc_ids)
        return np.fromiter((self._row.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))

    def doc_id(self, row: int) -> str:
        return self.ids[row]

    def texts(self, rows: Iterable[int]) -> list[str]:
        return [self.corpus[self.ids[int(r)]].full_text() for r in rows]


def corpus_rows(corpus: Mapping[str, Document]) -> Any:
    """``corpus`` addressed by row: the store itself (or a corpus with its row interface,
    ``rows_of``, ``doc_id`` and ``texts``, such as a :class:`~irdistill.generation.store.ClozeCorpus`),
    or a row table over a dict."""
    if isinstance(corpus, CorpusStore) or all(hasattr(corpus, name) for name in ("rows_of", "doc_id", "texts")):
        return corpus
    return DictCorpusRows(corpus)


def text_rows(corpus: Mapping[str, Document]) -> Callable[[Sequence[str]], np.ndarray]:
    """A lookup ``full texts -> rows`` (-1 where none matches; white space normalised; the first
    row of a repeated text) over ``corpus``: the store's text index (16 bytes a document, on
    disk) for a store; for a dict corpus the same index in memory (the texts' hash keys, sorted,
    compared with the documents' own texts), not a second copy of every text."""
    if isinstance(corpus, CorpusStore):
        return corpus.rows_of_texts
    docs = list(corpus.values())
    keys = np.fromiter((_hash_key(_normalised(d.full_text())) for d in docs), dtype=np.uint64, count=len(docs))
    order = np.argsort(keys, kind="stable")  # equal keys keep their rows in order: the first row is found first
    keys, rows = keys[order], order.astype(np.int64)

    def lookup(texts: Sequence[str]) -> np.ndarray:
        wanted = [_normalised(t) for t in texts]
        hashed = np.fromiter((_hash_key(t) for t in wanted), dtype=np.uint64, count=len(wanted))
        return _find(keys, rows, hashed, lambda i, row: _normalised(docs[row].full_text()) == wanted[i])

    return lookup


def build_corpus_store(
    records: Iterable[tuple[str, str, str] | tuple[str, str, str, int]],
    folder: str | os.PathLike[str],
    source: str = "corpus",
    *,
    replace: bool = True,
) -> CorpusStore:
    """Write ``(id, title, text)`` records into a new store at ``folder`` (atomically).

    ``replace=False`` is for caches keyed by the source: when another process (a torchrun rank)
    finished the same store first, its store is kept and this one discarded.

    A record may carry a fourth field, its line in ``source``, for error messages. Memory is
    bounded by one record batch plus the keys and lines (24 bytes per document). Duplicate ids
    and documents with neither title nor text raise :class:`InputError` naming ``source``.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        digest = hashlib.sha256()
        count = 0
        lines = array("q")
        canonical: list[bool] = []  # per batch: are all its ids canonical decimal integers?
        columns: tuple[list[str], list[str], list[str]] = ([], [], [])
        with pa.OSFile(str(tmp / "corpus.arrow"), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:

            def flush() -> None:
                batch = pa.record_batch([pa.array(c, type=pa.string()) for c in columns], schema=SCHEMA)
                writer.write_batch(batch)
                canonical.append(bool(pc.all(pc.match_substring_regex(batch.column(0), _INT_ID)).as_py()))
                for c in columns:
                    c.clear()

            for record in records:
                doc_id, title, text = record[:3]
                lines.append(record[3] if len(record) > 3 else count + 1)  # type: ignore[misc]
                if not (title.strip() or text.strip()):
                    raise InputError(f"{source}: document {doc_id!r} has an empty title and text")
                columns[0].append(doc_id)
                columns[1].append(title)
                columns[2].append(text)
                add_to_fingerprint(digest, doc_id, Document(text=text, title=title).full_text())
                count += 1
                if len(columns[0]) == BATCH_ROWS:
                    flush()
            if columns[0]:
                flush()
        if count == 0:
            raise InputError(f"{source}: no documents")
        integer = all(canonical)
        with pa.OSFile(str(tmp / "corpus.arrow")) as handle:  # batch by batch: the ids only stay
            reader = pa.ipc.open_file(handle)
            keys = np.concatenate(
                [_keys(reader.get_batch(b).column(0), integer) for b in range(reader.num_record_batches)]
            )
            order = np.argsort(keys, kind="stable")
            sorted_keys = keys[order]
            del keys
            np.save(tmp / "keys.npy", sorted_keys)
            np.save(tmp / "rows.npy", order.astype(np.int64))

            def id_at(row: int) -> str:
                return reader.get_batch(row // BATCH_ROWS).column(0)[row % BATCH_ROWS].as_py()

            _check_duplicates(id_at, sorted_keys, order, integer, source, lines)
        meta = {"version": STORE_VERSION, "count": count, "integer_ids": integer, "fingerprint": digest.hexdigest()}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if replace:
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        else:  # never remove a store another process may be opening: publish or defer to theirs
            try:
                os.replace(tmp, folder)
            except OSError:
                if not (folder / "meta.json").is_file():
                    raise InputError(f"{folder}: exists without meta.json (an interrupted build?); remove it") from None
                shutil.rmtree(tmp, ignore_errors=True)  # another process published the same store first
                return CorpusStore(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("corpus store of %d documents written to %s", count, folder)
    return CorpusStore(folder)


def _check_duplicates(
    id_at: Callable[[int], str], keys: np.ndarray, order: np.ndarray, integer: bool, source: str, lines: array
) -> None:
    same = np.flatnonzero(keys[1:] == keys[:-1])
    for i in same:
        a, b = sorted((int(order[i]), int(order[i + 1])))
        first, second = id_at(a), id_at(b)
        if integer or first == second:
            what = "_id" if source.endswith(".jsonl") else "id"
            raise InputError(f"{source}:{lines[b]}: duplicate {what} {second!r} (first on line {lines[a]})")


def _source_key(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256(f"corpus-store-v{STORE_VERSION}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:20]


def cached_corpus_store(
    source: str | os.PathLike[str],
    records: Iterable[tuple[str, str, str]] | Iterable[tuple[str, str, str, int]],
    *,
    name: str = "",
) -> CorpusStore:
    """The store of corpus file ``source``, built on first use under ``$IRDISTILL_CACHE/corpora``.

    ``records``: the file's documents from its layout's reader, a lazy iterable
    (:func:`irdistill.data.beir.corpus_records`, :func:`irdistill.data.msmarco.passage_records`),
    only consumed when the store must be built; a changed file (size or time) gets a new one. The
    caller hands the reader in, so this module imports no layout.
    """
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    label = name or path.parent.name or "corpus"
    folder = store_folder(f"{label}-{_source_key([path])}")
    if (folder / "meta.json").is_file():
        return CorpusStore(folder)
    logger.info("building the corpus store of %s (once) at %s", path, folder)
    return build_corpus_store(records, folder, source=str(path), replace=False)


def store_folder(key: str) -> Path:
    """Where the store named ``key`` lives: ``$IRDISTILL_CACHE/corpora/<key>``."""
    from irdistill.paths import cache_dir

    return cache_dir() / "corpora" / key.replace("/", "_")
