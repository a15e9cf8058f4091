"""benchmarks/gpu_check.sh --cpu: the GPU check's smoke mode on tiny random models, so the
script cannot rot between GPU runs (about half a minute: two fresh Python processes)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.smoke
def test_gpu_check_cpu_smoke_mode(
    tiny_model_dir: Path, tiny_cross_encoder_dir: Path, beir_dir: Path, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IRDISTILL_CACHE": str(tmp_path / "cache")}
    args = ["--cpu", "--model", str(tiny_model_dir), "--cross-encoder", str(tiny_cross_encoder_dir)]
    args += ["--dataset", str(beir_dir), "--train-dataset", str(beir_dir), "--results", str(results)]
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), *args], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data = json.loads((results / "gpu_check.json").read_text())
    steps = data["steps"]
    assert list(steps) == ["faiss", "evaluate", "cross_encoder", "listwise_vllm", "train_bf16"]
    for name, row in steps.items():  # every step ran, or says why not
        assert row["status"] == "ok" or row["status"].startswith("skipped: "), (name, row)
    assert steps["faiss"]["flat_ids_identical"] is True
    assert 0 <= steps["evaluate"]["ndcg@10"] <= 1
    assert steps["cross_encoder"]["bfloat16"]["pairs_per_s"] > 0
    assert steps["train_bf16"]["examples_per_s"] > 0
    if steps["listwise_vllm"]["status"] != "ok":
        assert "vllm" in steps["listwise_vllm"]["status"].lower() or "gpu" in steps["listwise_vllm"]["status"].lower()
    table = (results / "gpu_check.md").read_text()
    assert "| listwise_vllm | skipped: " in table or "| listwise_vllm | ok |" in table
