from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from irdistill.cli.main import main


def recipe(tmp_path: Path, beir_dir: Path, tiny_model_dir: Path, **extra: str) -> Path:
    text = f"""
dataset: {beir_dir}
out: {tmp_path / "run"}
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


def test_run_chains_every_stage_and_skips_finished_ones(
    beir_dir: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    # the tiny folder's train split has one judged query; use the test split for both stages
    path = recipe(tmp_path, beir_dir, tiny_model_dir, train_split="test")
    assert main(["-q", "run", str(path)]) == 0
    out = tmp_path / "run"
    for name in (
        "candidates.test.trec",
        "scores.test/scores.parquet",
        "student/irdistill_training.json",
        "eval/metrics.json",
        "eval/run.trec",
        "eval/fidelity.json",
    ):
        assert (out / name).is_file(), name
    captured = capsys.readouterr()
    # -q: no progress bars. (sentence-transformers' model-card bar reads TQDM_DISABLE only when
    # tqdm is first imported, which in a test process happened long before main() set it.)
    bars = [b for b in re.split(r"[\r\n]", captured.err) if "%|" in b and "Computing widget examples" not in b]
    assert bars == []
    printed = captured.out
    summary = json.loads(printed[printed.index("{\n") :])
    assert set(summary["metrics"]) == {"ndcg@10", "recall@5"}
    assert -1.0 <= summary["fidelity"]["kendall_tau"] <= 1.0
    mtime = (out / "student" / "irdistill_training.json").stat().st_mtime
    with caplog.at_level(logging.INFO, logger="irdistill.workflows.pipeline"):
        assert main(["run", str(path)]) == 0
    assert (out / "student" / "irdistill_training.json").stat().st_mtime == mtime
    assert "stage train: skipped" in caplog.text
    assert "stage fidelity: skipped" in caplog.text
    assert re.search(r"run .*: finished in \d", caplog.text)


def test_run_recipe_errors(
    beir_dir: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = recipe(tmp_path, beir_dir, tiny_model_dir, colour="blue")
    assert main(["run", str(path)]) == 2
    assert "unknown key 'colour'" in capsys.readouterr().err
    path = recipe(tmp_path, beir_dir, tiny_model_dir)
    path.write_text(path.read_text().replace("loss: margin-mse", "loss: hinge"))
    assert main(["run", str(path)]) == 2
    assert "unknown loss 'hinge'" in capsys.readouterr().err
    path = recipe(tmp_path, beir_dir, tiny_model_dir)
    path.write_text(path.read_text().replace("evaluate: {k: 8,", "evaluate: {backend: tensorrt, k: 8,"))
    assert main(["run", str(path)]) == 2
    assert "run: evaluate.backend: unknown backend 'tensorrt'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "candidates.train.trec").exists()  # failed before any stage ran


def test_run_builds_a_distill_vq_index_of_the_student(
    beir_dir: Path, tiny_model_dir: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """index.kind distill-vq: the index workflow builds it from the trained student (trained on the
    training queries' texts), saves it under eval/index and evaluates it; metrics.json comes last."""
    import faiss

    path = recipe(
        tmp_path,
        beir_dir,
        tiny_model_dir,
        train_split="test",
        index="{kind: distill-vq, params: {m: 4, nbits: 2, nlist: 2, nprobe: 2, epochs: 1}}",
    )
    assert main(["-q", "run", str(path)]) == 0
    out = tmp_path / "run" / "eval"
    info = json.loads((out / "index" / "index.json").read_text())
    assert info["kind"] == "distill-vq" and info["bytes_per_vector"] == 1  # 4 codes of 2 bits
    assert type(faiss.read_index(str(out / "index" / "index.faiss"))).__name__ == "IndexIVFPQ"
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["index"] == "distill-vq" and set(summary["metrics"]) == {"ndcg@10", "recall@5"}
    assert summary["metrics"] == json.loads((out / "index" / "metrics.json").read_text())["metrics"]
    assert (out / "run.trec").read_text() == (out / "index" / "run.trec").read_text()


def test_run_trains_a_sparse_student_into_a_sparse_index(
    beir_dir: Path, tiny_model_dir: Path, tiny_mlm_dir: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """train.student_kind inference-free: the sparse student trains from the teacher's margins, the
    index stage builds its sparse index, fidelity scores it with CSR dot products."""
    from irdistill.students.sparse import is_sparse_model

    path = recipe(tmp_path, beir_dir, tiny_model_dir, train_split="test")
    path.write_text(
        path.read_text().replace(
            f"student: {tiny_model_dir}, loss: margin-mse",
            f"student: {tiny_mlm_dir}, student_kind: inference-free, loss: margin-mse",
        )
    )
    assert main(["-q", "run", str(path)]) == 0
    out = tmp_path / "run"
    assert is_sparse_model(out / "student")
    record = json.loads((out / "student" / "irdistill_training.json").read_text())
    assert record["config"]["student_kind"] == "inference-free" and record["examples"] > 0
    summary = json.loads((out / "eval" / "metrics.json").read_text())
    assert summary["index"] == "sparse" and (out / "eval" / "index" / "index.npz").is_file()
    fidelity = json.loads((out / "eval" / "fidelity.json").read_text())
    assert -1.0 <= fidelity["kendall_tau"] <= 1.0
    # a dense index for a sparse student is refused before any stage runs
    path.write_text(path.read_text() + "index: {kind: flat}\n")
    assert main(["run", str(path)]) == 2


def test_a_finished_stage_logs_its_time_and_the_peak_memory_so_far(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from irdistill.memory import peak_rss_mb
    from irdistill.workflows.pipeline import _stage

    with caplog.at_level(logging.INFO, logger="irdistill.workflows.pipeline"), _stage("demo") as run:
        assert run
    match = re.search(r"stage demo: done in [\d.]+ s; peak RSS so far ([\d.]+) GiB", caplog.text)
    assert match, caplog.text
    assert float(match.group(1)) == pytest.approx(peak_rss_mb() / 1024, abs=0.01)  # this process's peak


def test_the_teacher_is_freed_before_training(
    tmp_path: Path, beir_dir: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import weakref

    from irdistill.teachers import factory
    from irdistill.workflows import training

    built: list[weakref.ref[object]] = []
    alive_at_training: list[bool] = []
    build, train = factory.build_teacher, training.train_student

    def build_teacher(*args: object, **kwargs: object) -> object:
        teacher = build(*args, **kwargs)
        built.append(weakref.ref(teacher))
        return teacher

    def train_student(*args: object, **kwargs: object) -> object:
        alive_at_training.append(any(ref() is not None for ref in built))
        return train(*args, **kwargs)

    monkeypatch.setattr(factory, "build_teacher", build_teacher)
    monkeypatch.setattr(training, "train_student", train_student)
    path = recipe(tmp_path, beir_dir, tiny_model_dir, train_split="test")
    assert main(["-q", "run", str(path)]) == 0
    assert built and alive_at_training == [False]


def test_precision_twins_share_every_stage_before_training(
    beir_dir: Path, tiny_model_dir: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eval/precision_twins.py: the fp32 twin reuses the bf16 run's candidates and teacher scores
    (its teacher stage is skipped), each student records its precision, and the comparison is written."""
    import sys

    from irdistill import precision

    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: "avx512_bf16")  # bf16 allowed on any CI CPU
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "eval"))
    import precision_twins

    path = recipe(tmp_path, beir_dir, tiny_model_dir, train_split="test")
    runs, results = tmp_path / "twins", tmp_path / "results"
    monkeypatch.setattr(
        sys, "argv", ["precision_twins.py", "--recipe", str(path), "--runs", str(runs), "--results", str(results)]
    )
    precision_twins.main()
    store = "scores.test/scores.parquet"
    assert (runs / "fp32" / store).read_bytes() == (runs / "bf16" / store).read_bytes()
    result = json.loads((results / "precision_twins.json").read_text())
    assert result["precision_recorded"] == {"bf16": "bf16", "fp32": "fp32"}
    assert -1.0 <= result["kendall_tau_bf16_vs_fp32"] <= 1.0 and result["queries"] >= 1
    assert "Kendall τ" in (results / "precision_twins.md").read_text()
