"""``irdistill run`` killed with SIGKILL at every stage boundary and inside training, then re-run.

One uninterrupted run is the reference. A second run in another folder is killed when each
stage reports that it finished, and once inside training right after a checkpoint is complete;
after each kill the same command is started again, and the last start runs to the end. The
final outputs must equal the reference's: candidates, teacher scores, student weights, the
training loss curve (the resumed curve continues the one before the kill), the evaluation
run, its metrics and the teacher fidelity.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import WORDS, write_beir

pytestmark = pytest.mark.slow

TOPICS = [WORDS[i : i + 4] for i in range(0, 48, 4)]  # 12 topics of 4 content words


def collection(folder: Path) -> Path:
    """24 documents (2 per topic), 12 train queries, 6 test queries: enough for several steps."""
    docs = {
        f"d{i}": (f"{t[0]} {t[1]}", f"{' '.join(t)} the {t[(i // 12) % 4]} data in {WORDS[i + 2]} cells")
        for i, t in ((i, TOPICS[i % 12]) for i in range(24))
    }
    queries = {f"q{i}": f"{TOPICS[i % 12][i // 12]} {TOPICS[i % 12][2]} {TOPICS[i % 12][3]}" for i in range(18)}
    train = [(f"q{i}", f"d{i % 12}", 1) for i in range(12)]
    test = [(f"q{i}", f"d{(i % 12) + 12}", 1) for i in range(12, 18)]
    return write_beir(folder, docs, queries, {"train": train, "test": test})


def write_recipe(folder: Path, data: Path, model: Path) -> Path:
    path = folder / "recipe.yaml"
    path.write_text(f"""dataset: {data}
out: {folder / "unused"}
candidates: {{retriever: bm25, k: 8}}
teacher:
  teacher: ensemble
  normalization: zscore
  members: [{{teacher: bm25}}, {{teacher: dense, model: {model}}}]
train: {{student: {model}, loss: margin-mse, sampler: random, epochs: 3, batch_size: 4,
        learning_rate: 1.0e-3, max_seq_length: 32, seed: 7, save_steps: 2, logging_steps: 1}}
evaluate: {{metrics: [ndcg@10, recall@10], k: 24}}
fidelity: {{depth: 8}}
""")
    return path


# Runs the CLI with a logging handler that SIGKILLs the process itself the moment a record
# containing the trigger is logged: a kill "after stage X" then lands exactly there, not up to
# one poll later (a fast stage, such as fidelity on this tiny collection, could finish first).
KILL_ON_LOG = """
import logging, os, signal, sys
trigger = sys.argv.pop(1)

