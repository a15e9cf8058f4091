from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from irdistill.cli.main import main


def recipe(tmp_path: Path, beir_dir: Path, tiny_model_dir: Path, **extra: str) -> Path:
    text = f"""
dataset: {beir_dir}
out: {tmp_path / 'run'}
candidates: {{retriever: bm25, k: 5}}
teacher: bm25
train: {{student: {tiny_model_dir}, loss: margin-mse, sampler: random, batch_size: 2, epochs: 1,
         learning_rate: 0.001, max_seq_length: 32}}
evaluate: {{k: 8, metrics: [ndcg@10, recall@5]}}
fidelity: {{depth: 5}}
"""
    for key, value in extra.items():
        text += f"{key}: {value}\n"
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_run_chains_every_stage_and_skips_finished_ones(beir_dir: Path, tiny_model_dir: Path, tmp_path: Path,
                                                       cache_dir: Path, capsys: pytest.CaptureFixture[str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    import logging

    # the tiny folder's train split has one judged query; use the test split for both stages
    path = recipe(tmp_path, beir_dir, tiny_model_dir, train_split="test")
    assert main(["-q", "run", str(path)]) == 0
    out = tmp_path / "run"
    for name in ("candidates.test.trec", "scores.test/scores.parquet", "student/irdistill_training.json",
                 "eval/metrics.json", "eval/run.trec", "eval/fidelity.json"):
        assert (out / name).is_file(), name
    captured = capsys.readouterr()
    # -q: no progress bars. (sentence-transformers' model-card bar reads TQDM_DISABLE only when
    # tqdm is first imported, which in a test process happened long before main() set it.)
    bars = [b for b in re.split(r"[\r\n]", captured.err) if "%|" in b and "Computing widget examples" not in b]
    assert bars == []
    printed = captured.out
    summary = json.loads(printed[printed.index("{\n"):])
    assert set(summary["metrics"]) == {"ndcg@10", "recall@5"}
    assert -1.0 <= summary["fidelity"]["kendall_tau"] <= 1.0
    mtime = (out / "student" / "irdistill_training.json").stat().st_mtime
    with caplog.at_level(logging.INFO, logger="irdistill.workflows.pipeline"):
        assert main(["run", str(path)]) == 0
    assert (out / "student" / "irdistill_training.json").stat().st_mtime == mtime
    assert "stage train: skipped" in caplog.text
    assert "stage fidelity: skipped" in caplog.text
    assert re.search(r"run .*: finished in \d", caplog.text)


def test_run_recipe_errors(beir_dir: Path, tiny_model_dir: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    path = recipe(tmp_path, beir_dir, tiny_model_dir, colour="blue")
    assert main(["run", str(path)]) == 2
    assert "unknown key 'colour'" in capsys.readouterr().err
    path = recipe(tmp_path, beir_dir, tiny_model_dir)
    path.write_text(path.read_text().replace("loss: margin-mse", "loss: hinge"))
    assert main(["run", str(path)]) == 2
    assert "unknown loss 'hinge'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "candidates.train.trec").exists()  # failed before any stage ran
