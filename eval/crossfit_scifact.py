"""A cross-fitted teacher member on SciFact, measured on the dev split (issue 37, item 7).

The committed teacher (BM25 + all-mpnet-base-v2, z-scored per query, ``eval/teacher_scores``) has
seen no judgement. This script adds a member that has, without handing the student its own labels
back: two all-MiniLM-L6-v2 bi-encoders are trained on the judgements of ``train:fit`` (the train
split without its dev part), each without one fold of those queries (the folds are a salted hash
of the query text, :func:`irdistill.teachers.crossfit.text_fold`), with the ``bm25-lists`` recipe
of ``eval/students_scifact.py`` (labels and BM25's negatives, no teacher) at its budget. A query is
scored by the member that never saw it (:class:`irdistill.teachers.crossfit.CrossFitTeacher`); the
156 dev queries were seen by neither.

Steps (each skipped when its output exists, so the script resumes):

1. train the two members into ``--runs/fold0`` and ``fold1``;
2. score every pair of the committed train store (each train query's BM25 top 100 and its judged
   positives) with the cross-fit teacher: ``eval/teacher_scores/scifact/train-xfit-fit``;
3. the three-member teacher, equal weights: ``(z(bm25) + z(mpnet) + z(cross-fit)) / 3`` per query,
   z over the query's pairs as the committed ensemble computed them, with ``z(mpnet)`` recovered
   from the committed ensemble and BM25's store (``2 * ensemble - z(bm25)``, checked to be a z-score
   for every query): ``eval/teacher_scores/scifact/train-ens3-fit``;
4. the dev table: nDCG@10, recall@100 and MRR@10 of each teacher reranking the dev BM25 top 100,
   and each minus the committed teacher with a paired bootstrap 95 % CI over the dev queries.

The students that learn from ``train-ens3-fit`` are rows of ``eval/students_scifact.py --on dev``
(``hybrid-kl-v2-ens3``). The weights are fixed before looking (one third each), not tuned on dev.

    python eval/crossfit_scifact.py [--attention-dropout 0]
Writes eval/results/crossfit_teacher_dev.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from irdistill.evaluation import evaluate_run, per_query_scores
from irdistill.paths import write_text_atomic

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import students_scifact as table  # noqa: E402  (the students table's recipe, budget and dev candidates)

FOLDS = 2
STORE_XFIT = table.TEACHER_SCORES / "train-xfit-fit"
STORE_ENS3 = table.TEACHER_SCORES / "train-ens3-fit"
METRICS = table.METRICS
logger = logging.getLogger("crossfit_scifact")


def member_recipe(args: argparse.Namespace) -> dict[str, Any]:
    """The ``bm25-lists`` cell's training recipe at the students table's dev budget."""
    from irdistill.config import load_yaml

    return {
        **load_yaml(HERE / "recipes" / "scifact_student_base.yaml"),
        **table.METHODS["bm25-lists"],
        "epochs": args.epochs,
        "max_seq_length": args.max_seq_length,
        "precision": args.precision,
        "attention_dropout": args.attention_dropout,
        "seed": 1,
        "split": "train:fit",
    }


def train_members(args: argparse.Namespace) -> list[Path]:
    from irdistill.data import load_collection
    from irdistill.workflows.teacher_training import train_crossfit_members

    fit = load_collection(args.dataset, split="train:fit")
    return train_crossfit_members(member_recipe(args), fit, args.runs, folds=FOLDS)


def score_pairs(members: list[Path], args: argparse.Namespace) -> None:
    """Every pair of the committed train store, scored by the cross-fit teacher, into STORE_XFIT."""
    from irdistill.data import load_collection
    from irdistill.scores.table import read_scores
    from irdistill.teachers.crossfit import CrossFitTeacher

    target = STORE_XFIT / "scores.parquet"
    if target.is_file():
        return
    pairs = read_scores(table.TEACHER_SCORES / "train" / "scores.parquet")
    train = load_collection(args.dataset, split="train")
    teacher = CrossFitTeacher(
        [str(m) for m in members], collection=train, max_seq_length=args.eval_max_seq_length, show_progress_bar=True
    )
    qids, pids = pairs["qid"].to_pylist(), pairs["pid"].to_pylist()
    scores = teacher.score([train.queries[q] for q in qids], [train.corpus[p].full_text() for p in pids])
    out = pa.table({"qid": qids, "pid": pids, "score": scores, "teacher": [teacher.name] * len(qids)})
    STORE_XFIT.mkdir(parents=True, exist_ok=True)
    pq.write_table(out, STORE_XFIT / ".scores.parquet.partial")
    manifest = {
        "teacher": teacher.config(),
        "pairs_of": "eval/teacher_scores/scifact/train",
        "members_trained_on": "beir/scifact/train:fit, each without its fold (text_fold, 2 folds)",
        "member_recipe": {k: v for k, v in member_recipe(args).items() if k != "scores"} | {"negatives": "bm25"},
        "max_seq_length": args.eval_max_seq_length,
        "num_pairs": len(qids),
    }
    write_text_atomic(STORE_XFIT / "manifest.json", json.dumps(manifest, indent=1, default=str) + "\n")
    (STORE_XFIT / ".scores.parquet.partial").rename(target)


def _by_query(path: Path) -> dict[str, dict[str, float]]:
    from irdistill.scores.table import read_scores, scores_to_run

    return scores_to_run(read_scores(path / "scores.parquet"))


def zscore(scores: dict[str, float]) -> dict[str, float]:
    from irdistill.teachers.ensemble import normalize_scores

    keys = list(scores)
    values = normalize_scores(np.array([scores[k] for k in keys]), "zscore")
    return dict(zip(keys, values.tolist(), strict=True))


def members_by_query() -> dict[str, dict[str, dict[str, float]]]:
    """``member -> qid -> pid -> score`` over the committed store's pairs: each member z-scored per
    query, mpnet recovered from the committed ensemble (``2 * ensemble - z(bm25)``)."""
    ensemble = _by_query(table.TEACHER_SCORES / "train")
    bm25 = _by_query(table.TEACHER_SCORES / "train-bm25")
    xfit = _by_query(STORE_XFIT)
    out: dict[str, dict[str, dict[str, float]]] = {"bm25": {}, "mpnet": {}, "cross-fit": {}}
    for qid, scores in ensemble.items():
        z_bm25 = zscore(bm25[qid])
        mpnet = {p: 2 * s - z_bm25[p] for p, s in scores.items()}
        values = np.array(list(mpnet.values()))
        if abs(values.mean()) > 1e-6 or abs(values.std() - 1) > 1e-6:
            raise SystemExit(f"query {qid}: 2 * ensemble - z(bm25) is not a z-score; the stores disagree")
        out["bm25"][qid], out["mpnet"][qid], out["cross-fit"][qid] = z_bm25, mpnet, zscore(xfit[qid])
    return out


def write_ensemble(members: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The equal-weight three-member teacher, written to STORE_ENS3 (once) and returned."""
    names = ("bm25", "mpnet", "cross-fit")
    run = {q: {p: sum(members[m][q][p] for m in names) / 3 for p in members["bm25"][q]} for q in members["bm25"]}
    if not (STORE_ENS3 / "scores.parquet").is_file():
        rows = [(q, p, s) for q, hits in run.items() for p, s in hits.items()]
        name = "ensemble-zscore:bm25+dense:all-mpnet-base-v2+cross-fit:2xbm25-lists"
        out = pa.table(
            {
                "qid": [r[0] for r in rows],
                "pid": [r[1] for r in rows],
                "score": [r[2] for r in rows],
                "teacher": [name] * len(rows),
            }
        )
        STORE_ENS3.mkdir(parents=True, exist_ok=True)
        pq.write_table(out, STORE_ENS3 / ".scores.parquet.partial")
        manifest = {
            "teacher": name,
            "members": [
                "eval/teacher_scores/scifact/train-bm25",
                "mpnet from eval/teacher_scores/scifact/train",
                "eval/teacher_scores/scifact/train-xfit-fit",
            ],
            "normalization": "zscore per query over the store's pairs",
            "weights": [1 / 3, 1 / 3, 1 / 3],
            "num_pairs": len(rows),
        }
        write_text_atomic(STORE_ENS3 / "manifest.json", json.dumps(manifest, indent=1) + "\n")
        (STORE_ENS3 / ".scores.parquet.partial").rename(STORE_ENS3 / "scores.parquet")
    return run


