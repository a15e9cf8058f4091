from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from irdistill.cli.main import main


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from irdistill.cli.main import build_parser\n"
        "build_parser().format_help()\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'faiss', 'ranx', 'transformers') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_console_script_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "irdistill.cli.main", "evaluate", "--help"], capture_output=True, text=True, check=True
    )
    assert "--model" in out.stdout and "IRDISTILL_DATA" in out.stdout


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "evaluate" in capsys.readouterr().out


def test_evaluate_bm25_end_to_end(beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bm25"
    code = main(
        [
            "-q",
            "evaluate",
            "--model",
            "bm25",
            "--dataset",
            str(beir_dir),
            "--out",
            str(out),
            "--metrics",
            "ndcg@10,recall@5",
            "-k",
            "5",
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["metrics"]) == ["ndcg@10", "recall@5"]
    assert metrics["k"] == 5 and metrics["split"] == "test"
    assert "| bm25 | bm25s |" in capsys.readouterr().out


def test_yaml_config_and_flag_override(beir_dir: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model: bm25\ndataset: {beir_dir}\nk: 3\nmetrics: [mrr@10]\nout: {tmp_path / 'a'}\n")
    assert main(["-q", "evaluate", "--config", str(recipe), "--out", str(tmp_path / "b")]) == 0
    assert not (tmp_path / "a").exists()
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["k"] == 3 and list(metrics["metrics"]) == ["mrr@10"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "bm25", "--dataset", "{missing}"], "no such file"),
        (["--model", "bm25", "--dataset", "{beir}", "--metrics", "ndcg@10,nope@3"], "unknown metric 'nope@3'"),
        (["--model", "bm25", "--dataset", "{beir}", "--split", "dev"], "splits in"),
        (["--model", "{model}", "--dataset", "{beir}", "--index", "annoy"], "unknown index kind 'annoy'"),
        (["--dataset", "{beir}"], "--model is required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, beir_dir: Path, tmp_path: Path, tiny_model_dir: Path, cache_dir: Path
) -> None:
    out = tmp_path / "out"
    filled = [
        a.format(beir=beir_dir, missing=tmp_path / "nothing" / "corpus.jsonl", model=tiny_model_dir) for a in args
    ]
    if args[-1] == "{missing}":
        (tmp_path / "nothing").mkdir()
        (tmp_path / "nothing" / "corpus.jsonl").write_text('{"_id": "1", "text": "x"}\n')
        filled[-1] = str(tmp_path / "nothing")
    proc = subprocess.run(
        [sys.executable, "-m", "irdistill.cli.main", "-q", "evaluate", *filled, "--out", str(out)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "IRDISTILL_CACHE": str(cache_dir)},
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("irdistill evaluate: error:") and message in lines[0]
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_malformed_corpus_line_names_file_and_line(
    beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (beir_dir / "corpus.jsonl").open("a") as f:
        f.write("{not json\n")
    assert main(["-q", "evaluate", "--model", "bm25", "--dataset", str(beir_dir), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "corpus.jsonl:9: not valid JSON" in err
    assert not (tmp_path / "o").exists()


def test_unknown_config_key(beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: bm25\ndataset: x\nindx: hnsw\n")
    assert main(["evaluate", "--config", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'indx'" in err and "allowed: model, dataset" in err


def test_compare_two_evaluations(
    beir_dir: Path, tmp_path: Path, tiny_model_dir: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-q", "evaluate", "--model", "bm25", "--dataset", str(beir_dir), "--out", str(tmp_path / "bm25")]) == 0
    assert (
        main(
            [
                "-q",
                "evaluate",
                "--model",
                str(tiny_model_dir),
                "--dataset",
                str(beir_dir),
                "--out",
                str(tmp_path / "tiny"),
                "--save-index",
            ]
        )
        == 0
    )
    assert (tmp_path / "tiny" / "index.faiss").is_file()
    capsys.readouterr()
    assert (
        main(
            [
                "-q",
                "compare",
                str(tmp_path / "bm25"),
                str(tmp_path / "tiny"),
                "--dataset",
                str(beir_dir),
                "--out",
                str(tmp_path / "cmp"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert set(report["scores"]) == {"bm25", "tiny"}
    assert 0.0 <= report["p_values"]["bm25"]["tiny"]["ndcg@10"] <= 1.0
    assert all(v is not None and v > 0 for v in report["latency_ms"].values())
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| a | bm25 |" in capsys.readouterr().out


def test_score_under_torchrun_two_ranks_equals_one_process(beir_dir: Path, tmp_path: Path) -> None:
    """Two CPU ranks (gloo) share the chunks; rank 0 merges; same table as one process."""
    import os

    import pyarrow.parquet as pq

    cands = tmp_path / "c.trec"
    assert main(["-q", "candidates", "--dataset", str(beir_dir), "-k", "4", "--out", str(cands)]) == 0
    common = [
        "score",
        "--teacher",
        "bm25",
        "--dataset",
        str(beir_dir),
        "--candidates",
        str(cands),
        "--chunk-queries",
        "1",
    ]
    assert main(["-q", *common, "--out", str(tmp_path / "single")]) == 0
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            "-m",
            "irdistill.cli.main",
            "-q",
            *common,
            "--out",
            str(tmp_path / "ddp"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    shards = sorted(p.name for p in (tmp_path / "ddp").glob("shard-*.parquet"))
    assert shards == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    single = pq.read_table(tmp_path / "single" / "scores.parquet")
    ddp = pq.read_table(tmp_path / "ddp" / "scores.parquet")
    assert ddp.equals(single)


@pytest.mark.parametrize(
    ("teacher", "message"),
    [
        ("colbert", "unknown teacher 'colbert'; known: bm25, cross-encoder, cross-fit, dense, ensemble, listwise-llm"),
        ("{empty}", "not a model folder"),
    ],
)
def test_score_bad_teacher_exit_2(
    teacher: str, message: str, beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cands = tmp_path / "c.trec"
    assert main(["-q", "candidates", "--dataset", str(beir_dir), "-k", "2", "--out", str(cands)]) == 0
    (tmp_path / "empty").mkdir()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"teacher: cross-encoder\nmodel: {tmp_path / 'empty'}\n")
    spec = str(recipe) if teacher == "{empty}" else teacher
    code = main(
        [
            "-q",
            "score",
            "--teacher",
            spec,
            "--dataset",
            str(beir_dir),
            "--candidates",
            str(cands),
            "--out",
            str(tmp_path / "scores"),
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "scores" / "scores.parquet").exists()


def test_score_candidates_with_unknown_query(
    beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cands = tmp_path / "c.trec"
    cands.write_text("q999 Q0 d1 1 1.0 x\n")
    assert (
        main(
            [
                "-q",
                "score",
                "--teacher",
                "bm25",
                "--dataset",
                str(beir_dir),
                "--candidates",
                str(cands),
                "--out",
                str(tmp_path / "s"),
            ]
        )
        == 2
    )
    assert "query id 'q999' is not in" in capsys.readouterr().err


def test_import_scores_writes_a_store_that_trains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from irdistill.scores import read_scores

    tsv = tmp_path / "scores.tsv"
    tsv.write_text("3.5\t1.0\tq1\td1\td2\n3.5\t-0.5\tq1\td1\td3\n2.0\t0.25\tq2\td4\td2\n")
    out = tmp_path / "store"
    assert main(["-q", "import-scores", "--tsv", str(tsv), "--teacher", "ce", "--out", str(out)]) == 0
    assert "5 scores of teacher ce for 2 queries" in capsys.readouterr().out
    rows = [(r["qid"], r["pid"], r["score"], r["teacher"]) for r in read_scores(out).to_pylist()]
    # each (qid, pid) once, in order of first appearance (a line's positive before its negative)
    assert rows == [
        ("q1", "d1", 3.5, "ce"),
        ("q1", "d2", 1.0, "ce"),
        ("q1", "d3", -0.5, "ce"),
        ("q2", "d4", 2.0, "ce"),
        ("q2", "d2", 0.25, "ce"),
    ]
    # an existing store is kept unless --overwrite; a pair with two scores names both lines
    assert main(["import-scores", "--tsv", str(tsv), "--out", str(out)]) == 2
    assert "--overwrite replaces it" in capsys.readouterr().err
    tsv.write_text("3.5\t1.0\tq1\td1\td2\n3.0\t-0.5\tq1\td1\td3\n")
    assert main(["import-scores", "--tsv", str(tsv), "--out", str(out), "--overwrite"]) == 2
    assert "has score 3.5 on line 1 and 3.0 on line 2" in capsys.readouterr().err


def test_import_scores_text_layout_maps_texts_through_the_dataset(
    tmp_path: Path, beir_dir: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from irdistill.data import load_collection
    from irdistill.scores import read_scores

    collection = load_collection(beir_dir, split="test")
    qid = collection.query_ids[0]
    pos, neg = collection.positives(qid)[0], next(d for d in collection.doc_ids if d not in collection.qrels[qid])
    tsv = tmp_path / "text.tsv"
    tsv.write_text(
        f"2.5\t-1.0\t{collection.queries[qid]}\t{collection.corpus[pos].full_text()}\t"
        f"{collection.corpus[neg].full_text()}\n"
    )
    out = tmp_path / "store"
    args = ["-q", "import-scores", "--tsv", str(tsv), "--layout", "text", "--out", str(out)]
    assert main(args) == 2
    assert "--layout text needs --dataset" in capsys.readouterr().err
    assert main([*args, "--dataset", str(beir_dir), "--split", "test"]) == 0
    rows = [(r["qid"], r["pid"], r["score"]) for r in read_scores(out).to_pylist()]
    assert rows == [(qid, pos, 2.5), (qid, neg, -1.0)]


def test_score_with_a_teacher_model_on_the_command_line(
    beir_dir: Path, tmp_path: Path, tiny_model_dir: Path, cache_dir: Path
) -> None:
    """--teacher dense --teacher-model NAME scores without a YAML recipe; the store's fingerprint
    names the model; a YAML recipe with --teacher-model is refused in one line."""
    from irdistill.data import load_collection, write_run

    collection = load_collection(beir_dir)
    run = {q: {d: float(10 - i) for i, d in enumerate(collection.doc_ids[:3])} for q in collection.queries}
    write_run(run, tmp_path / "cands.trec")
    args = ["-q", "score", "--teacher", "dense", "--teacher-model", str(tiny_model_dir), "--teacher-option"]
    args += ["batch_size=4", "--dataset", str(beir_dir), "--candidates", str(tmp_path / "cands.trec")]
    assert main([*args, "--out", str(tmp_path / "scores")]) == 0
    manifest = (tmp_path / "scores" / "manifest.json").read_text()
    assert str(tiny_model_dir) in manifest or tiny_model_dir.name in manifest
    recipe = tmp_path / "t.yaml"
    recipe.write_text("teacher: bm25\n")
    refused = ["-q", "score", "--teacher", str(recipe), "--teacher-model", "m", "--dataset", str(beir_dir)]
    assert main([*refused, "--candidates", str(tmp_path / "cands.trec"), "--out", str(tmp_path / "s2")]) == 2
