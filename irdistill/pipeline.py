"""``irdistill run RECIPE.yaml``: candidates -> teacher scores -> student -> index -> evaluation.

Each stage writes plain files under ``out`` and is skipped when its output already exists,
so a re-run after an interruption continues where it stopped (teacher scoring resumes inside
its stage, training resumes from its last checkpoint)::

    out/candidates.<train split>.trec     BM25 / dense candidates of the training queries
    out/scores.<train split>/scores.parquet  teacher scores of candidates and judged positives
    out/student/                          the trained sentence-transformers model
    out/eval/                             run.trec, metrics.json, perf.json, table.md
    out/fidelity-scores.<test split>/     teacher scores of the test candidates
    out/eval/fidelity.json                student vs teacher agreement on test candidates

Recipe keys (:class:`RunConfig`)::

    dataset: beir/scifact          # the collection; train_split / test_split pick the splits
    out: runs/scifact-tasb
    candidates: {retriever: bm25, k: 100}
    teacher: teachers/ensemble_bm25_mpnet.yaml     # a name, a recipe path or a dict
    train: {student: sentence-transformers/all-MiniLM-L6-v2, loss: tas-balanced, ...}
    index: {kind: flat, params: {}}
    evaluate: {k: 1000, metrics: [ndcg@10, mrr@10, recall@100]}
    fidelity: {depth: 100}          # null to skip
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irdistill.errors import InputError
from irdistill.paths import write_text_atomic

logger = logging.getLogger(__name__)


@dataclass
class RunConfig:
    dataset: str = ""
    out: str = ""
    train_split: str = "train"
    test_split: str = "test"
    candidates: dict[str, Any] = field(default_factory=lambda: {"retriever": "bm25", "k": 100})
    teacher: Any = None
    train: dict[str, Any] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=lambda: {"kind": "flat", "params": {}})
    evaluate: dict[str, Any] = field(default_factory=dict)
    fidelity: dict[str, Any] | None = field(default_factory=lambda: {"depth": 100})

    def validate(self) -> None:
        for key in ("dataset", "out", "teacher"):
            if not getattr(self, key):
                raise InputError(f"run: {key} is required")
        if not self.train.get("student"):
            raise InputError("run: train.student is required")
        for key in ("dataset", "split", "scores", "out"):
            if key in self.train:
                raise InputError(f"run: train.{key} is set by the pipeline; remove it from the recipe")
        unknown = set(self.candidates) - {"retriever", "k", "index", "query_batch_size"}
        if unknown:
            raise InputError(f"run: unknown candidates key {sorted(unknown)[0]!r}; allowed: retriever, k, "
                             "index, query_batch_size")
        unknown = set(self.index) - {"kind", "params"}
        if unknown:
            raise InputError(f"run: unknown index key {sorted(unknown)[0]!r}; allowed: kind, params")


def _candidates_dict(run: dict[str, dict[str, float]], collection: Any, depth: int | None,
                     positives: bool) -> dict[str, list[str]]:
    out = {}
    for qid, docs in run.items():
        ranked = [d for d, _ in sorted(docs.items(), key=lambda x: (-x[1], x[0]))][:depth]
        if positives:
            pos = sorted(d for d, r in collection.qrels.get(qid, {}).items() if r > 0)
            ranked = pos + [d for d in ranked if d not in set(pos)]
        out[qid] = ranked
    return out


def run_pipeline(cfg: RunConfig, *, show_progress_bar: bool = True) -> dict[str, Any]:
    """Run (or continue) every stage of a recipe; returns the evaluation summary."""
    from irdistill.candidates import mine_candidates, write_candidates
    from irdistill.data import load_collection, read_run
    from irdistill.evaluation import evaluate_retrieval
    from irdistill.teachers.factory import build_teacher
    from irdistill.teachers.store import read_scores, score_candidates, scores_to_run
    from irdistill.train import TrainConfig, train_student

    cfg.validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    train_c = load_collection(cfg.dataset, split=cfg.train_split)
    test_c = load_collection(cfg.dataset, split=cfg.test_split)
    # check the student recipe now, not after an hour of teacher scoring
    train_cfg = TrainConfig(**{**cfg.train, "dataset": cfg.dataset, "split": cfg.train_split,
                               "scores": str(out / f"scores.{cfg.train_split}"), "out": str(out / "student")})
    train_cfg.validate()

    cand_path = out / f"candidates.{cfg.train_split}.trec"
    if cand_path.is_file():
        logger.info("stage candidates: %s exists, skipped", cand_path)
    else:
        write_candidates(train_c, cand_path, cfg.candidates.get("retriever", "bm25"), cfg.candidates.get("k", 100),
                         index=cfg.candidates.get("index", "flat"),
                         query_batch_size=cfg.candidates.get("query_batch_size", 256),
                         show_progress_bar=show_progress_bar)

    teacher = build_teacher(cfg.teacher, train_c)
    cands = _candidates_dict(read_run(cand_path), train_c, None, positives=True)
    score_candidates(teacher, train_c, cands, out / f"scores.{cfg.train_split}", show_progress_bar=show_progress_bar)

    student = out / "student"
    if (student / "irdistill_training.json").is_file():
        logger.info("stage train: %s exists, skipped", student)
    else:
        train_student(train_cfg, show_progress_bar=show_progress_bar)

    eval_dir = out / "eval"
    if (eval_dir / "metrics.json").is_file():
        logger.info("stage evaluate: %s exists, skipped", eval_dir)
        summary = json.loads((eval_dir / "metrics.json").read_text())
    else:
        result = evaluate_retrieval(str(student), test_c, index=cfg.index.get("kind", "flat"),
                                    index_params=cfg.index.get("params") or {}, out=eval_dir,
                                    show_progress_bar=show_progress_bar, **cfg.evaluate)
        summary = json.loads((eval_dir / "metrics.json").read_text())
        logger.info("student on %s/%s: %s", cfg.dataset, cfg.test_split, result.metrics)

    if cfg.fidelity is not None and not (eval_dir / "fidelity.json").is_file():
        from irdistill.evaluation.fidelity import teacher_fidelity

        depth = int(cfg.fidelity.get("depth", 100))
        test_run = mine_candidates(test_c, cfg.candidates.get("retriever", "bm25"), k=depth,
                                   exclude_positives=False, show_progress_bar=show_progress_bar)
        test_cands = _candidates_dict(test_run, test_c, depth, positives=False)
        path = score_candidates(build_teacher(cfg.teacher, test_c), test_c, test_cands,
                                out / f"fidelity-scores.{cfg.test_split}", show_progress_bar=show_progress_bar)
        teacher_run = scores_to_run(read_scores(path))
        student_run = student_scores(str(student), test_c, test_cands)
        fidelity = teacher_fidelity(student_run, teacher_run, k=10)
        write_text_atomic(eval_dir / "fidelity.json", json.dumps(fidelity, indent=2) + "\n")
        logger.info("teacher fidelity: %s", fidelity)
    if (eval_dir / "fidelity.json").is_file():
        summary["fidelity"] = json.loads((eval_dir / "fidelity.json").read_text())
    return summary


def student_scores(model: str | os.PathLike[str], collection: Any, candidates: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """A dense model's scores of each query's candidates (corpus embeddings through the cache)."""
    import numpy as np

    from irdistill.encoding import DenseEncoder

    encoder = DenseEncoder(str(model), show_progress_bar=False)
    docs = encoder.encode(collection.doc_ids, collection.doc_texts(), side="document").embeddings
    qids = list(candidates)
    queries = encoder.encode(qids, [collection.queries[q] for q in qids], side="query").embeddings
    row = {d: i for i, d in enumerate(collection.doc_ids)}
    out: dict[str, dict[str, float]] = {}
    for i, qid in enumerate(qids):
        rows = [row[d] for d in candidates[qid]]
        scores = docs[rows] @ queries[i]
        out[qid] = {d: float(s) for d, s in zip(candidates[qid], np.asarray(scores), strict=True)}
    return out
