"""The resumable teacher-score store: shards, resume (also after SIGKILL), rank sharding,
validation, the MS MARCO teacher-score TSV and the Margin-MSE dataset.

The teacher is a word-overlap counter defined here, so every score can be checked by hand.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from irdistill.data import Collection, Document, load_collection
from irdistill.errors import InputError, MissingDependencyError
from irdistill.scores.hf import to_hf_dataset
from irdistill.scores.msmarco import _import_tsv_lines as import_tsv_lines_reference
from irdistill.scores.msmarco import export_msmarco_tsv, import_msmarco_tsv
from irdistill.scores.table import SCHEMA, read_scores
from irdistill.teachers.base import ListwiseTeacher, PointwiseTeacher, ScoreScale
from irdistill.workflows.scoring import merge_shards, score_candidates


def overlap(query: str, passage: str) -> float:
    words = set(re.findall(r"\w+", query.lower()))
    return float(len(words & set(re.findall(r"\w+", passage.lower()))))


class OverlapTeacher(PointwiseTeacher):
    """score = number of distinct query words in the passage; counts its calls."""

    name = "overlap"
    scale = ScoreScale.BM25

    def __init__(self, fail_after: int | None = None, delay: float = 0.0, weight: int = 1) -> None:
        self.calls = 0
        self.fail_after = fail_after
        self.delay = delay
        self.weight = weight

    def config(self) -> dict:
        return {"weight": self.weight}

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("teacher crashed")
        self.calls += 1
        time.sleep(self.delay)
        return np.array([self.weight * overlap(q, p) for q, p in zip(queries, passages, strict=True)])


class ListOverlapTeacher(ListwiseTeacher):
    name = "overlap"
    scale = ScoreScale.BM25

    def __init__(self) -> None:
        self.calls = 0

    def config(self) -> dict:
        return {"weight": 1}

    def rank(self, query: str, passages: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.array([overlap(query, p) for p in passages])


class NaNTeacher(OverlapTeacher):
    def score(self, queries, passages):
        scores = super().score(queries, passages)
        return np.where([p.startswith("Drug dose") for p in passages], np.nan, scores)


CANDIDATES = {
    "q1": ["d1", "d8", "d2", "d4"],
    "q2": ["d2", "d5", "d1"],
    "q3": ["d3", "d7", "d6", "d4"],
}


@pytest.fixture
def collection(beir_dir: Path) -> Collection:
    return load_collection(beir_dir)  # split test: q1, q2, q3


def expected_rows(collection: Collection, candidates: dict) -> list[dict]:
    return [
        {
            "qid": q,
            "pid": p,
            "teacher": "overlap",
            "score": overlap(collection.queries[q], collection.corpus[p].full_text()),
        }
        for q, pids in candidates.items()
        for p in pids
    ]


def rows(table: pa.Table) -> list[dict]:
    return [{k: r[k] for k in ("qid", "pid", "teacher", "score")} for r in table.to_pylist()]


def test_full_run_rows_order_values(collection, tmp_path):
    teacher = OverlapTeacher()
    path = score_candidates(teacher, collection, CANDIDATES, tmp_path / "job", chunk_queries=2, show_progress_bar=False)
    assert path == tmp_path / "job" / "scores.parquet"
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "manifest.json",
        "scores.parquet",
        "shard-00000.parquet",
        "shard-00001.parquet",
    ]
    assert teacher.calls == 2  # one score() call per chunk
    table = read_scores(path)
    assert table.schema.equals(SCHEMA, check_metadata=False)
    assert rows(table) == expected_rows(collection, CANDIDATES)
    by_pair = {(r["qid"], r["pid"]): r["score"] for r in rows(table)}
    # by hand: q1 "protein expression in cancer cells"
    assert by_pair["q1", "d1"] == 5.0  # protein, expression, in, cancer, cells
    assert by_pair["q1", "d8"] == 1.0  # cells
    assert by_pair["q1", "d4"] == 0.0
    assert by_pair["q3", "d3"] == 3.0  # brain, gene, expression
    assert pq.read_table(path.parent / "shard-00001.parquet").column("qid").to_pylist() == ["q3"] * 4
    # the same job again: nothing is scored, the result stays
    again = OverlapTeacher()
    assert (
        score_candidates(again, collection, CANDIDATES, tmp_path / "job", chunk_queries=2, show_progress_bar=False)
        == path
    )
    assert again.calls == 0


def test_a_store_kept_as_manifest_and_scores_alone_is_complete(collection, tmp_path):
    """eval/teacher_scores keeps a store as its manifest and scores.parquet: copied into a run's
    folder it is that job finished, not a job with every shard missing (scored again before)."""
    path = score_candidates(
        OverlapTeacher(), collection, CANDIDATES, tmp_path / "job", chunk_queries=2, show_progress_bar=False
    )
    before = pq.read_table(path)
    for shard in (tmp_path / "job").glob("shard-*.parquet"):
        shard.unlink()
    again = OverlapTeacher()
    assert (
        score_candidates(again, collection, CANDIDATES, tmp_path / "job", chunk_queries=2, show_progress_bar=False)
        == path
    )
    assert again.calls == 0
    assert pq.read_table(path).equals(before)
    # the merged file of another job is still refused by its manifest
    with pytest.raises(InputError, match="teacher scores of a different job"):
        score_candidates(
            OverlapTeacher(), collection, CANDIDATES, tmp_path / "job", chunk_queries=1, show_progress_bar=False
        )


def test_listwise_teacher_ranks_each_query(collection, tmp_path):
    teacher = ListOverlapTeacher()
    path = score_candidates(teacher, collection, CANDIDATES, tmp_path / "job", chunk_queries=2, show_progress_bar=False)
    assert teacher.calls == 3
    assert rows(read_scores(path)) == expected_rows(collection, CANDIDATES)


def test_resume_after_teacher_failure(collection, tmp_path, caplog):
    reference = score_candidates(
        OverlapTeacher(), collection, CANDIDATES, tmp_path / "ref", chunk_queries=1, show_progress_bar=False
    )
    out = tmp_path / "job"
    crashing = OverlapTeacher(fail_after=2)
    with pytest.raises(RuntimeError, match="crashed"):
        score_candidates(crashing, collection, CANDIDATES, out, chunk_queries=1, show_progress_bar=False)
    assert sorted(p.name for p in out.glob("shard-*")) == ["shard-00000.parquet", "shard-00001.parquet"]
    assert not (out / "scores.parquet").exists()
    assert not list(out.glob(".*.tmp"))

    resumed = OverlapTeacher()
    with caplog.at_level(logging.INFO, logger="irdistill.workflows.scoring"):
        path = score_candidates(resumed, collection, CANDIDATES, out, chunk_queries=1, show_progress_bar=False)
    assert resumed.calls == 1  # only chunk 2 was left
    assert "2 of 3 chunks of rank 0 already scored" in caplog.text
    assert pq.read_table(path).equals(pq.read_table(reference))


SIGKILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_store import OverlapTeacher, synthetic_job
from irdistill.workflows.scoring import score_candidates
collection, candidates = synthetic_job()
score_candidates(OverlapTeacher(delay=0.1), collection, candidates, {out!r}, chunk_queries=2,
                 show_progress_bar=False)
"""


