"""Fine-tune a cross-encoder teacher on a collection's training qrels with mined negatives.

Reused: sentence-transformers' ``CrossEncoder`` (a one-logit head on any backbone),
``CrossEncoderTrainer`` and ``BinaryCrossEntropyLoss`` (or ``MultipleNegativesRankingLoss``).
irdistill supplies the data: for every judged (query, positive), the positive with label 1 and
``num_negatives`` hard negatives with label 0, drawn from the top of a BM25 or dense candidate
list with the judged positives removed.

The result is an ordinary CrossEncoder folder: ``CrossEncoderTeacher(out)`` scores with it.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irdistill.candidates.mining import mine_candidates
from irdistill.data.collection import Collection
from irdistill.errors import InputError
from irdistill.paths import resolve_model, save_model_atomic

logger = logging.getLogger(__name__)

LOSSES = ("bce", "mnrl")


@dataclass
class TrainTeacherResult:
    path: Path
    examples: int
    seconds: float
    train_loss: float


def build_pairs(
    collection: Collection,
    negatives: str = "bm25",
    num_negatives: int = 4,
    depth: int = 30,
    seed: int = 42,
    show_progress_bar: bool = True,
) -> list[tuple[str, str, float]]:
    """(query, passage, label) triples: each judged positive, then sampled hard negatives."""
    if num_negatives < 1:
        raise InputError(f"num_negatives must be >= 1, got {num_negatives}")
    rng = random.Random(seed)
    run = mine_candidates(collection, negatives, k=depth, show_progress_bar=show_progress_bar)
    rows: list[tuple[str, str, float]] = []
    for qid, query in collection.queries.items():
        positives = collection.positives(qid)
        pool = list(run.get(qid, {}))
        for pos in positives:
            rows.append((query, collection.corpus[pos].full_text(), 1.0))
            for neg in rng.sample(pool, min(num_negatives, len(pool))):
                rows.append((query, collection.corpus[neg].full_text(), 0.0))
    if not rows:
        raise InputError(f"{collection.name}/{collection.split}: no judged positives to train on")
    return rows


def train_cross_encoder(
    backbone: str,
    collection: Collection,
    out: str | os.PathLike[str],
    *,
    negatives: str = "bm25",
    num_negatives: int = 4,
    depth: int = 30,
    loss: str = "bce",
    epochs: float = 1.0,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    warmup_ratio: float = 0.1,
    max_length: int = 256,
    seed: int = 42,
    bf16: bool | None = None,
    show_progress_bar: bool = True,
) -> TrainTeacherResult:
    """Fine-tune ``backbone`` (any Hugging Face encoder or CrossEncoder) into a one-logit teacher.

    Args:
        backbone: model folder, ``$IRDISTILL_MODELS`` name or hub id.
        collection: a training split (its qrels give the positives).
        out: the output model folder (written at the end; an existing one is replaced).
        negatives: ``bm25`` or a dense model, mining ``depth`` candidates per query.
        loss: ``bce`` (pointwise binary cross-entropy, labels 1/0) or ``mnrl`` (in-batch and
            hard negatives, softmax over a query's list).
        bf16: mixed precision; ``None`` turns it on when CUDA supports bf16.
    """
    import time

    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
        losses,
    )

    if loss not in LOSSES:
        raise InputError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
    if epochs <= 0 or batch_size < 1 or learning_rate <= 0:
        raise InputError("epochs, batch_size and learning_rate must be positive")
    path = resolve_model(backbone)
    if Path(path).exists() and not (Path(path) / "config.json").is_file():
        raise InputError(f"{path}: not a model folder (no config.json)")
    rows = build_pairs(collection, negatives, num_negatives, depth, seed, show_progress_bar)
    torch.manual_seed(seed)
    try:
        model = CrossEncoder(path, num_labels=1, max_length=max_length)
    except OSError as err:
        raise InputError(f"cannot load backbone {backbone!r}: {err}") from err
    if loss == "bce":
        data = Dataset.from_dict(
            {"query": [r[0] for r in rows], "passage": [r[1] for r in rows], "label": [r[2] for r in rows]}
        )
        criterion: Any = losses.BinaryCrossEntropyLoss(model)
    else:
        grouped: dict[str, dict[str, Any]] = {}
        for q, p, label in rows:
            entry = grouped.setdefault(q, {"positive": None, "negatives": []})
            if label > 0 and entry["positive"] is None:
                entry["positive"] = p
            elif label == 0:
                entry["negatives"].append(p)
        n = min(len(e["negatives"]) for e in grouped.values())
        data = Dataset.from_dict(
            {
                "query": list(grouped),
                "positive": [e["positive"] for e in grouped.values()],
                **{f"negative_{i + 1}": [e["negatives"][i] for e in grouped.values()] for i in range(n)},
            }
        )
        criterion = losses.MultipleNegativesRankingLoss(model)
    use_bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()) if bf16 is None else bf16
    target = Path(out)
    work = target.with_name(f".{target.name}.training")
    args = CrossEncoderTrainingArguments(
        output_dir=str(work),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=int(warmup_ratio * math.ceil(len(data) / batch_size) * epochs),
        bf16=use_bf16,
        seed=seed,
        logging_steps=max(1, len(data) // batch_size // 10),
        save_strategy="no",
        report_to="none",
        disable_tqdm=not show_progress_bar,
        dataloader_drop_last=False,
        use_cpu=not torch.cuda.is_available(),  # so that torchrun on CPUs really runs DDP (gloo)
    )
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=data, loss=criterion)
    start = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - start
    save_model_atomic(model, target)
    shutil.rmtree(work, ignore_errors=True)
    logger.info("cross-encoder teacher trained on %d examples in %.0f s: %s", len(data), seconds, target)
    return TrainTeacherResult(path=target, examples=len(data), seconds=seconds, train_loss=float(output.training_loss))


def crossfit_collection(collection: Collection, fold: int, folds: int) -> Collection:
    """``collection`` without the queries of ``fold`` (:func:`irdistill.teachers.crossfit.text_fold`
    of their text): the training queries of cross-fitting member ``fold``. The corpus is shared."""
    from irdistill.teachers.crossfit import text_fold

    keep = [q for q, text in collection.queries.items() if text_fold(text, folds) != fold]
    if not keep or len(keep) == len(collection.queries):
        raise InputError(f"{collection.label}: fold {fold} of {folds} leaves no query out or none in")
    return collection.with_queries(keep, f"{collection.split} without fold {fold}/{folds}")


def train_crossfit_members(
    train: dict[str, Any], collection: Collection, out: str | os.PathLike[str], folds: int = 2
) -> list[Path]:
    """Train the ``folds`` members of a :class:`~irdistill.teachers.crossfit.CrossFitTeacher`:
    member ``k`` is ``train`` (a training recipe, :class:`~irdistill.workflows.training.TrainConfig`
    keys) run on ``collection`` without fold ``k``'s queries, into ``out/fold<k>``. A finished member
    is kept (training itself resumes from its checkpoints). Returns the members in fold order, the
    ``members`` list of a ``cross-fit`` teacher."""
    from irdistill.config import build_config
    from irdistill.workflows.training import TrainConfig, train_student

    paths = []
    for fold in range(folds):
        target = Path(out) / f"fold{fold}"
        paths.append(target)
        if (target / "irdistill_training.json").is_file():
            logger.info("cross-fit member %d: %s exists", fold, target)
            continue
        subset = crossfit_collection(collection, fold, folds)
        logger.info("cross-fit member %d of %d: %r", fold, folds, subset)
        values = {**train, "out": str(target)}
        values.setdefault("dataset", collection.name or "collection")
        train_student(build_config(TrainConfig, values, source=f"cross-fit member {fold}"), collection=subset)
    return paths