class KillOnRecord(logging.Handler):
    def emit(self, record):
        if trigger and trigger in record.getMessage():
            sys.stderr.write(record.getMessage() + "\\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

logging.getLogger("irdistill").addHandler(KillOnRecord())
from irdistill.cli.main import main
sys.exit(main())
"""


def command(recipe: Path, out: Path, trigger: str = "") -> list[str]:
    return [sys.executable, "-c", KILL_ON_LOG, trigger, "run", str(recipe), "--out", str(out)]


def environment(cache: Path) -> dict[str, str]:
    env = dict(
        os.environ,
        IRDISTILL_CACHE=str(cache),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    env.pop("IRDISTILL_DATA", None)
    return env


def run_until(recipe: Path, out: Path, env: dict[str, str], trigger: str | None, timeout: float = 300) -> str:
    """Start ``irdistill run``; SIGKILL it once ``trigger`` holds (a log text, which the process
    acts on itself, or ``checkpoint`` for the first complete training checkpoint, which this
    function polls for); return what it logged."""
    log = out.parent / f"{out.name}.log"
    on_log = trigger if trigger not in (None, "checkpoint") else ""
    with log.open("wb") as sink:
        proc = subprocess.Popen(command(recipe, out, on_log), env=env, stdout=subprocess.DEVNULL, stderr=sink)
    checkpoints = out / ".student.checkpoints"
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            text = log.read_text(errors="replace")
            fired = trigger == "checkpoint" and any(
                (c / "trainer_state.json").is_file() for c in checkpoints.glob("checkpoint-*")
            )
            if fired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"no {trigger!r} within {timeout} s:\n{text[-3000:]}")
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text(errors="replace")
    if on_log and proc.returncode == -signal.SIGKILL and on_log in text:
        return text
    if trigger is not None:
        raise AssertionError(f"the run ended (status {proc.returncode}) before {trigger!r}:\n{text[-3000:]}")
    assert proc.returncode == 0, text[-3000:]
    return text


def weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    files = sorted(folder.rglob("*.safetensors"))
    assert files, f"no weights under {folder}"
    return {f"{f.relative_to(folder)}:{k}": v for f in files for k, v in load_file(str(f)).items()}


def loss_curve(out: Path) -> list[tuple[int, float]]:
    record = json.loads((out / "student" / "irdistill_training.json").read_text())
    return [(e["step"], e["loss"]) for e in record["log_history"] if "loss" in e]


# (what is being killed, the trigger that kills it)
KILLS = [
    ("after candidates", "stage candidates: done"),
    ("after teacher scores", "stage teacher scores: done"),
    ("inside training, after a checkpoint", "checkpoint"),
    ("after training", "stage train: done"),
    ("after evaluation", "stage index + evaluate: done"),
]


def test_run_killed_at_every_stage_resumes_to_identical_outputs(tmp_path: Path, tiny_model_dir: Path) -> None:
    import pyarrow.parquet as pq

    data = collection(tmp_path / "data")
    recipe = write_recipe(tmp_path, data, tiny_model_dir)
    env = environment(tmp_path / "cache")
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run_until(recipe, reference, env, None)

    logs = []
    for what, trigger in KILLS:
        logs.append((what, run_until(recipe, resumed, env, trigger)))
    final = run_until(recipe, resumed, env, None)

    # each re-run skipped what the killed one had finished, and training resumed from its checkpoint
    assert "stage candidates: skipped" in logs[1][1]
    assert "already complete" in logs[2][1]  # the score store
    # the kill lands within ~0.05 s of the first complete checkpoint; on a fast machine the
    # trainer may have saved the next one (every 2 of 9 steps) by then, so any checkpoint
    # before the end counts, but training must resume from one, not restart
    resumed_from = re.search(r"resuming from \S*checkpoint-(\d+)", logs[3][1])
    assert resumed_from is not None and int(resumed_from.group(1)) in (2, 4, 6, 8)
    assert "stage train: skipped" in logs[4][1]
    assert "stage index + evaluate: skipped" in final and "stage fidelity: done" in final

    # identical outputs, stage by stage
    assert (resumed / "candidates.train.trec").read_text() == (reference / "candidates.train.trec").read_text()
    assert pq.read_table(resumed / "scores.train" / "scores.parquet").equals(
        pq.read_table(reference / "scores.train" / "scores.parquet")
    )
    ref_w, res_w = weights(reference / "student"), weights(resumed / "student")
    assert ref_w.keys() == res_w.keys()
    for key in ref_w:
        np.testing.assert_allclose(res_w[key], ref_w[key], rtol=0, atol=1e-6, err_msg=key)
    ref_curve, res_curve = loss_curve(reference), loss_curve(resumed)
    assert [s for s, _ in res_curve] == [s for s, _ in ref_curve] == list(range(1, len(ref_curve) + 1))
    np.testing.assert_allclose([v for _, v in res_curve], [v for _, v in ref_curve], rtol=1e-5)
    assert (resumed / "eval" / "run.trec").read_text() == (reference / "eval" / "run.trec").read_text()
    ref_metrics = json.loads((reference / "eval" / "metrics.json").read_text())["metrics"]
    assert json.loads((resumed / "eval" / "metrics.json").read_text())["metrics"] == ref_metrics
    assert json.loads((resumed / "eval" / "fidelity.json").read_text()) == json.loads(
        (reference / "eval" / "fidelity.json").read_text()
    )
