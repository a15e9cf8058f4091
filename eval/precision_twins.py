"""Twin students: one recipe trained in bf16 and in fp32 from the same teacher scores, compared.

Runs ``--recipe`` (default the quick recipe, ``eval/recipes/scifact_quick.yaml``) with
``train.precision: bf16`` into ``--runs/bf16``, copies its candidates and teacher-score stores into
``--runs/fp32`` and runs it again with ``train.precision: fp32``: the two students see the same rows
in the same order and differ only in training arithmetic. Then, on the recipe's test queries:

- each student's nDCG@10 and the paired t-test over queries (one seed: a difference of arithmetic,
  not a distribution over seeds);
- Kendall's τ-b between the two students' scores of the documents both retrieved, per query, and
  their top-10 overlap (:func:`irdistill.evaluation.fidelity.teacher_fidelity`, the fp32 twin as the
  reference).

Each run folder resumes stage by stage (``irdistill run``). Writes
``eval/results/precision_twins.{md,json}``.

    IRDISTILL_DATA=../shared/data python eval/precision_twins.py [--recipe eval/recipes/scifact_quick.yaml]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from irdistill.config import build_config, load_yaml
from irdistill.data import load_collection, read_run
from irdistill.evaluation import paired_t_test, per_query_scores
from irdistill.evaluation.fidelity import teacher_fidelity
from irdistill.paths import write_text_atomic
from irdistill.workflows.pipeline import RunConfig, run_pipeline

HERE = Path(__file__).parent


def shared_stages(cfg: RunConfig) -> tuple[str, ...]:
    """What the fp32 twin takes from the bf16 run's folder: everything before training."""
    return (f"candidates.{cfg.train_split}.trec", f"scores.{cfg.train_split}", f"fidelity-scores.{cfg.test_split}")


def run(recipe: dict, out: Path, precision: str) -> dict:
    values = {**recipe, "out": str(out), "train": {**recipe["train"], "precision": precision}}
    return run_pipeline(build_config(RunConfig, values, source=f"{precision} twin"), show_progress_bar=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="eval/recipes/scifact_quick.yaml")
    parser.add_argument("--runs", default="runs/precision-twins")
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    recipe = load_yaml(args.recipe)
    runs = Path(args.runs)
    summaries = {"bf16": run(recipe, runs / "bf16", "bf16")}
    (runs / "fp32").mkdir(parents=True, exist_ok=True)
    for name in shared_stages(build_config(RunConfig, dict(recipe), source=str(args.recipe))):
        source, target = runs / "bf16" / name, runs / "fp32" / name
        if source.is_dir() and not target.exists():
            shutil.copytree(source, target)
        elif source.is_file() and not target.exists():
            shutil.copy2(source, target)
    summaries["fp32"] = run(recipe, runs / "fp32", "fp32")
    test = load_collection(recipe["dataset"], split=recipe.get("test_split", "test"))
    student_runs = {p: read_run(runs / p / "eval" / "run.trec") for p in ("bf16", "fp32")}
    per_query = {p: per_query_scores(test.qrels, r, "ndcg@10") for p, r in student_runs.items()}
    agreement = teacher_fidelity(student_runs["bf16"], student_runs["fp32"], k=10)
    recorded = {p: json.loads((runs / p / "student" / "irdistill_training.json").read_text()) for p in ("bf16", "fp32")}
    result = {
        "recipe": str(args.recipe),
        "ndcg@10": {p: summaries[p]["metrics"]["ndcg@10"] for p in summaries},
        "recall@100": {p: summaries[p]["metrics"].get("recall@100") for p in summaries},
        "p_paired_t": paired_t_test(per_query["bf16"], per_query["fp32"]),
        "kendall_tau_bf16_vs_fp32": agreement["kendall_tau"],
        "top10_overlap_bf16_vs_fp32": agreement["top10_overlap"],
        "queries": int(agreement["queries"]),
        "train_seconds": {p: recorded[p]["seconds"] for p in recorded},
        "precision_recorded": {p: recorded[p]["precision"] for p in recorded},
    }
    results = Path(args.results)
    write_text_atomic(results / "precision_twins.json", json.dumps(result, indent=2) + "\n")
    lines = [
        "# Twin students: bf16 against fp32 training, the same rows",
        "",
        f"`python eval/precision_twins.py --recipe {args.recipe}`: the recipe run with `train.precision: bf16`, then "
        "again with `fp32` from the bf16 run's candidates and teacher scores (the same rows in the same order). "
        "τ and top-10 overlap: per test query, over the documents both students retrieved, bf16 against fp32, "
        "averaged. One seed: the difference is the arithmetic's, not a spread over seeds. Training seconds are "
        "the two runs' own, one after the other on the same machine (one run each: not a timing comparison).",
        "",
        "| precision | nDCG@10 | recall@100 | train s |",
        "|---|---|---|---|",
    ]
    for p in ("fp32", "bf16"):
        recall = result["recall@100"][p]
        shown = "-" if recall is None else f"{recall:.4f}"  # a recipe without recall@100 among its metrics
        lines.append(f"| {p} | {result['ndcg@10'][p]:.4f} | {shown} | {result['train_seconds'][p]:.1f} |")
    p_value = result["p_paired_t"]
    lines += [
        "",
        f"bf16 against fp32 on {result['queries']} test queries: Kendall τ {result['kendall_tau_bf16_vs_fp32']:.4f}, "
        f"top-10 overlap {result['top10_overlap_bf16_vs_fp32']:.4f}; nDCG@10 difference "
        f"{result['ndcg@10']['bf16'] - result['ndcg@10']['fp32']:+.4f} "
        + (
            "(every query's nDCG@10 is the same in both: nothing to test)."
            if p_value is None
            else f"(paired t-test over queries p {p_value:.3f})."
        ),
    ]
    write_text_atomic(results / "precision_twins.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