def synthetic_job(queries: int = 40, docs: int = 30, per_query: int = 6) -> tuple[Collection, dict]:
    """A deterministic larger job: 40 queries x 6 candidates over 30 documents."""
    rng = np.random.default_rng(7)
    vocab = [f"w{i}" for i in range(25)]
    corpus = {f"d{i}": Document(text=" ".join(rng.choice(vocab, 8))) for i in range(docs)}
    qs = {f"q{i}": " ".join(rng.choice(vocab, 3)) for i in range(queries)}
    candidates = {q: [f"d{j}" for j in rng.choice(docs, per_query, replace=False)] for q in qs}
    return Collection(corpus=corpus, queries=qs, qrels={}, name="synthetic"), candidates


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_resume_after_sigkill(tmp_path):
    collection, candidates = synthetic_job()  # 20 chunks of 2 queries
    out = tmp_path / "killed"
    script = SIGKILL_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("shard-*.parquet")):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "no shard appeared"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
    done = len(list(out.glob("shard-*.parquet")))
    assert 1 <= done < 20
    assert not (out / "scores.parquet").exists()

    resumed = OverlapTeacher()
    path = score_candidates(resumed, collection, candidates, out, chunk_queries=2, show_progress_bar=False)
    assert resumed.calls == 20 - done
    assert not list(out.glob(".*.tmp"))
    reference = score_candidates(
        OverlapTeacher(), collection, candidates, tmp_path / "ref", chunk_queries=2, show_progress_bar=False
    )
    assert pq.read_table(path).equals(pq.read_table(reference))
    assert pq.read_table(path).num_rows == 240


