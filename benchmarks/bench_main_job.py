"""The main job's wall time on torch and on a faster inference backend: `irdistill run RECIPE` as is,
against the same recipe with ``backend:`` set on every forward-only model it runs (the dense and
cross-encoder teachers, and the student's evaluation and fidelity encodings). Training stays on torch.

Each run is a fresh process with an empty cache and an empty output folder, so the backend's one-time
costs (the graph exports, ``auto``'s probe, also for the student the run has just trained) are inside
its wall time. The two sides alternate, --repeats times; the median is kept.

Usage:  IRDISTILL_DATA=../shared/data python benchmarks/bench_main_job.py [--recipe eval/recipes/scifact_quick.yaml]
        [--backend auto] [--repeats 3]
Writes eval/results/bench_main_job.{json,md} (or under --results). Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from bench_evaluate import timed  # the script's folder is on sys.path

RESULTS = Path(__file__).resolve().parent.parent / "eval" / "results"
TEACHERS_WITH_BACKEND = ("dense", "cross-encoder", "sparse")


def with_backend(recipe: dict[str, Any], backend: str) -> dict[str, Any]:
    """``recipe`` with ``backend`` on its teacher (every ensemble member that takes one) and evaluation."""
    out = json.loads(json.dumps(recipe))

    def visit(spec: dict[str, Any]) -> None:
        if spec.get("teacher") in TEACHERS_WITH_BACKEND:
            spec["backend"] = backend
        for member in spec.get("members") or []:
            visit(member)

    visit(out["teacher"])
    out["evaluate"] = {**(out.get("evaluate") or {}), "backend": backend}
    return out


def run_once(recipe: dict[str, Any], folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    env = dict(os.environ, IRDISTILL_CACHE=str(folder / "cache"), TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "irdistill.cli.main", "-q", "run", str(path), "--out", str(folder / "out")]
    seconds, _ = timed(cmd, env)
    metrics = json.loads((folder / "out" / "eval" / "metrics.json").read_text())
    return {"seconds": seconds, "metrics": metrics.get("metrics", metrics)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="eval/recipes/scifact_quick.yaml")
    parser.add_argument("--backend", default="auto", help="the backend side's inference backend")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side, alternating (median kept)")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the .json / .md (default eval/results)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    base = yaml.safe_load(Path(args.recipe).read_text())
    sides = {"torch": base, args.backend: with_backend(base, args.backend)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="irdistill-mainjob-") as tmp:
        for repeat in range(args.repeats):
            for name, recipe in sides.items():
                result = run_once(recipe, Path(tmp) / f"{name}-{repeat}")
                runs[name].append(result)
                print(f"repeat {repeat + 1}: {name} {result['seconds']:.1f} s {result['metrics']}", flush=True)

    rows = {
        name: {
            "seconds": round(statistics.median(r["seconds"] for r in results), 1),
            "times": [round(r["seconds"], 1) for r in results],
            "ndcg@10": round(float(results[-1]["metrics"].get("ndcg@10", float("nan"))), 4),
        }
        for name, results in runs.items()
    }
    before, after = rows["torch"]["seconds"], rows[args.backend]["seconds"]
    result = {
        "recipe": args.recipe,
        "backend": args.backend,
        "before_s": before,
        "after_s": after,
        "ratio": round(after / before, 3),
        "repeats": args.repeats,
        "sides": rows,
        "cpu_count": os.cpu_count(),
    }
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "bench_main_job.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"The main job's wall time, `irdistill run {args.recipe}`: as written (torch) and with "
        f"`backend: {args.backend}` on its teacher members and evaluation (training stays on torch). Fresh "
        f"process, empty cache and output folder per run (exports and auto's probe included), "
        f"{os.cpu_count()} CPU cores, median of {args.repeats} alternating run(s) per side. Produced by "
        f"`python benchmarks/bench_main_job.py --recipe {args.recipe} --backend {args.backend} "
        f"--repeats {args.repeats}`.",
        "",
        "| side | wall s (median) | runs | student nDCG@10 |",
        "|---|---|---|---|",
        *(
            f"| {name} | {row['seconds']:.1f} | {', '.join(f'{t:.0f}' for t in row['times'])} | {row['ndcg@10']:.4f} |"
            for name, row in rows.items()
        ),
        "",
        f"After / before: {after / before:.2f}.",
    ]
    (results_dir / "bench_main_job.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