def paired_bootstrap(a: dict[str, float], b: dict[str, float], resamples: int = 10_000) -> dict[str, Any]:
    """``a - b`` over the queries: the mean, a percentile bootstrap 95 % CI and two-sided p."""
    queries = sorted(set(a) | set(b))
    difference = np.array([a.get(q, 0.0) - b.get(q, 0.0) for q in queries])
    rng = np.random.default_rng(0)
    draws = difference[rng.integers(0, len(queries), (resamples, len(queries)))].mean(axis=1)
    p = min(1.0, 2 * (1 + min(int((draws <= 0).sum()), int((draws >= 0).sum()))) / (1 + resamples))
    low, high = np.quantile(draws, [0.025, 0.975])
    return {"diff": round(float(difference.mean()), 4), "ci95": [round(float(low), 4), round(float(high), 4)], "p": p}


def dev_table(args: argparse.Namespace, ensemble3: dict[str, dict[str, float]], members: dict) -> dict[str, Any]:
    dev, committed = table.dev_candidates(args.dataset, str(table.TEACHER_SCORES / "train"))
    teachers = {
        "committed (bm25 + mpnet)": committed,
        "bm25": members["bm25"],
        "mpnet": members["mpnet"],
        "cross-fit member": members["cross-fit"],
        "bm25 + mpnet + cross-fit": ensemble3,
    }
    rows: dict[str, Any] = {}
    reference = per_query_scores(dev.qrels, committed, "ndcg@10")
    for name, run in teachers.items():
        run = {q: {p: run[q][p] for p in committed[q]} for q in committed}  # the dev BM25 top 100
        values = evaluate_run(dev.qrels, run, METRICS)
        mine = per_query_scores(dev.qrels, run, "ndcg@10")
        rows[name] = {
            **{m: round(float(values[m]), 4) for m in METRICS},
            "per_query_ndcg@10": mine,
            "vs_committed": None if name.startswith("committed") else paired_bootstrap(mine, reference),
        }
    return rows