def test_different_job_in_same_folder(collection, tmp_path):
    out = tmp_path / "job"
    score_candidates(OverlapTeacher(), collection, CANDIDATES, out, chunk_queries=2, show_progress_bar=False)
    fewer = {q: pids[:2] for q, pids in CANDIDATES.items()}
    with pytest.raises(InputError, match=r"different job \(the candidate lists differ.*overwrite=True"):
        score_candidates(OverlapTeacher(), collection, fewer, out, chunk_queries=2, show_progress_bar=False)
    with pytest.raises(InputError, match=r'teacher .*"weight": 1.* there, .*"weight": 2.* now'):
        score_candidates(
            OverlapTeacher(weight=2), collection, CANDIDATES, out, chunk_queries=2, show_progress_bar=False
        )
    with pytest.raises(InputError, match="chunk_queries 2 there, 1 now"):
        score_candidates(OverlapTeacher(), collection, CANDIDATES, out, chunk_queries=1, show_progress_bar=False)
    collection.queries["q1"] = "another text"
    with pytest.raises(InputError, match="query or passage texts differ"):
        score_candidates(OverlapTeacher(), collection, CANDIDATES, out, chunk_queries=2, show_progress_bar=False)
    path = score_candidates(
        OverlapTeacher(weight=2), collection, fewer, out, chunk_queries=2, show_progress_bar=False, overwrite=True
    )
    assert read_scores(path).column("score").to_pylist() == [2 * r["score"] for r in expected_rows(collection, fewer)]


@pytest.mark.parametrize(
    ("candidates", "message"),
    [
        ({"q1": ["d1"], "q9": ["d2"]}, "query id 'q9' is not among the queries of collection tiny/test"),
        ({"q1": ["d1", "d99"]}, "candidates of query 'q1': passage id 'd99' .position 2. is not in the corpus"),
        ({"q1": ["d1", "d2", "d1"]}, "'d1' is listed twice .positions 1 and 3."),
        ({"q1": []}, "every query's candidate list is empty"),
    ],
)
def test_unknown_ids_refused_before_anything_is_written(collection, tmp_path, candidates, message):
    teacher = OverlapTeacher()
    with pytest.raises(InputError, match=message):
        score_candidates(
            teacher, collection, candidates, tmp_path / "job", include_positives=False, show_progress_bar=False
        )
    assert teacher.calls == 0
    assert not (tmp_path / "job").exists()


def test_nan_score_refused_and_no_shard_written(collection, tmp_path):
    out = tmp_path / "job"
    # d4 ("Drug dose ...") is a candidate of q1 (chunk 0) and of q3 (chunk 2)
    candidates = {"q2": ["d2", "d5"], "q1": ["d1", "d4"], "q3": ["d3"]}
    with pytest.raises(
        InputError,
        match=r"non-finite score \(nan\).*query 'q1', passage 'd4'.*"
        r"shard-00001.parquet was not written",
    ):
        score_candidates(NaNTeacher(), collection, candidates, out, chunk_queries=1, show_progress_bar=False)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-00000.parquet"]


