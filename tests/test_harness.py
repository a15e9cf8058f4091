from __future__ import annotations

import json
from pathlib import Path

import pytest

from irdistill.data import load_collection, read_run
from irdistill.errors import InputError
from irdistill.evaluation import evaluate_retrieval, evaluate_run


def test_dense_evaluation_writes_every_output(
    tiny_model_dir: Path, beir_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    collection = load_collection(beir_dir)
    out = tmp_path / "out"
    result = evaluate_retrieval(str(tiny_model_dir), collection, k=5, out=out, show_progress_bar=False)
    assert set(result.metrics) == {"ndcg@10", "mrr@10", "recall@100", "recall@1000"}
    assert all(0.0 <= v <= 1.0 for v in result.metrics.values())
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "perf.json", "run.trec", "table.md"]
    run = read_run(out / "run.trec")
    assert set(run) == set(collection.queries)
    assert all(len(docs) == 5 for docs in run.values())
    # the metrics file agrees with scoring the written run again
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["metrics"] == pytest.approx(evaluate_run(collection.qrels, run, list(result.metrics)), abs=1e-6)
    perf = json.loads((out / "perf.json").read_text())
    assert perf["num_docs"] == 8 and perf["num_queries"] == 3
    assert perf["index_bytes"] > 8 * 32 * 4 and perf["peak_rss_mb"] > 0 and perf["docs_per_second"] > 0
    table = (out / "table.md").read_text().splitlines()
    assert table[0].startswith("| model | index | ndcg@10") and len(table) == 3


def test_cached_rerun_gives_the_same_run(tiny_model_dir: Path, beir_dir: Path, cache_dir: Path) -> None:
    collection = load_collection(beir_dir)
    first = evaluate_retrieval(str(tiny_model_dir), collection, k=8, show_progress_bar=False)
    second = evaluate_retrieval(str(tiny_model_dir), collection, k=8, show_progress_bar=False)
    assert not first.performance.corpus_cached and second.performance.corpus_cached
    assert first.metrics == second.metrics
    assert first.run == second.run


@pytest.mark.parametrize("index", ["hnsw", "flat"])
def test_index_kinds_agree_on_a_tiny_corpus(tiny_model_dir: Path, beir_dir: Path, cache_dir: Path, index: str) -> None:
    collection = load_collection(beir_dir)
    flat = evaluate_retrieval(str(tiny_model_dir), collection, k=8, show_progress_bar=False)
    other = evaluate_retrieval(str(tiny_model_dir), collection, index=index, k=8, show_progress_bar=False)
    assert other.metrics == pytest.approx(flat.metrics, abs=1e-6)


def test_bm25_ranks_the_matching_document_first(beir_dir: Path) -> None:
    collection = load_collection(beir_dir)
    result = evaluate_retrieval("bm25", collection, k=3, metrics=["mrr@10", "ndcg@3"], show_progress_bar=False)
    top = {q: max(docs, key=docs.get) for q, docs in result.run.items()}
    assert top["q2"] == "d2"  # "vaccine immune response" -> the vaccine trial document
    assert result.metrics["mrr@10"] > 0.5
    assert result.index == "bm25s"


def test_bad_arguments(beir_dir: Path, tiny_model_dir: Path, cache_dir: Path) -> None:
    collection = load_collection(beir_dir)
    with pytest.raises(InputError, match="unknown metric 'ndgc@10'"):
        evaluate_retrieval("bm25", collection, metrics=["ndgc@10"], show_progress_bar=False)
    with pytest.raises(InputError, match="k must be >= 1"):
        evaluate_retrieval("bm25", collection, k=0, show_progress_bar=False)
    with pytest.raises(InputError, match="the sparse index serves sparse students"):
        evaluate_retrieval(str(tiny_model_dir), collection, index="sparse", show_progress_bar=False)
    with pytest.raises(InputError, match="unknown index kind 'annoy'"):
        evaluate_retrieval(str(tiny_model_dir), collection, index="annoy", show_progress_bar=False)


@pytest.mark.slow
def test_minilm_reproduces_the_published_scifact_figure(scifact_dir: Path) -> None:
    """all-MiniLM-L6-v2 on SciFact test: MTEB reports nDCG@10 = 0.645 (minutes on a CPU)."""
    from irdistill.paths import models_dir

    if not (models_dir() / "all-MiniLM-L6-v2").is_dir():
        pytest.skip("all-MiniLM-L6-v2 not under $IRDISTILL_MODELS (run shared/models/prepare.sh)")
    collection = load_collection(scifact_dir, split="test")
    result = evaluate_retrieval("sentence-transformers/all-MiniLM-L6-v2", collection, show_progress_bar=False)
    assert result.metrics["ndcg@10"] == pytest.approx(0.645, abs=0.01)
    assert result.metrics["recall@100"] > 0.85


@pytest.mark.slow
def test_bm25_on_scifact_is_near_the_published_figure(scifact_dir: Path) -> None:
    """bm25s on SciFact test; BEIR reports 0.665 (Elasticsearch), Anserini 0.679."""
    collection = load_collection(scifact_dir, split="test")
    result = evaluate_retrieval("bm25", collection, show_progress_bar=False)
    assert 0.65 <= result.metrics["ndcg@10"] <= 0.70
