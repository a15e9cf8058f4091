"""SciFact test (or the dev split, ``--on dev``): the all-MiniLM-L6-v2 student per training method,
at one budget, over seeds.

Usage::

    IRDISTILL_DATA=../shared/data python eval/students_scifact.py \\
        [--methods infonce hybrid ...] [--seeds 1 2 3] [--epochs 3] [--max-seq-length 128] \\
        [--eval-max-seq-length 256]

``--scores`` is the teacher-score store of the SciFact train candidates and
``--teacher-test-scores`` the same teacher's scores of the test BM25 top 100. Both default to the
stores committed under ``eval/teacher_scores/scifact`` (made by the main job,
``irdistill run eval/recipes/scifact_distill.yaml``: BM25 + all-mpnet-base-v2, z-scored; see the
README there), so that every sitting trains on the same teacher scores.

Every trained method gets the same budget: the recipe ``eval/recipes/scifact_student_base.yaml``
(learning rate, warm-up, batch size), ``--epochs`` epochs and ``--max-seq-length`` tokens in
training for every method alike, and the same ``--seeds``; every row, ``untrained`` included, is
evaluated at ``--eval-max-seq-length`` tokens. Rows: ``untrained``, ``teacher`` (its reranking of
the test BM25 top 100), ``infonce`` (judgements only: the sentence-transformers default recipe,
one candidate negative a row drawn once, in-batch negatives), ``margin-mse``, ``tas-balanced``,
``listwise-kl``, ``hybrid``, ``hybrid-denoised`` (hybrid without the pairs whose teacher margin
is negative), ``hybrid-beta0.07`` and ``hybrid-beta0.2`` (hybrid with the contrastive weight β lowered
from 1, so that the teacher's term makes about a half and a quarter of the student's gradient; see
``benchmarks/loss_balance.py``), ``hybrid-kl`` (listwise-kl's lists, KL plus InfoNCE on the judged
positive) and its control ``infonce-lists`` (InfoNCE over the same lists, the KL weighted 0: the
teacher only picks the hard negatives), and ``bm25-lists`` (the same with BM25's ranking of the same
train pairs picking the negatives, ``eval/teacher_scores/scifact/train-bm25``, which ``--scores`` does
not replace: labels and BM25, no teacher). These rows are pinned to the loss and batches their
committed cells trained with (``FIRST_KL``, ``FIRST_TAS``); ``listwise-kl-v2``, ``hybrid-kl-v2``
(KL weight 1, 3, 7: ``-a3``, ``-a7``) and ``tas-balanced-v2`` are the fixed versions;
``listwise-kl-v2-exclude`` and ``listwise-kl-v2-t0.05`` two repairs of the KL alone (its own list
only; the student's softmax at 0.05), and ``hybrid-kl-v2-ens3`` hybrid-kl-v2 learning from a teacher
with a cross-fitted third member (``eval/crossfit_scifact.py``, dev only). Per row:
nDCG@10 mean ± sd over the seeds, recall@100, MRR@10, Kendall τ with the teacher on the test
candidates, training examples/s, and the difference from ``bm25-lists`` (the label-only reference)
and from ``untrained`` with its 95 % CI and p over queries and seeds
(:mod:`irdistill.evaluation.seeds`), Holm-corrected over each column.

``--precision`` (default ``auto``: bf16 on a CPU with native bf16, :mod:`irdistill.precision`) is the
training precision of every cell of a sitting. bf16 cells are keyed ``<budget>-bf16`` and tabled in
``students_scifact_bf16.md``; fp32 cells keep their keys and ``students_scifact.md``; the untrained
and teacher rows do not train and are shared. ``eval/precision_scifact.py`` sets the two side by side.

``--on dev`` is where methods and settings are chosen: every trained row learns from the train
split without its fixed dev part (``train:fit``, 653 queries; :mod:`irdistill.data.holdout`) and is
measured on the 156 dev queries (``train:dev``), the teacher row reranking their BM25 top 100 with
the scores of the train store. Its cells, runs and tables are separate (``students_scifact_dev*``,
``runs/students/scifact-dev``); the test table is made once, with the settings dev chose.

Resumable: every (method, seed) is trained into ``--runs/<method>/<budget>/seed<S>/model`` (training
itself resumes from its checkpoints) and evaluated into ``.../eval``; a finished cell is recorded
in ``eval/results/students_scifact_cells.json`` at once, and the table is rebuilt from the cells
after each one. A table can be completed over several sittings; ``--methods`` and ``--seeds``
pick what to run now.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
from pathlib import Path
from typing import Any

from irdistill.config import build_config, load_yaml
from irdistill.data import load_collection
from irdistill.evaluation import evaluate_retrieval, evaluate_run, per_query_scores
from irdistill.evaluation.fidelity import teacher_fidelity
from irdistill.paths import update_json_table, write_text_atomic
from irdistill.precision import PRECISIONS, resolve_precision
from irdistill.scores.table import read_scores, scores_to_run
from irdistill.workflows.pipeline import student_scores
from irdistill.workflows.training import TrainConfig, train_student

HERE = Path(__file__).parent
RESULTS = HERE / "results"
TEACHER_SCORES = HERE / "teacher_scores" / "scifact"
"""The teacher's stores every cell reads, committed so that cells run in different sittings (on
different machines) learn from the same scores; ``eval/teacher_scores/README.md`` says how they
were made."""
METRICS = ["ndcg@10", "recall@100", "mrr@10"]
FIRST_KL = {"in_batch_target": "floor", "temperature_scaling": "squared"}
"""The listwise KL as the committed ``listwise-kl`` / ``hybrid-kl`` cells were trained: the other
rows' passages at the query's floor in the target and a τ² factor (0.04 at τ ≈ 0.2)."""
FIRST_TAS = {"n_clusters": 32, "distinct_passages": False}
"""TAS-Balanced batches as the committed cells were trained: 32 clusters of about 25 queries, and
passages free to repeat in a batch (42 % of the rows met their judged positive elsewhere in their
batch: ``eval/results/tas_batches_scifact.md``)."""
METHODS: dict[str, dict[str, Any]] = {
    "infonce": {"loss": "infonce", "sampler": "random"},
    "margin-mse": {"loss": "margin-mse", "sampler": "random"},
    "tas-balanced": {
        "loss": "tas-balanced",
        "sampler": "tas-balanced",
        "inbatch_teacher": "sentence-transformers/all-mpnet-base-v2",
        **FIRST_TAS,
    },
    # positive + 3 hard + 4 random negatives, in-batch negatives, temperature from the teacher's spread;
    # the KL as first built (FIRST_KL): the other rows' passages at the query's floor in the target, τ²
    "listwise-kl": {"loss": "listwise-kl", "sampler": "random", "list_size": 8, **FIRST_KL},
    "hybrid": {"loss": "hybrid", "sampler": "tas-balanced", **FIRST_TAS},
    # the same, with the pairs the teacher orders against the label dropped from both terms
    # (RocketQA's denoised hard negatives): about 15 % of the TAS-Balanced rows on SciFact train
    "hybrid-denoised": {"loss": "hybrid", "sampler": "tas-balanced", "disagreement_weight": 0.0, **FIRST_TAS},
    # listwise-kl's lists (positive + 3 hard + 4 random negatives, in-batch negatives) with InfoNCE
    # on the judged positive added (RocketQAv2's listwise distillation joined with the labels)
    "hybrid-kl": {"loss": "hybrid-kl", "sampler": "random", "list_size": 8, **FIRST_KL},
    # the control of hybrid-kl: the same lists and InfoNCE, the KL term weighted 0, so the teacher
    # only picks each list's hard negatives; hybrid-kl minus this is what fitting its scores adds
    "infonce-lists": {"loss": "hybrid-kl", "sampler": "random", "list_size": 8, "distill_weight": 0.0, **FIRST_KL},
    # the same lists ranked by BM25 instead of the teacher (its scores of the same train pairs,
    # eval/teacher_scores/scifact/train-bm25): labels and BM25's negatives, no teacher anywhere;
    # infonce-lists minus this is what the teacher's choice of negatives adds
    "bm25-lists": {
        "loss": "hybrid-kl",
        "sampler": "random",
        "list_size": 8,
        "distill_weight": 0.0,
        "scores": str(TEACHER_SCORES / "train-bm25"),
        **FIRST_KL,
    },
    # hybrid with the teacher's term given a real share of the gradient: at beta 1 the contrastive
    # term makes 93 % of the student's gradient norm on the first batches (eval/results/
    # loss_balance_scifact.md); beta 0.07 evens the two, beta 0.2 leaves the teacher about a quarter
    "hybrid-beta0.07": {"loss": "hybrid", "sampler": "tas-balanced", "beta": 0.07, **FIRST_TAS},
    "hybrid-beta0.2": {"loss": "hybrid", "sampler": "tas-balanced", "beta": 0.2, **FIRST_TAS},
    # the KL as it is now (irdistill.losses.ListwiseKLLoss): no mass on the other rows' passages
    # (listwise-kl) or the KL over the query's own list with the in-batch negatives left to InfoNCE
    # (hybrid-kl), and no τ² shrink below τ = 1
    "listwise-kl-v2": {"loss": "listwise-kl", "sampler": "random", "list_size": 8},
    "hybrid-kl-v2": {"loss": "hybrid-kl", "sampler": "random", "list_size": 8},
    # the same with the KL weighted 3 and 7: about 30 % and 50 % of the student's gradient at the
    # start (12 % at 1; benchmarks/loss_balance.py), the weights dev chooses among
    "hybrid-kl-v2-a3": {"loss": "hybrid-kl", "sampler": "random", "list_size": 8, "distill_weight": 3.0},
    "hybrid-kl-v2-a7": {"loss": "hybrid-kl", "sampler": "random", "list_size": 8, "distill_weight": 7.0},
    # listwise-kl-v2 fell below untrained on dev (0.5985 against 0.6737): at the student temperature
    # read from the teacher's spread (about 0.2 on cosines in [-1, 1]) a target with no mass on the
    # 248 in-batch passages asks for gaps the cosine range cannot give. Two candidate repairs, chosen
    # on dev: the KL over the query's own list only, or the student's softmax at InfoNCE's 0.05
    "listwise-kl-v2-exclude": {
        "loss": "listwise-kl",
        "sampler": "random",
        "list_size": 8,
        "in_batch_target": "exclude",
    },
    "listwise-kl-v2-t0.05": {"loss": "listwise-kl", "sampler": "random", "list_size": 8, "student_temperature": 0.05},
    # hybrid-kl-v2 learning from a teacher with a third member trained on judgements, cross-fitted so
    # that no query is scored by a member that saw it (eval/crossfit_scifact.py; dev only: its members
    # trained on train:fit)
    "hybrid-kl-v2-ens3": {
        "loss": "hybrid-kl",
        "sampler": "random",
        "list_size": 8,
        "scores": str(TEACHER_SCORES / "train-ens3-fit"),
    },
    # TAS-Balanced batches as they are now: clusters of about 4 batches, no passage twice in a batch
    "tas-balanced-v2": {
        "loss": "tas-balanced",
        "sampler": "tas-balanced",
        "inbatch_teacher": "sentence-transformers/all-mpnet-base-v2",
        "n_clusters": None,  # the base recipe's 32 replaced by clusters of about 4 batches
    },
}
CHOSEN_ON = {
    m: "test"
    for m in (
        "infonce",
        "margin-mse",
        "tas-balanced",
        "listwise-kl",
        "hybrid",
        "hybrid-denoised",
        "hybrid-kl",
        "infonce-lists",
        "bm25-lists",
        "hybrid-beta0.07",
        "hybrid-beta0.2",
    )
}
"""The split on which each method's settings were chosen. The first methods' settings (and the main
recipe's choice of hybrid-kl) were read off the test table; the v2 rows are chosen on dev."""
USES_TEACHER = {
    "untrained": False,
    "teacher": True,
    "infonce": False,
    "margin-mse": True,
    "tas-balanced": True,
    "listwise-kl": True,
    "hybrid": True,
    "hybrid-denoised": True,
    "hybrid-kl": True,
    "infonce-lists": True,  # the teacher's ranking picks the hard negatives; its scores are not fit
    "bm25-lists": False,
    "hybrid-beta0.07": True,
    "hybrid-beta0.2": True,
    "listwise-kl-v2": True,
    "hybrid-kl-v2": True,
    "hybrid-kl-v2-a3": True,
    "hybrid-kl-v2-a7": True,
    "tas-balanced-v2": True,
    "listwise-kl-v2-exclude": True,
    "listwise-kl-v2-t0.05": True,
    "hybrid-kl-v2-ens3": True,
}


def student_tag(budget: dict[str, Any]) -> str:
    """``-<folder name>`` of a start model other than the base recipe's (``--student``), else empty:
    the untrained row and every cell depend on it."""
    student = budget.get("student")
    return "" if not student else "-" + re.sub(r"[^A-Za-z0-9.]+", "-", Path(str(student).rstrip("/")).name)


def base_tag(budget: dict[str, Any]) -> str:
    """``e<epochs>-len<train tokens>``, plus ``-eval<tokens>`` when evaluation cuts elsewhere, plus the
    :func:`student_tag`."""
    tag = f"e{budget['epochs']}-len{budget['max_seq_length']}"
    evaluated = budget.get("eval_max_seq_length") or budget["max_seq_length"]
    tag = tag if evaluated == budget["max_seq_length"] else f"{tag}-eval{evaluated}"
    return tag + student_tag(budget)


def training_suffix(budget: dict[str, Any]) -> str:
    """``-bf16`` for cells trained in bf16, ``-attn<p>`` for cells trained with the attention dropout
    set to ``p``, ``-lr<rate>`` for a learning rate other than the base recipe's (cells at the
    defaults keep the keys they had before these were settings)."""
    dropout, rate = budget.get("attention_dropout"), budget.get("learning_rate")
    return (
        ("-bf16" if budget.get("precision") == "bf16" else "")
        + ("" if dropout is None else f"-attn{dropout:g}")
        + ("" if rate is None else f"-lr{rate:g}")
    )


def budget_tag(budget: dict[str, Any]) -> str:
    """:func:`base_tag` and the :func:`training_suffix`."""
    return base_tag(budget) + training_suffix(budget)


def cell_key(method: str, seed: int | None, budget: dict[str, Any]) -> str:
    """Rows that do not train (``untrained``, ``teacher``) are keyed without the training precision."""
    return f"{method}|{base_tag(budget)}" if seed is None else f"{method}|{budget_tag(budget)}|seed{seed}"


def table_name(budget: dict[str, Any]) -> str:
    """``students_scifact`` for the fp32 table, ``students_scifact_bf16`` for the bf16 one; ``_dev``
    after ``students_scifact`` for the dev split's; then the student's tag, ``_e<epochs>`` where
    not 3, and the training suffix (each table holds one budget's cells)."""
    on = "_dev" if budget.get("on") == "dev" else ""
    epochs = "" if budget.get("epochs", 3) == 3 else f"-e{budget['epochs']}"  # the committed tables are at 3
    return f"students_scifact{on}" + (student_tag(budget) + epochs + training_suffix(budget)).replace("-", "_")


def cells_name(on: str) -> str:
    """The cells file of the test (``students_scifact_cells.json``) or the dev split."""
    return "students_scifact_dev_cells.json" if on == "dev" else "students_scifact_cells.json"


def dev_candidates(dataset: str, scores: str, k: int = 100) -> tuple[Any, dict[str, dict[str, float]]]:
    """The dev part of the train split and the teacher's run over its BM25 top ``k`` (judged
    positives included where BM25 ranks them there, as in the test store), read from the committed
    train store, which holds every such pair: the main job's candidates (the top ``k`` without the
    positives) and every judged positive."""
    from irdistill.candidates import mine_candidates

    dev = load_collection(dataset, split="train:dev")
    path = Path(scores)
    stored = scores_to_run(read_scores(path / "scores.parquet" if path.is_dir() else path))
    bm25 = mine_candidates(dev, "bm25", k=k, exclude_positives=False, show_progress_bar=False)
    run = {}
    for qid, hits in bm25.items():
        missing = [p for p in hits if p not in stored.get(qid, {})]
        if missing:
            raise SystemExit(f"{scores}: dev query {qid} lacks teacher scores of {len(missing)} BM25 candidates")
        run[qid] = {p: stored[qid][p] for p in hits}
    return dev, run


def evaluate_cell(
    model: str, test: Any, cands: dict[str, list[str]], teacher_run: dict, out: Path, max_seq_length: int | None
) -> dict[str, Any]:
    result = evaluate_retrieval(
        model, test, out=out, max_seq_length=max_seq_length, show_progress_bar=False, metrics=METRICS
    )
    fidelity = teacher_fidelity(student_scores(model, test, cands, max_seq_length=max_seq_length), teacher_run, k=10)
    return {
        **{m: result.metrics[m] for m in METRICS},
        "kendall_tau": fidelity["kendall_tau"],
        "per_query_ndcg@10": per_query_scores(test.qrels, result.run, "ndcg@10"),
    }


def mean_per_query(cells: list[dict[str, Any]]) -> dict[str, float]:
    queries = cells[0]["per_query_ndcg@10"]
    return {q: statistics.fmean(c["per_query_ndcg@10"].get(q, 0.0) for c in cells) for q in queries}


def texts_per_row(method: str) -> int | None:
    """Texts the student encodes for one training row: the query and its list, or query, positive
    and negative (``None`` for the rows that do not train)."""
    if method not in METHODS:
        return None
    return 1 + METHODS[method]["list_size"] if METHODS[method].get("list_size") else 3


LABEL_ONLY = "bm25-lists"
"""The label-only reference every distilled row is compared with: the same lists, sampler, steps
and negatives redrawn each epoch as the list methods, drawn from BM25's ranking; no teacher."""
EQUIVALENCE_MARGIN = 0.01
"""nDCG@10 within which two rows are called level (TOST), fixed before looking."""


def per_seed_runs(cells: dict[str, Any], method: str, budget: dict[str, Any], seeds: list[int]) -> dict[int, Any]:
    """``seed -> per-query nDCG@10`` of ``method``'s recorded cells among ``seeds``."""
    out = {}
    for seed in seeds:
        cell = cells.get(cell_key(method, seed, budget))
        if cell is not None:
            out[seed] = cell["per_query_ndcg@10"]
    return out


def seed_aware(
    cells: dict[str, Any], budget: dict[str, Any], seeds: list[int], method: str, other: str
) -> dict[str, Any] | None:
    """``method - other`` over queries and the seeds both have (``irdistill.evaluation.seeds``);
    a row that does not train (``untrained``) stands for itself at every seed. ``None`` below two
    shared seeds."""
    from irdistill.evaluation.seeds import compare_over_seeds

    mine = per_seed_runs(cells, method, budget, seeds)
    if other in METHODS:
        theirs = per_seed_runs(cells, other, budget, seeds)
    else:
        fixed = cells.get(cell_key(other, None, budget))
        theirs = {s: fixed["per_query_ndcg@10"] for s in mine} if fixed else {}
    if len(set(mine) & set(theirs)) < 2:
        return None
    return compare_over_seeds(mine, theirs, resamples=10_000, margin=EQUIVALENCE_MARGIN).brief()


def build_table(cells: dict[str, Any], budget: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    from irdistill.evaluation.seeds import holm

    by_method: dict[str, list[dict[str, Any]]] = {}
    for key, cell in cells.items():
        method, tag, *seed = key.split("|")
        if (tag == budget_tag(budget) and seed and int(seed[0][4:]) in seeds) or (not seed and tag == base_tag(budget)):
            by_method.setdefault(method, []).append(cell)
    table: dict[str, Any] = {}
    for method in ["untrained", "teacher", *METHODS]:
        group = by_method.get(method)
        if not group:
            continue
        ndcg = [c["ndcg@10"] for c in group]
        row = {
            "ndcg@10": round(statistics.fmean(ndcg), 4),
            "ndcg@10_sd": round(statistics.stdev(ndcg), 4) if len(ndcg) > 1 else 0.0,
            "recall@100": round(statistics.fmean(c["recall@100"] for c in group), 4),
            "mrr@10": round(statistics.fmean(c["mrr@10"] for c in group), 4),
            "seeds": len(group) if method in METHODS else 0,
            "epochs": budget["epochs"] if method in METHODS else 0,
            "uses_teacher": USES_TEACHER[method],
            "p_vs_infonce": None,
            "p_vs_untrained": None,
            "kendall_tau": (
                round(statistics.fmean(c["kendall_tau"] for c in group), 4)
                if all(c.get("kendall_tau") is not None for c in group)
                else None
            ),
            "train_examples_per_s": (
                round(statistics.fmean(c["train_examples_per_s"] for c in group), 2)
                if all("train_examples_per_s" in c for c in group)
                else None
            ),
            "texts_per_row": texts_per_row(method),
        }
        if method in METHODS:
            row["seed_ndcg@10"] = [round(c["ndcg@10"], 4) for c in group]
            if budget.get("on") != "dev":  # the dev table is where choices are made
                row["chosen_on"] = CHOSEN_ON.get(method, "dev")
            versus = {
                other: seed_aware(cells, budget, seeds, method, other) if other != method else None
                for other in ("infonce", "untrained", LABEL_ONLY)
            }  # each bootstrap once: the p columns and the comparison objects read the same result
            row["p_vs_infonce"] = versus["infonce"]["p"] if versus["infonce"] else None
            row["p_vs_untrained"] = versus["untrained"]["p"] if versus["untrained"] else None
            for other, key in ((LABEL_ONLY, "vs_label_only"), ("untrained", "vs_untrained")):
                if versus[other]:
                    row[key] = dict(versus[other])
        table[method] = row
    for key in ("vs_label_only", "vs_untrained"):  # Holm over each family of the table
        family = {m: r[key]["p"] for m, r in table.items() if key in r}
        for m, adjusted in holm(family).items():
            table[m][key]["p_holm"] = float(f"{adjusted:.3g}")
    return table


def _p(value: float | None) -> str:
    """A p-value as the table prints it: ``-`` when undefined, ``<0.0001`` below that."""
    if value is None:
        return "-"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def same_seeds(cells: dict[str, Any], budget: dict[str, Any], seeds: list[int], a: str, b: str) -> str | None:
    """``a`` against ``b`` on those of ``seeds`` both have: the per-seed nDCG@10 pairs, the mean
    difference and, from two shared seeds, its 95 % CI and p over queries and seeds
    (:func:`seed_aware`); ``None`` when no seed is shared."""
    seeds = [s for s in seeds if cell_key(a, s, budget) in cells and cell_key(b, s, budget) in cells]
    if not seeds:
        return None
    ga = [cells[cell_key(a, s, budget)] for s in seeds]
    gb = [cells[cell_key(b, s, budget)] for s in seeds]
    pairs = ", ".join(f"{x['ndcg@10']:.4f} / {y['ndcg@10']:.4f}" for x, y in zip(ga, gb, strict=True))
    diff = statistics.fmean(x["ndcg@10"] - y["ndcg@10"] for x, y in zip(ga, gb, strict=True))
    found = seed_aware(cells, budget, seeds, a, b)
    test = (
        f", 95 % CI over queries and seeds [{found['ci95'][0]:+.4f}, {found['ci95'][1]:+.4f}], p {_p(found['p'])}"
        if found
        else " (one seed: no test over seeds)"
    )
    return (
        f"`{a}` against `{b}` on the seeds both have ({', '.join(map(str, seeds))}): nDCG@10 {pairs} per seed, "
        f"mean difference {diff:+.4f}{test}."
    )


def write_tables(
    folder: Path, table: dict[str, Any], budget: dict[str, Any], seeds: list[int], cells: dict[str, Any] | None = None
) -> None:
    name = table_name(budget)
    # one row per method, then the name of the label-only reference the vs_label_only objects compare with
    write_text_atomic(folder / f"{name}.json", json.dumps({**table, "label_only": LABEL_ONLY}, indent=2) + "\n")
    precision = budget.get("precision") or "fp32"
    dropout = budget.get("attention_dropout")
    dev = budget.get("on") == "dev"
    options = "" if dropout is None else f" --attention-dropout {dropout:g}"
    if budget.get("student"):
        options += f" --student {budget['student']}"
    if budget.get("learning_rate") is not None:
        options += f" --learning-rate {budget['learning_rate']:g}"
    split = "dev (156 train queries; models train on the other 653, `train:fit`)" if dev else "test"
    queries = "156 dev queries" if dev else "300 queries"
    lines = [
        f"# Students on SciFact {split}: one budget, several seeds"
        + (" (bf16 training)" if precision == "bf16" else "")
        + ("" if dropout is None else f" (attention dropout {dropout:g})")
        + ("" if not budget.get("student") else f" (student `{budget['student']}`)")
        + ("" if budget.get("learning_rate") is None else f" (learning rate {budget['learning_rate']:g})"),
        "",
        f"Produced by `python eval/students_scifact.py --precision {precision}{' --on dev' if dev else ''}"
        f"{options}` "
        "(see its docstring for the inputs). "
        f"Every trained method in {precision}: {budget['epochs']} epochs, texts cut at {budget['max_seq_length']} "
        "tokens in training and "
        f"{budget['eval_max_seq_length'] or budget['max_seq_length']} in evaluation (every row alike), the schedule of "
        f"`eval/recipes/scifact_student_base.yaml`, seeds {', '.join(map(str, seeds))}. nDCG@10 is the mean "
        f"± sd over the seeds. Each trained row is compared with `{LABEL_ONLY}` (the label-only reference: the "
        "same lists, sampler and steps, BM25's negatives, no teacher) and with `untrained`, over the "
        f"{queries} and the seeds both rows have (`irdistill.evaluation.seeds`: a two-level bootstrap and a "
        "t-interval over seeds, the wider reported): the mean nDCG@10 difference, its 95 % CI, p, and p after "
        "Holm's correction over the column's family. Kendall τ is with the teacher on the "
        f"{'dev' if dev else 'test'} BM25 top 100.",
        "",
        f"| method | uses teacher | seeds | nDCG@10 | recall@100 | MRR@10 | vs {LABEL_ONLY}: Δ [95 % CI] p (Holm) | "
        "vs untrained: Δ [95 % CI] p (Holm) | Kendall τ | train examples/s | texts a row |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def versus(found: dict[str, Any] | None) -> str:
        if not found:
            return "-"
        low, high = found["ci95"]
        return f"{found['diff']:+.4f} [{low:+.4f}, {high:+.4f}] {_p(found['p'])} ({_p(found.get('p_holm'))})"

    for method, r in table.items():
        sd = f" ± {r['ndcg@10_sd']:.4f}" if r["seeds"] > 1 else ""
        lines.append(
            f"| {method} | {'yes' if r['uses_teacher'] else 'no'} | {r['seeds'] or '-'} | "
            f"{r['ndcg@10']:.4f}{sd} | {r['recall@100']:.4f} | {r['mrr@10']:.4f} | "
            f"{versus(r.get('vs_label_only'))} | "
            f"{versus(r.get('vs_untrained'))} | "
            f"{r['kendall_tau'] if r['kendall_tau'] is not None else '-'} | "
            f"{r['train_examples_per_s'] if r['train_examples_per_s'] is not None else '-'} | "
            f"{r['texts_per_row'] or '-'} |"
        )
    lines += [
        "",
        "Train examples/s: rows trained (every epoch's) over the trainer's running time. They come from "
        "cells run in different sittings, some with glibc's default heap "
        "(`IRDISTILL_MMAP_THRESHOLD=off`) and some with irdistill's fixed mmap threshold, which made the "
        "same method's training up to 1.8x slower here, some alone and some beside another cell: they "
        "are not a timing comparison. (The pair methods' cells were first recorded at 3x, the trainer "
        "counting their 3-epoch plan once an epoch, and divided by 3 when that was fixed.)",
    ]
    if any(m.startswith("hybrid-beta") for m in table):
        lines += [
            "",
            "`hybrid-beta<β>`: the hybrid with the contrastive weight β (1 in `hybrid`). At β = 1 InfoNCE makes 93 % "
            "of the student's gradient norm on the first batches, at β = 0.07 half "
            "(`python benchmarks/loss_balance.py`, `eval/results/loss_balance_scifact.md`).",
        ]
    lists = [m for m in table if METHODS.get(m, {}).get("list_size")]
    if lists:
        lines += [
            "",
            f"{', '.join(f'`{m}`' for m in lists)} train on lists of the judged positive and 7 negatives (3 from "
            "the top 20 of the teacher's ranking, of BM25's in `bm25-lists`, 4 below it), one list per "
            "judged pair and epoch (919 on SciFact train); "
            "`infonce` (the sentence-transformers default recipe, kept as such; `bm25-lists` is the matched "
            "label-only reference) on one (query, positive, candidate) row per judged pair and epoch, "
            "the pair samplers' "
            "methods on about 830 (query, positive, negative) rows an epoch (TAS-Balanced: 26 batches of 32). "
            "Every method has the same epochs and 32 rows a batch, so about the same steps (87 for the lists "
            "and `infonce`, 78 for the TAS-Balanced rows), but not the same encoder work: a list row is 9 "
            "texts, the others 3, so the lists encode 3x `infonce`'s texts and 3.3x `hybrid`'s. "
            "In `hybrid-kl` the KL term makes 0.4 % of the student's gradient norm at β = 1 "
            "(`eval/results/loss_balance_scifact.md`); `infonce-lists` (KL weighted 0) tells what fitting "
            "the teacher's scores adds to what the teacher's choice of negatives does; `bm25-lists` draws "
            "the same lists from BM25's ranking of the same pairs instead (no teacher), which tells what the "
            "teacher's choice of negatives adds to the lists' length; `hybrid-kl` against `bm25-lists` is "
            "all the teacher adds (its scores and its negatives) to labels trained on the same lists.",
        ]
        for a, b in (("hybrid-kl", "infonce-lists"), ("infonce-lists", "bm25-lists"), ("hybrid-kl", "bm25-lists")):
            control = same_seeds(cells, budget, seeds, a, b) if cells else None
            if control:
                lines += ["", control]
    if not dev:
        chosen = {m: r["chosen_on"] for m, r in table.items() if "chosen_on" in r}
        on_test = [m for m, c in chosen.items() if c == "test"]
        on_dev = [m for m, c in chosen.items() if c == "dev"]
        lines += [
            "",
            "Which split chose what: "
            + (
                f"{', '.join(f'`{m}`' for m in on_test)}: settings read off this test table before the dev split "
                "existed (as was the main recipe's choice of `hybrid-kl`). "
                if on_test
                else ""
            )
            + (
                f"{', '.join(f'`{m}`' for m in on_dev)}: settings chosen on the dev split (`students_scifact_dev*.md`)."
                if on_dev
                else ""
            ),
        ]
    missing = [m for m in ["untrained", "teacher", *METHODS] if m not in table]
    if missing:
        lines += ["", f"Not measured yet: {', '.join(missing)}."]
    write_text_atomic(folder / f"{name}.md", "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--scores",
        default=str(TEACHER_SCORES / "train"),
        help="teacher scores of the train candidates (default: the committed store)",
    )
    parser.add_argument(
        "--teacher-test-scores",
        default=str(TEACHER_SCORES / "test"),
        help="teacher scores of the test BM25 top 100 (default: the committed store)",
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-seq-length", type=int, default=256, help="training length, every method alike")
    parser.add_argument(
        "--eval-max-seq-length", type=int, help="evaluation length, every row alike (default: --max-seq-length)"
    )
    parser.add_argument(
        "--on",
        default="test",
        choices=["test", "dev"],
        help="test: train on SciFact train, measure on test (the final table); dev: train on train:fit, measure "
        "on train:dev (irdistill.data.holdout), where methods and settings are chosen",
    )
    parser.add_argument("--runs", help="run folders (default runs/students/scifact, -dev on dev)")
    parser.add_argument("--dataset", default="beir/scifact", help="collection (train and test splits)")
    parser.add_argument(
        "--student",
        help="start model (default: the base recipe's all-MiniLM-L6-v2); another one keys its cells and table "
        "with its folder name, e.g. a static student of irdistill.students.static",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        help="peak learning rate of every trained cell (default: the base recipe's 3e-5); keyed -lr<rate>",
    )
    parser.add_argument("--inbatch-teacher", help="tas-balanced's in-batch teacher (default all-mpnet-base-v2)")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="training precision (irdistill.precision): auto is bf16 on a CPU with native bf16; bf16 cells are "
        "keyed <budget>-bf16 and tabled in students_scifact_bf16.md, fp32 cells in students_scifact.md",
    )
    parser.add_argument(
        "--attention-dropout",
        type=float,
        help="attention dropout of every trained cell (default: the student's own, 0.1); 0 lets CPU attention "
        "take its fused kernel. Cells are keyed <budget>-attn<p> and tabled in students_scifact*_attn<p>.md",
    )
    parser.add_argument("--results", default=str(RESULTS), help="folder of the result tables")
    parser.add_argument("--table-only", action="store_true", help="rebuild the table from recorded cells")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    precision = resolve_precision(args.precision).name
    budget = {
        "epochs": args.epochs,
        "max_seq_length": args.max_seq_length,
        "eval_max_seq_length": args.eval_max_seq_length,
        "precision": precision,
        "attention_dropout": args.attention_dropout,
        "learning_rate": args.learning_rate,
        "student": args.student,
        "on": args.on,
    }
    train_budget = {
        "epochs": args.epochs,
        "max_seq_length": args.max_seq_length,
        "precision": precision,
        "attention_dropout": args.attention_dropout,
    }
    eval_len = args.eval_max_seq_length or args.max_seq_length
    tag = budget_tag(budget)
    results = Path(args.results)
    cells_path = results / cells_name(args.on)
    args.runs = args.runs or ("runs/students/scifact-dev" if args.on == "dev" else "runs/students/scifact")

    def overrides(method: str) -> dict[str, Any]:
        out: dict[str, Any] = {"dataset": args.dataset}
        if args.student:
            out["student"] = args.student
        if args.learning_rate is not None:
            out["learning_rate"] = args.learning_rate
        if args.inbatch_teacher and METHODS[method].get("inbatch_teacher"):
            out["inbatch_teacher"] = args.inbatch_teacher
        return out

    cells = json.loads(cells_path.read_text()) if cells_path.is_file() else {}

    def record(key: str, cell: dict[str, Any]) -> None:
        nonlocal cells
        cells = update_json_table(cells_path, key, cell)
        write_tables(results, build_table(cells, budget, args.seeds), budget, args.seeds, cells)

    if not args.table_only:
        base = load_yaml(HERE / "recipes" / "scifact_student_base.yaml")
        student = args.student or base["student"]
        if args.on == "dev":
            test, teacher_run = dev_candidates(args.dataset, args.scores)
        else:
            test = load_collection(args.dataset, split="test")
            teacher_path = Path(args.teacher_test_scores)
            teacher_run = scores_to_run(
                read_scores(teacher_path / "scores.parquet" if teacher_path.is_dir() else teacher_path)
            )
        cands = {q: list(d) for q, d in teacher_run.items()}
        key = cell_key("teacher", None, budget)
        if key not in cells:
            values = evaluate_run(test.qrels, teacher_run, METRICS)
            record(
                key,
                {
                    **values,
                    "kendall_tau": 1.0,
                    "per_query_ndcg@10": per_query_scores(test.qrels, teacher_run, "ndcg@10"),
                },
            )
        key = cell_key("untrained", None, budget)
        if key not in cells:
            record(
                key,
                evaluate_cell(
                    student, test, cands, teacher_run, Path(args.runs) / "untrained" / tag / "eval", eval_len
                ),
            )
        for seed in args.seeds:
            for method in args.methods:
                key = cell_key(method, seed, budget)
                if key in cells:
                    continue
                folder = Path(args.runs) / method / tag / f"seed{seed}"
                model = folder / "model"
                if not (model / "irdistill_training.json").is_file():
                    values = {
                        **base,
                        **METHODS[method],
                        **train_budget,
                        **overrides(method),
                        "seed": seed,
                        "split": "train:fit" if args.on == "dev" else "train",
                        "scores": METHODS[method].get("scores", args.scores),
                        "out": str(model),
                    }
                    train_student(build_config(TrainConfig, values, source=method), show_progress_bar=False)
                info = json.loads((model / "irdistill_training.json").read_text())
                cell = evaluate_cell(str(model), test, cands, teacher_run, folder / "eval", eval_len)
                cell["train_examples_per_s"] = info["examples_per_second"]
                cell["train_seconds"] = info["seconds"]
                record(key, cell)
                logging.info("%s: nDCG@10 %.4f", key, cell["ndcg@10"])
    write_tables(results, build_table(cells, budget, args.seeds), budget, args.seeds, cells)
    print((results / f"{table_name(budget)}.md").read_text())


if __name__ == "__main__":
    main()