def test_two_ranks_write_their_halves_and_merge(collection, tmp_path, monkeypatch):
    single = score_candidates(
        OverlapTeacher(), collection, CANDIDATES, tmp_path / "single", chunk_queries=1, show_progress_bar=False
    )
    out = tmp_path / "ddp"
    # rank 0 first (from torchrun's environment variables): chunks 0 and 2, cannot merge yet
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    rank0 = OverlapTeacher()
    path = score_candidates(rank0, collection, CANDIDATES, out, chunk_queries=1, show_progress_bar=False)
    assert rank0.calls == 2
    assert sorted(p.name for p in out.glob("shard-*")) == ["shard-00000.parquet", "shard-00002.parquet"]
    assert not path.exists()
    with pytest.raises(InputError, match="1 of 3 shards are missing .first: shard-00001.parquet."):
        merge_shards(out)
    # rank 1: chunk 1 only, and it never merges
    monkeypatch.setenv("RANK", "1")
    rank1 = OverlapTeacher()
    assert score_candidates(rank1, collection, CANDIDATES, out, chunk_queries=1, show_progress_bar=False) == path
    assert rank1.calls == 1
    assert not path.exists()
    assert merge_shards(out) == path
    assert pq.read_table(path).equals(pq.read_table(single))
    assert path.read_bytes() == single.read_bytes()

    # rank 1 before rank 0: rank 0 finds every shard and merges itself
    other = tmp_path / "ddp2"
    score_candidates(
        OverlapTeacher(), collection, CANDIDATES, other, chunk_queries=1, rank=1, world_size=2, show_progress_bar=False
    )
    merged = score_candidates(
        OverlapTeacher(), collection, CANDIDATES, other, chunk_queries=1, rank=0, world_size=2, show_progress_bar=False
    )
    assert pq.read_table(merged).equals(pq.read_table(single))
    with pytest.raises(InputError, match="expected 0 <= rank < world_size"):
        score_candidates(OverlapTeacher(), collection, CANDIDATES, other, rank=2, world_size=2)


def write_table(path: Path, **columns) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"qid": ["q1"], "pid": ["d1"], "score": [1.0]}, "missing column.s. teacher"),
        (
            {"qid": ["q1", None], "pid": ["d1", "d2"], "score": [1.0, 2.0], "teacher": ["t", "t"]},
            r"row 1 \(0-based\): column qid is null",
        ),
        (
            {"qid": ["q1", "q1"], "pid": ["d1", "d2"], "score": [1.0, float("inf")], "teacher": ["t", "t"]},
            r"row 1 \(0-based\): score is inf",
        ),
        (
            {
                "qid": ["q1", "q1", "q1"],
                "pid": ["d1", "d2", "d1"],
                "score": [1.0, 2.0, 3.0],
                "teacher": ["t", "t", "t"],
            },
            r"rows 0 and 2 \(0-based\) both hold query 'q1', passage 'd1'",
        ),
        ({"qid": [1], "pid": ["d1"], "score": [1.0], "teacher": ["t"]}, "column qid has type int64"),
    ],
)
def test_read_scores_validation(tmp_path, columns, message):
    path = write_table(tmp_path / "bad.parquet", **columns)
    with pytest.raises(InputError, match=f"{re.escape(str(path))}: .*{message}"):
        read_scores(path)


def test_read_scores_accepts_same_pair_from_two_teachers(tmp_path):
    path = write_table(tmp_path / "two.parquet", qid=["q1", "q1"], pid=["d1", "d1"], score=[1, 2], teacher=["a", "b"])
    table = read_scores(path)
    assert table.column("score").type == pa.float64()
    assert table.num_rows == 2


SCORES = pa.table(
    {
        "qid": ["q1", "q1", "q1", "q2", "q2", "q3"],
        "pid": ["d1", "d4", "d8", "d5", "d2", "d3"],
        "score": [5.0, 0.25, 1.5, -1.0, 2.0, 3.0],
        "teacher": ["ce"] * 6,
    }
)
QRELS = {"q1": {"d1": 1, "d8": 2, "d4": 0}, "q2": {"d2": 1}, "q3": {"d3": 1}}


