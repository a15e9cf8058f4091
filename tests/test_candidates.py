from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from irdistill.candidates import (
    FalseNegativeFilter,
    iter_candidates,
    mine_candidates,
    write_candidates,
)
from irdistill.data import load_collection, read_run
from irdistill.errors import InputError
from irdistill.teachers.base import PointwiseTeacher, ScoreScale


class WordOverlap(PointwiseTeacher):
    scale = ScoreScale.LOGIT
    name = "overlap"

    def score(self, queries, passages):
        return np.array(
            [
                len(set(q.lower().split()) & set(p.lower().rstrip(".").split()))
                for q, p in zip(queries, passages, strict=True)
            ],
            dtype=float,
        )


def test_bm25_candidates_exclude_positives(beir_dir: Path) -> None:
    collection = load_collection(beir_dir)
    with_pos = mine_candidates(collection, "bm25", k=3, exclude_positives=False, show_progress_bar=False)
    without = mine_candidates(collection, "bm25", k=3, show_progress_bar=False)
    assert set(without) == set(collection.queries)
    for qid, docs in without.items():
        assert len(docs) == 3
        assert not set(docs) & {d for d, r in collection.qrels[qid].items() if r > 0}
    assert "d2" in with_pos["q2"] and "d2" not in without["q2"]


def test_dense_candidates_and_streamed_file(
    tiny_model_dir: Path, beir_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    collection = load_collection(beir_dir)
    out = tmp_path / "cands.trec"
    count = write_candidates(collection, out, str(tiny_model_dir), k=4, query_batch_size=2, show_progress_bar=False)
    assert count == 3
    run = read_run(out)
    in_memory = mine_candidates(collection, str(tiny_model_dir), k=4, query_batch_size=2, show_progress_bar=False)
    assert {q: sorted(d) for q, d in run.items()} == {q: sorted(d) for q, d in in_memory.items()}
    assert all(len(d) == 4 for d in run.values())


def test_false_negative_filter(beir_dir: Path) -> None:
    collection = load_collection(beir_dir)
    plain = dict(iter_candidates(collection, "bm25", k=7, show_progress_bar=False))
    kept = dict(
        iter_candidates(
            collection,
            "bm25",
            k=7,
            show_progress_bar=False,
            false_negatives=FalseNegativeFilter(WordOverlap(), margin=0.0),
        )
    )
    teacher = WordOverlap()
    for qid, hits in plain.items():
        query = collection.queries[qid]
        pos = [collection.corpus[d].full_text() for d, r in collection.qrels[qid].items() if r > 0]
        threshold = teacher.score([query] * len(pos), pos).min()
        expected = [d for d, _ in hits if teacher.score([query], [collection.corpus[d].full_text()])[0] <= threshold]
        assert [d for d, _ in kept[qid]] == expected
    assert sum(map(len, kept.values())) < sum(map(len, plain.values()))


def test_candidate_errors(beir_dir: Path) -> None:
    collection = load_collection(beir_dir)
    with pytest.raises(InputError, match="query id 'nope' is not in"):
        mine_candidates(collection, "bm25", query_ids=["nope"], show_progress_bar=False)
    with pytest.raises(InputError, match="k must be >= 1"):
        mine_candidates(collection, "bm25", k=0, show_progress_bar=False)


def test_bm25_searches_on_several_threads_with_the_same_results(beir_dir: Path) -> None:
    from irdistill.data import load_collection
    from irdistill.retrieval import BM25Retriever

    collection = load_collection(beir_dir, split="test")
    one, many = BM25Retriever(show_progress_bar=False, threads=0), BM25Retriever(show_progress_bar=False, threads=2)
    assert many.threads == 2 and one.threads == 0
    for retriever in (one, many):
        retriever.index(collection)
    texts = collection.query_texts() * 3
    ids = [f"q{i}" for i in range(len(texts))]
    a, b = one.search(ids, texts, 5), many.search(ids, texts, 5)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[0], b[0])
