"""SciFact test: the all-MiniLM-L6-v2 student before and after distillation, per method.

Usage:  IRDISTILL_DATA=../shared/data python eval/students_scifact.py --scores SCORES [--teacher-test-scores T]

SCORES is the teacher-score store of the SciFact train candidates (e.g. made by
`irdistill score --teacher <strongest teacher> --dataset beir/scifact/train ...`); the
teacher's own reranking of the test BM25 top 100 (T, e.g. runs/teachers/scifact-test/<teacher>)
gives the `teacher` row and the fidelity reference. Methods: untrained; infonce (qrels only);
margin-mse (random sampler); tas-balanced (TAS-Balanced sampler + dual-teacher loss, in-batch
teacher all-mpnet-base-v2); listwise-kl. Each row: nDCG@10, recall@100, Kendall tau and top-10
overlap with the teacher, paired t-test p-value against the untrained model (ranx), training
seconds and examples/s. Writes eval/results/students_scifact.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from irdistill.cli.config import build_config, load_yaml
from irdistill.data import load_collection
from irdistill.evaluation import compare_runs, evaluate_retrieval
from irdistill.evaluation.compare import RunEntry
from irdistill.evaluation.fidelity import teacher_fidelity
from irdistill.paths import write_text_atomic
from irdistill.pipeline import student_scores
from irdistill.teachers.store import read_scores, scores_to_run
from irdistill.train import TrainConfig, train_student

HERE = Path(__file__).parent
METHODS = {
    "infonce": {"loss": "infonce", "sampler": "random"},
    "margin-mse": {"loss": "margin-mse", "sampler": "random", "epochs": 1},
    "tas-balanced": {"loss": "tas-balanced", "sampler": "tas-balanced", "epochs": 1,
                     "inbatch_teacher": "sentence-transformers/all-mpnet-base-v2"},
    # one epoch of 3-passage lists (positive + 2 hardest negatives): under the pairwise runs' cost
    "listwise-kl": {"loss": "listwise-kl", "sampler": "random", "list_size": 3, "epochs": 1,
                    "temperature": 0.05},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scores", required=True, help="teacher scores of the train candidates")
    parser.add_argument("--teacher-test-scores", required=True, help="teacher scores of the test BM25 top 100")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--runs", default="runs/students/scifact")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    base = load_yaml(HERE / "recipes" / "scifact_student_base.yaml")
    test = load_collection("beir/scifact/test")
    teacher_path = Path(args.teacher_test_scores)
    teacher_run = scores_to_run(read_scores(teacher_path / "scores.parquet" if teacher_path.is_dir() else teacher_path))
    cands = {q: list(d) for q, d in teacher_run.items()}
    rows: dict[str, dict] = {}
    runs: dict[str, dict] = {}

    def evaluate(name: str, model: str, train_s: float | None, per_s: float | None) -> None:
        result = evaluate_retrieval(model, test, out=Path(args.runs) / name / "eval", show_progress_bar=False)
        fid = teacher_fidelity(student_scores(model, test, cands), teacher_run, k=10)
        runs[name] = result.run
        rows[name] = {"ndcg@10": round(result.metrics["ndcg@10"], 4),
                      "recall@100": round(result.metrics["recall@100"], 4),
                      "kendall_tau": round(fid["kendall_tau"], 4), "top10_overlap": round(fid["top10_overlap"], 4),
                      "train_seconds": train_s, "train_examples_per_s": per_s}

    evaluate("untrained", base["student"], None, None)
    from irdistill.evaluation import evaluate_run

    teacher_metrics = evaluate_run(test.qrels, teacher_run, ["ndcg@10", "recall@100"])
    rows["teacher"] = {k: round(v, 4) for k, v in teacher_metrics.items()}
    for name in args.methods:
        out = Path(args.runs) / name / "model"
        if not (out / "irdistill_training.json").is_file():  # a re-run reuses trained students
            cfg = build_config(TrainConfig, {**base, **METHODS[name], "scores": args.scores, "out": str(out)},
                               source=name)
            train_student(cfg, show_progress_bar=False)
        info = json.loads((out / "irdistill_training.json").read_text())
        evaluate(name, str(out), round(info["seconds"], 1), round(info["examples_per_second"], 2))
    comparison = compare_runs(test, [RunEntry(n, r) for n, r in runs.items()], ["ndcg@10"])
    for name in runs:
        if name != "untrained":
            rows[name]["p_value"] = comparison.p_values[name]["untrained"]["ndcg@10"]
    out = HERE / "results"
    write_text_atomic(out / "students_scifact.json", json.dumps(rows, indent=2) + "\n")
    lines = ["| method | nDCG@10 | recall@100 | Kendall tau | top-10 overlap | p vs untrained | train s | examples/s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r.get('ndcg@10', float('nan')):.4f} | {r.get('recall@100', float('nan')):.4f} | "
                     f"{r.get('kendall_tau', '')} | {r.get('top10_overlap', '')} | {r.get('p_value', '')} | "
                     f"{r.get('train_seconds', '')} | {r.get('train_examples_per_s', '')} |")
    write_text_atomic(out / "students_scifact.md", "Produced by `python eval/students_scifact.py`.\n\n"
                      + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