def test_tsv_export_and_import_round_trip(tmp_path):
    out = export_msmarco_tsv(SCORES, QRELS, tmp_path / "triples.tsv")
    # q1: positives d1, d8 (table order) x negative d4 (judged 0); q2: d2 x d5; q3: no negative
    assert out.read_text() == ("5.0\t0.25\tq1\td1\td4\n1.5\t0.25\tq1\td8\td4\n2.0\t-1.0\tq2\td2\td5\n")
    table = import_msmarco_tsv(out, teacher="ce")
    assert table.schema.equals(SCHEMA)
    assert table.to_pylist() == [
        {"qid": "q1", "pid": "d1", "score": 5.0, "teacher": "ce"},
        {"qid": "q1", "pid": "d4", "score": 0.25, "teacher": "ce"},
        {"qid": "q1", "pid": "d8", "score": 1.5, "teacher": "ce"},
        {"qid": "q2", "pid": "d2", "score": 2.0, "teacher": "ce"},
        {"qid": "q2", "pid": "d5", "score": -1.0, "teacher": "ce"},
    ]
    assert import_tsv_lines_reference(out, "ce").equals(table)
    # exporting the imported table again gives the same file
    assert export_msmarco_tsv(table, QRELS, tmp_path / "again.tsv").read_text() == out.read_text()


def test_tsv_export_needs_one_teacher_and_some_pairs(tmp_path):
    two = pa.concat_tables([SCORES, SCORES.set_column(3, "teacher", pa.array(["bm25"] * 6))])
    with pytest.raises(InputError, match="2 teachers .bm25, ce.; choose one with teacher="):
        export_msmarco_tsv(two, QRELS, tmp_path / "x.tsv")
    export_msmarco_tsv(two, QRELS, tmp_path / "bm25.tsv", teacher="bm25")
    assert len((tmp_path / "bm25.tsv").read_text().splitlines()) == 3
    with pytest.raises(InputError, match="both a judged-relevant and a non-relevant"):
        export_msmarco_tsv(SCORES, {}, tmp_path / "none.tsv")
    assert not (tmp_path / "none.tsv").exists()


def test_tsv_import_float_formats_and_duplicates(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_text("8.5\t-1e-3\t1\t10\t20\n\n8.50\t3\t1\t10\t30\n7\t0.0\t2\t10\t20\n")
    table = import_msmarco_tsv(path)
    assert table.to_pylist() == [
        {"qid": "1", "pid": "10", "score": 8.5, "teacher": "imported"},
        {"qid": "1", "pid": "20", "score": -0.001, "teacher": "imported"},
        {"qid": "1", "pid": "30", "score": 3.0, "teacher": "imported"},
        {"qid": "2", "pid": "10", "score": 7.0, "teacher": "imported"},
        {"qid": "2", "pid": "20", "score": 0.0, "teacher": "imported"},
    ]
    assert import_tsv_lines_reference(path, "imported").equals(table)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.0\t0.5\tq1\td1\td2\n1.0\t0.5\tq1\td1\n", r":2: expected 5 tab-separated fields .*got 4"),
        ("1.0\t0.5\tq1\td1\td2\t9\n", r":1: expected 5 tab-separated fields .*got 6"),
        ("1.0\t0.5\tq1\td1\td2\nhigh\t0.5\tq1\td1\td3\n", r":2: score_pos 'high' is not a number"),
        ("1.0\tnan\tq1\td1\td2\n", r":1: score_neg is 'nan'; teacher scores must be finite"),
        ("1.0\t-inf\tq1\td1\td2\n", r":1: score_neg is '-inf'"),
        ("1.0\t0.5\t\td1\td2\n", r":1: qid is empty"),
        (
            "1.0\t0.5\tq1\td1\td2\n\n2.0\t0.5\tq1\td3\td4\n1.0\t0.7\tq1\td1\td2\n",
            r": query 'q1', passage 'd2' has score 0.5 on line 1 and 0.7 on line 4",
        ),
    ],
)
def test_tsv_import_malformed_lines(tmp_path, text, message):
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(InputError, match=re.escape(str(path)) + message):
        import_msmarco_tsv(path)


WIDE = pa.table(
    {
        "qid": ["q1"] * 5,
        "pid": ["d1", "d2", "d3", "d4", "d5"],
        "score": [9.0, 1.0, 2.0, 3.0, 4.0],
        "teacher": ["ce"] * 5,
    }
)


