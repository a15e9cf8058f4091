"""The memory-mapped corpus store: lookups, blocks, fingerprints, errors and the build cache."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from irdistill.data import store as store_module
from irdistill.data.collection import Collection, Document
from irdistill.data.msmarco import passage_records
from irdistill.data.store import CorpusStore, build_corpus_store, cached_corpus_store
from irdistill.errors import InputError


def _docs(ids: list[str]) -> list[tuple[str, str, str]]:
    return [(i, f"title {i}" if n % 2 else "", f"text of {i} " * (n % 3 + 1)) for n, i in enumerate(ids)]


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "BATCH_ROWS", 4)


@pytest.mark.parametrize("ids", [[str(i * 7) for i in range(11)], [f"doc-{i}" for i in range(11)], ["0", "007", "7"]])
def test_store_is_the_dict_it_was_built_from(tmp_path: Path, small_batches: None, ids: list[str]) -> None:
    records = _docs(ids)
    store = build_corpus_store(records, tmp_path / "s")
    expected = {i: Document(text=text, title=title) for i, title, text in records}
    assert store.meta["integer_ids"] == all(i.isdigit() and i == str(int(i)) for i in ids)
    assert len(store) == len(ids) and list(store) == ids
    assert dict(store.items()) == expected
    for row, doc_id in enumerate(ids):
        assert store.row(doc_id) == row and store.doc_id(row) == doc_id
    assert store.rows_of([ids[-1], "missing", "12", ids[0], "0007"]).tolist() == [len(ids) - 1, -1, -1, 0, -1]
    assert "missing" not in store and 7 not in store
    with pytest.raises(KeyError):
        store["missing"]
    assert store.texts([2, 0]) == [expected[ids[2]].full_text(), expected[ids[0]].full_text()]
    blocks = list(store.blocks(block_rows=3))
    assert [b[0] for b in blocks] == list(range(0, len(ids), 3))
    assert [t for b in blocks for t in b[2]] == [expected[i].full_text() for i in ids]
    # the fingerprint is the one a dict collection computes: embedding caches stay valid
    from_dict = Collection(expected, {"q": "x"}, {"q": {ids[0]: 1}})
    from_store = Collection(store, {"q": "x"}, {"q": {ids[0]: 1}})
    assert from_store.corpus_fingerprint() == from_dict.corpus_fingerprint()
    assert from_store.doc_texts() == from_dict.doc_texts() and from_store.doc_ids == ids


def test_hash_collisions_cost_a_comparison_never_a_wrong_row(
    tmp_path: Path, small_batches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "_hash_key", lambda doc_id: 42)  # every id collides
    ids = [f"d{i}" for i in range(9)]
    store = build_corpus_store(_docs(ids), tmp_path / "s")
    assert store.rows_of(ids[::-1] + ["nope"]).tolist() == list(range(8, -1, -1)) + [-1]


def test_duplicates_and_empty_documents_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"src:5: duplicate id 'b' \(first on line 2\)"):
        build_corpus_store([("a", "", "x", 1), ("b", "", "y", 2), ("b", "", "z", 5)], tmp_path / "s", source="src")
    with pytest.raises(InputError, match="document 'b' has an empty title and text"):
        build_corpus_store([("a", "", "x"), ("b", " ", "")], tmp_path / "s")
    with pytest.raises(InputError, match="no documents"):
        build_corpus_store([], tmp_path / "s")
    assert not (tmp_path / "s").exists() and not list(tmp_path.iterdir())  # no half-built store left


def test_store_pickles_by_folder_and_reopens(tmp_path: Path) -> None:
    store = build_corpus_store(_docs(["a", "b"]), tmp_path / "s")
    assert len(pickle.dumps(store)) < 500  # the folder, not the data
    again = pickle.loads(pickle.dumps(store))
    assert dict(again.items()) == dict(store.items())


def test_cached_store_is_built_once_per_file_version(cache_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "collection.tsv"
    source.write_text("1\tfirst passage\n2\tsecond passage\n")
    first = cached_corpus_store(source, passage_records(source))
    assert first["2"].text == "second passage" and first.meta["integer_ids"]

    def must_not_read():  # type: ignore[no-untyped-def]
        raise AssertionError("the cached store must be reused")
        yield

    assert cached_corpus_store(source, must_not_read()).folder == first.folder
    source.write_text("1\tfirst passage\n2\tchanged\n")
    os.utime(source, ns=(1, 1))  # a new modification time as well as a new size
    assert cached_corpus_store(source, passage_records(source))["2"].text == "changed"
    assert len(list((cache_dir / "corpora").iterdir())) == 2


def test_load_collection_opens_a_store_with_the_dict_answers(beir_dir: Path, cache_dir: Path) -> None:
    from irdistill.data import load_collection, read_corpus

    collection = load_collection(beir_dir, split="test")
    assert isinstance(collection.corpus, CorpusStore)
    assert dict(collection.corpus.items()) == read_corpus(beir_dir / "corpus.jsonl")
    meta = json.loads((collection.corpus.folder / "meta.json").read_text())
    assert meta["count"] == len(collection.corpus)
    assert np.load(collection.corpus.folder / "keys.npy").dtype == np.uint64


def test_ir_datasets_splits_share_one_store(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ir_datasets path (a stand-in module: no network here) streams documents into a store
    once per parent data set; a second split opens it without iterating the documents again."""
    import sys
    import types
    from collections import namedtuple

    from irdistill.data.irds import load_ir_datasets

    Doc, Query, Qrel = (
        namedtuple("Doc", "doc_id title text"),
        namedtuple("Query", "query_id text"),
        namedtuple("Qrel", "query_id doc_id relevance"),
    )
    iterated: list[str] = []

    class FakeDataset:
        def __init__(self, split: str) -> None:
            self.split = split

        def has_docs(self) -> bool:
            return True

        has_queries = has_qrels = has_docs

        def docs_count(self) -> int:
            return 3

        def docs_iter(self):  # type: ignore[no-untyped-def]
            iterated.append(self.split)
            return iter([Doc("d1", "T", "one"), Doc("d2", "", "two"), Doc("d3", "", "three")])

        def queries_iter(self):  # type: ignore[no-untyped-def]
            return iter([Query("q1", "first"), Query("q2", "second")])

        def qrels_iter(self):  # type: ignore[no-untyped-def]
            return iter([Qrel("q1" if self.split == "test" else "q2", "d2", 1)])

    fake = types.SimpleNamespace(
        load=lambda dataset_id: FakeDataset(dataset_id.rsplit("/", 1)[1]),
        docs_parent_id=lambda dataset_id: dataset_id.rsplit("/", 1)[0],
    )
    monkeypatch.setitem(sys.modules, "ir_datasets", fake)
    test = load_ir_datasets("beir/fake/test", show_progress_bar=False)
    train = load_ir_datasets("beir/fake/train", show_progress_bar=False)
    assert iterated == ["test"]
    assert test.corpus.folder == train.corpus.folder
    assert test.corpus["d1"].full_text() == "T one" and list(train.corpus) == ["d1", "d2", "d3"]
    assert test.queries == {"q1": "first"} and train.queries == {"q2": "second"}


def test_a_cache_build_defers_to_a_store_another_process_published(tmp_path: Path) -> None:
    """Two torchrun ranks may build the same cached store at once: the second to finish keeps the
    first one's store (never removes it under the other's feet) and discards its own."""
    first = build_corpus_store(_docs(["a", "b"]), tmp_path / "s", replace=False)
    marker = first.folder / "keys.npy"
    before = marker.stat().st_mtime_ns
    second = build_corpus_store(_docs(["a", "b"]), tmp_path / "s", replace=False)
    assert second.folder == first.folder and marker.stat().st_mtime_ns == before
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # the loser's temporary folder is gone
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / "corpus.arrow").write_text("half")
    with pytest.raises(InputError, match="exists without meta.json"):
        build_corpus_store(_docs(["a"]), tmp_path / "stale", replace=False)