def write(rows: dict[str, Any], results: Path, args: argparse.Namespace) -> None:
    write_text_atomic(results / "crossfit_teacher_dev.json", json.dumps(rows, indent=1) + "\n")
    dropout = "" if args.attention_dropout is None else f" --attention-dropout {args.attention_dropout:g}"
    lines = [
        "# A cross-fitted teacher member, SciFact dev",
        "",
        f"`python eval/crossfit_scifact.py{dropout}`"
        f" (its docstring has the steps). Members: 2 all-MiniLM-L6-v2 bi-encoders trained with the `bm25-lists` "
        f"recipe ({args.epochs} epochs, {args.max_seq_length} tokens, {args.precision}) on `train:fit` without one "
        f"fold each, scoring at {args.eval_max_seq_length} tokens. Each teacher reranks the BM25 top 100 of the 156 "
        "dev queries, which no member saw. Δ: minus the committed teacher, paired bootstrap over the dev queries "
        "(10,000 resamples). Weights fixed before looking (equal thirds).",
        "",
        "| teacher | nDCG@10 | recall@100 | MRR@10 | Δ nDCG@10 vs committed [95 % CI] p |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        versus = row["vs_committed"]
        cell = (
            "-"
            if not versus
            else f"{versus['diff']:+.4f} [{versus['ci95'][0]:+.4f}, {versus['ci95'][1]:+.4f}] {versus['p']:.3g}"
        )
        lines.append(f"| {name} | {row['ndcg@10']:.4f} | {row['recall@100']:.4f} | {row['mrr@10']:.4f} | {cell} |")
    write_text_atomic(results / "crossfit_teacher_dev.md", "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beir/scifact")
    parser.add_argument("--runs", default="runs/crossfit/scifact-fit", help="member folders (fold0, fold1)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-seq-length", type=int, default=128, help="members' training length")
    parser.add_argument("--eval-max-seq-length", type=int, default=256, help="members' scoring length")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--attention-dropout", type=float, help="members' attention dropout (default: MiniLM's)")
    parser.add_argument("--results", default=str(table.RESULTS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    members = train_members(args)
    score_pairs(members, args)
    by_member = members_by_query()
    ensemble3 = write_ensemble(by_member)
    write(dev_table(args, ensemble3, by_member), Path(args.results), args)


if __name__ == "__main__":
    main()