def test_to_hf_dataset_margins(collection):
    pytest.importorskip("datasets")
    text_to_pid = {doc.full_text(): pid for pid, doc in collection.corpus.items()}
    dataset = to_hf_dataset(SCORES, collection, QRELS, negatives_per_query=1, seed=3)
    assert dataset.column_names == ["query", "positive", "negative_1", "label"]
    # q1: two positives (d1, d8), one negative (d4); q2: d2 vs d5; q3 has no negative
    assert dataset["query"] == [collection.queries["q1"]] * 2 + [collection.queries["q2"]]
    assert [text_to_pid[t] for t in dataset["positive"]] == ["d1", "d8", "d2"]
    assert [text_to_pid[t] for t in dataset["negative_1"]] == ["d4", "d4", "d5"]
    assert dataset["label"] == [[5.0 - 0.25], [1.5 - 0.25], [2.0 - (-1.0)]]

    dataset = to_hf_dataset(WIDE, collection, negatives_per_query=3, seed=0)  # collection.qrels
    assert dataset.column_names == ["query", "positive", "negative_1", "negative_2", "negative_3", "label"]
    row = dataset[0]
    assert text_to_pid[row["positive"]] == "d1"
    negatives = [text_to_pid[row[f"negative_{i}"]] for i in (1, 2, 3)]
    assert len(set(negatives)) == 3 and set(negatives) <= {"d2", "d3", "d4", "d5"}
    wide_scores = dict(zip(WIDE.column("pid").to_pylist(), WIDE.column("score").to_pylist(), strict=True))
    assert row["label"] == [9.0 - wide_scores[n] for n in negatives]
    assert to_hf_dataset(WIDE, collection, negatives_per_query=3, seed=0)[0] == row
    with pytest.raises(InputError, match="no training rows"):
        to_hf_dataset(WIDE, collection, negatives_per_query=5)
    with pytest.raises(InputError, match="passage id 'd99' .query 'q1'. is not in the corpus"):
        to_hf_dataset(WIDE.set_column(1, "pid", pa.array(["d1", "d2", "d3", "d4", "d99"])), collection)


def test_to_hf_dataset_without_datasets(collection, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(MissingDependencyError, match="pip install datasets"):
        to_hf_dataset(SCORES, collection, QRELS)


def test_to_hf_dataset_feeds_margin_mse_loss(collection):
    """The layout sentence-transformers' MarginMSELoss takes: labels stack to (batch, n)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("datasets")
    from sentence_transformers.sentence_transformer.data_collator import (
        SentenceTransformerDataCollator,
    )
    from sentence_transformers.sentence_transformer.losses import MarginMSELoss

    dataset = to_hf_dataset(WIDE, collection, negatives_per_query=3)

    def preprocess(texts, prompt=None, task=None):
        return {"input_ids": torch.zeros(len(texts), 1)}

    batch = SentenceTransformerDataCollator(preprocess_fn=preprocess)(list(dataset))
    assert batch["label"].shape == (1, 3)
    assert [k for k in batch if k.endswith("_input_ids")] == [
        "query_input_ids",
        "positive_input_ids",
        "negative_1_input_ids",
        "negative_2_input_ids",
        "negative_3_input_ids",
    ]
    loss = MarginMSELoss(torch.nn.Identity())
    embeddings = [torch.randn(1, 4, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    value = loss.compute_loss_from_embeddings(embeddings, batch["label"])
    scores = [(embeddings[0] * e).sum() for e in embeddings[1:]]
    margins = torch.stack([scores[0] - s for s in scores[1:]])
    assert torch.allclose(value, ((margins - batch["label"][0]) ** 2).mean())


class CallSizes(OverlapTeacher):
    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def score(self, queries, passages):
        self.sizes.append(len(queries))
        return super().score(queries, passages)


def test_progress_counts_queries_and_moves_inside_a_chunk(collection, tmp_path, monkeypatch):
    """A pointwise teacher gets whole queries, at most PAIRS_PER_CALL pairs a call (one query at
    least), so the bar moves within a chunk; the stored rows do not depend on the split."""
    import irdistill.workflows.scoring as store

    monkeypatch.setattr(store, "PAIRS_PER_CALL", 7)
    teacher = CallSizes()
    path = score_candidates(teacher, collection, CANDIDATES, tmp_path / "job", show_progress_bar=False)
    assert teacher.sizes == [7, 4]  # q1 + q2 (4 + 3 pairs), then q3 (4): one chunk of 3 queries
    assert rows(read_scores(path)) == expected_rows(collection, CANDIDATES)
    monkeypatch.setattr(store, "PAIRS_PER_CALL", 1)
    teacher = CallSizes()
    score_candidates(teacher, collection, CANDIDATES, tmp_path / "job1", show_progress_bar=False)
    assert teacher.sizes == [4, 3, 4]  # a query is never split
    updates: list[int] = []
    plan = store._Plan.build(collection, CANDIDATES)
    store._score_chunk(
        ListOverlapTeacher(), "overlap", True, collection, plan, ["q1", "q2", "q3"], 0, {}, progress=updates.append
    )
    assert updates == [1, 1, 1]  # a listwise teacher: one update per query


def test_streaming_import_in_small_blocks_and_buckets_equals_the_line_reader(tmp_path, monkeypatch):
    """Queries interleaved over the file, repeats, several CSV blocks and several buckets: the
    streaming import gives the reference reader's table (grouped by query, first appearance)."""
    import irdistill.scores.msmarco as msmarco

    monkeypatch.setattr(msmarco, "QUERIES_PER_BUCKET", 3)
    rng = np.random.default_rng(5)
    score = {}
    lines = []
    for _ in range(400):
        q, pos, neg = f"q{rng.integers(12)}", f"p{rng.integers(40)}", f"p{rng.integers(40, 80)}"
        a = score.setdefault((q, pos), round(float(rng.normal()), 3))
        b = score.setdefault((q, neg), round(float(rng.normal()), 3))
        lines.append(f"{a}\t{b}\t{q}\t{pos}\t{neg}\n")
    path = tmp_path / "scores.tsv"
    path.write_text("".join(lines))
    summary = msmarco.import_msmarco_scores(path, tmp_path / "out" / "scores.parquet", "t", block_size=1 << 10)
    table = pq.read_table(summary.out)
    assert table.equals(import_tsv_lines_reference(path, "t"))
    assert (summary.lines, summary.rows, summary.queries) == (400, len(score), 12)
    qids = table.column("qid").to_pylist()
    first_seen = list(dict.fromkeys(line.split("\t")[2] for line in lines))
    assert list(dict.fromkeys(qids)) == first_seen  # grouped by query, in order of first appearance
    assert [q for i, q in enumerate(qids) if i == 0 or qids[i - 1] != q] == first_seen
    assert not [p for p in (tmp_path / "out").iterdir() if p.name != "scores.parquet"]  # no buckets left


@pytest.mark.parametrize("store", [False, True])
def test_text_layout_maps_texts_to_the_collection_ids(tmp_path, cache_dir, store):
    from irdistill.scores.msmarco import import_msmarco_scores

    corpus = {"d1": Document(text="alpha beta"), "d2": Document(text="gamma  delta"), "d3": Document(text="eps")}
    if store:
        from irdistill.data.store import build_corpus_store

        corpus = build_corpus_store(((k, d.title, d.text) for k, d in corpus.items()), tmp_path / "store")
    collection = Collection(corpus, {"q1": "what is alpha", "q2": "delta?"}, {"q1": {"d1": 1}, "q2": {"d2": 1}})
    path = tmp_path / "text.tsv"
    path.write_text("3.0\t1.0\twhat is  alpha\talpha beta\teps\n2.0\t0.5\tdelta?\tgamma delta\talpha beta\n")
    out = tmp_path / "scores.parquet"
    import_msmarco_scores(path, out, "ce", layout="text", collection=collection)
    assert [(r["qid"], r["pid"], r["score"]) for r in pq.read_table(out).to_pylist()] == [
        ("q1", "d1", 3.0),
        ("q1", "d3", 1.0),
        ("q2", "d2", 2.0),
        ("q2", "d1", 0.5),
    ]
    path.write_text("3.0\t1.0\twhat is alpha\talpha beta\tnot a passage\n")
    with pytest.raises(InputError, match=r"data line 1: passage 'not a passage' is not in the corpus"):
        import_msmarco_scores(path, out, "ce", layout="text", collection=collection)
    with pytest.raises(InputError, match="needs the collection"):
        import_msmarco_scores(path, out, "ce", layout="text")


@pytest.mark.parametrize("collide", [False, True])
@pytest.mark.parametrize("store", [False, True])
def test_text_rows_finds_the_first_row_of_a_text(tmp_path, cache_dir, store, collide, monkeypatch):
    """Full texts to rows, white space normalised, -1 for a text the corpus lacks, the first row of
    a repeated text; with every hash key equal the texts themselves still decide."""
    import irdistill.data.store as store_module
    from irdistill.data.store import build_corpus_store, text_rows

    if collide:
        monkeypatch.setattr(store_module, "_hash_key", lambda text: 7)
    corpus = {
        "d1": Document(text="alpha beta"),
        "d2": Document(text="gamma  delta", title="T"),
        "d3": Document(text="alpha beta"),
        "d4": Document(text="eps"),
    }
    if store:
        corpus = build_corpus_store(((k, d.title, d.text) for k, d in corpus.items()), tmp_path / "store")
    rows = text_rows(corpus)(["eps", "T gamma delta", "alpha\nbeta", "not there", "alpha beta"])
    assert rows.tolist() == [3, 1, 0, -1, 0]


def test_duplicate_check_names_the_pair_whose_second_row_comes_first():
    from irdistill.scores.table import validate_scores

    pids = ["a", "b", "c", "b", "a", "a"]
    table = pa.table({"qid": ["q"] * 6, "pid": pids, "score": [1.0] * 6, "teacher": ["t"] * 6})
    with pytest.raises(InputError, match=r"rows 1 and 3 \(0-based\) both hold query 'q', passage 'b'"):
        validate_scores(table)
    # the same pid under two teachers or two queries is no duplicate
    ok = pa.table({"qid": ["q", "q", "r"], "pid": ["a", "a", "a"], "score": [1.0] * 3, "teacher": ["t", "u", "t"]})
    assert validate_scores(ok).num_rows == 3


def test_duplicate_check_in_parts_finds_the_same_pair(monkeypatch):
    """Split into parts by query (a tiny part size here), the check names the same pair."""
    import irdistill.scores.table as table_module
    from irdistill.scores.table import validate_scores

    rng = np.random.default_rng(3)
    n = 500
    rows = {
        "qid": [f"q{rng.integers(40)}" for _ in range(n)],
        "pid": [f"p{i}" for i in range(n)],
        "score": [1.0] * n,
        "teacher": ["t"] * n,
    }
    rows["qid"][400], rows["pid"][400] = rows["qid"][120], rows["pid"][120]  # repeats row 120
    rows["qid"][300], rows["pid"][300] = rows["qid"][7], rows["pid"][7]  # repeats row 7, comes first
    table = pa.table(rows)
    for part_rows in (10**9, 50):
        monkeypatch.setattr(table_module, "UNIQUE_CHECK_ROWS", part_rows)
        with pytest.raises(InputError, match=r"rows 7 and 300 \(0-based\)"):
            validate_scores(table)
    monkeypatch.setattr(table_module, "UNIQUE_CHECK_ROWS", 50)
    rows["pid"][300], rows["pid"][400] = "new1", "new2"
    assert validate_scores(pa.table(rows)).num_rows == n


def test_judged_positives_join_lists_that_lack_them(collection, tmp_path):
    """Mined candidates leave the judged positives out; scoring them for training adds them (first),
    as the CLI does, and a fidelity run keeps its lists as given."""
    from irdistill.scores.table import read_scores
    from irdistill.workflows.scoring import with_positives

    q = next(q for q in collection.queries if collection.positives(q))
    positives = collection.positives(q)
    others = [d for d in collection.doc_ids if d not in positives][:2]
    path = score_candidates(OverlapTeacher(), collection, {q: others}, tmp_path / "train", show_progress_bar=False)
    assert read_scores(path).column("pid").to_pylist() == [*positives, *others]
    kept = score_candidates(
        OverlapTeacher(), collection, {q: others}, tmp_path / "rerank", include_positives=False, show_progress_bar=False
    )
    assert read_scores(kept).column("pid").to_pylist() == others
    assert with_positives({q: [*others, positives[0]]}, collection)[q] == [*positives, *others]
