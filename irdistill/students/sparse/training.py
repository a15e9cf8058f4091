"""Train a sparse student from teacher margins with sentence-transformers' SparseEncoderTrainer."""

from __future__ import annotations

import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from torch import nn

from irdistill.errors import InputError
from irdistill.losses.flops import IDFWeightedFlopsLoss
from irdistill.paths import save_model_atomic
from irdistill.students.sparse.model import is_inference_free, query_static_module, student_idf

if TYPE_CHECKING:
    import datasets
    from sentence_transformers import SparseEncoder

__all__ = ["SPARSE_LOSSES", "train_sparse_student"]

logger = logging.getLogger(__name__)

SparseLoss = Literal["margin-mse", "kl"]
SPARSE_LOSSES = ("margin-mse", "kl")


def _training_columns(dataset: datasets.Dataset) -> tuple[list[str], int]:
    columns = list(dataset.column_names)
    where = "training dataset"
    for needed in ("query", "positive", "label"):
        if needed not in columns:
            raise InputError(
                f"{where} has no {needed!r} column; expected query, positive, negative(s), label "
                f"(as irdistill.scores.hf.to_hf_dataset writes), got {', '.join(columns)}"
            )
    negatives = [c for c in columns if c.startswith("negative")]
    if not negatives:
        raise InputError(
            f"{where} needs at least one negative column (negative, negative_1, ...) besides "
            f"query, positive and label; got {', '.join(columns)}"
        )
    ignored = [c for c in columns if c not in ("query", "positive", "label", *negatives)]
    if ignored:
        logger.info("training dataset: columns %s are not model inputs and are left out", ", ".join(ignored))
    if len(dataset) == 0:
        raise InputError(f"{where} is empty")
    return ["query", "positive", *negatives, "label"], len(negatives)


def _kl_labels(dataset: datasets.Dataset, n_neg: int) -> datasets.Dataset:
    """Margins ``t(q,p+) - t(q,n_i)`` -> scores ``[0, -m_1, .., -m_n]`` (softmax is shift invariant)."""
    first = dataset[0]["label"]
    width = 1 if np.isscalar(first) else len(first)
    if width == n_neg + 1:
        return dataset
    if width != n_neg:
        raise InputError(f"labels must hold {n_neg} margins or {n_neg + 1} teacher scores per row, got {width}")

    def convert(batch: dict[str, list[Any]]) -> dict[str, list[list[float]]]:
        rows = [[m] if np.isscalar(m) else m for m in batch["label"]]
        return {"label": [[0.0, *(-float(x) for x in row)] for row in rows]}

    return dataset.map(convert, batched=True, desc="margins -> teacher scores")


def train_sparse_student(
    student: SparseEncoder,
    train_dataset: datasets.Dataset,
    *,
    loss: SparseLoss = "margin-mse",
    flops_weights: Any = None,
    document_regularizer_weight: float = 3e-5,
    query_regularizer_weight: float | None | Literal["auto"] = "auto",
    min_idf: float = 0.5,
    temperature: float = 2.0,
    epochs: float = 1.0,
    max_steps: int = -1,
    batch_size: int = 16,
    lr: float = 2e-5,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    seed: int = 42,
    logging_steps: int = 50,
    learning_rate_mapping: dict[str, float] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    show_progress_bar: bool = True,
) -> SparseEncoder:
    """Distil a teacher into a sparse student with ``SparseEncoderTrainer`` (in place; returns it).

    The loss is ``SpladeLoss(main, λ_d · R_d(documents) + λ_q · R_q(queries))``:

    - main ``margin-mse``: ``SparseMarginMSELoss``, ``mean((s(q,p+) - s(q,n_i)) - label_i)^2``
      (Hofstätter et al., arXiv 2010.02666); ``kl``: ``SparseDistillKLDivLoss`` over
      ``[p+, n_1..n_n]`` with the teacher distribution ``softmax([0, -m_1, .., -m_n] / T)``
      rebuilt from the margins (softmax ignores a shift, so margins suffice);
    - ``R_d``: ``FlopsLoss`` on positives and negatives, or :class:`IDFWeightedFlopsLoss` when
      ``flops_weights`` is given; ``R_q``: ``FlopsLoss`` on queries, off for an inference-free
      student (its queries are not learned). For an inference-free student the default (plain
      FLOPS under the IDF query tower) is the IDF-aware penalty of arXiv 2411.04403.

    Inputs (``irdistill.scores.hf.to_hf_dataset``):

    +------------------------------------------------+---------------------------------------------+
    | columns                                        | ``label``                                   |
    +================================================+=============================================+
    | ``query, positive, negative_1 .. negative_n``  | ``[t(q, p+) - t(q, n_i) for i in 1..n]``    |
    |                                                | (or ``[t(q,p+), t(q,n_1), ..]``)            |
    +------------------------------------------------+---------------------------------------------+

    Args:
        student: from :func:`build_splade_student` or :func:`build_inference_free_student`.
        train_dataset: a ``datasets.Dataset`` with the columns above.
        loss: ``margin-mse`` or ``kl``.
        flops_weights: ``None`` for plain FLOPS on documents (the paper's IDF-aware penalty when
            the student is inference-free); an IDF vector (vocabulary-sized) for the extra
            :class:`IDFWeightedFlopsLoss`; ``"idf"`` for that with the student's own query IDF.
        document_regularizer_weight: ``λ_d``.
        query_regularizer_weight: ``λ_q``; ``"auto"``: ``None`` for an inference-free student,
            ``5e-5`` for SPLADE.
        min_idf: floor of the IDF in :class:`IDFWeightedFlopsLoss`.
        temperature: of the KL loss, student and teacher (sentence-transformers' default 2.0;
            match it to the spread of the teacher margins).
        epochs, max_steps, batch_size, lr, warmup_steps, weight_decay, seed, logging_steps: as in
            ``SparseEncoderTrainingArguments`` (``max_steps > 0`` overrides ``epochs``).
        learning_rate_mapping: parameter-name regex -> learning rate (e.g. a larger one for a
            trainable IDF: ``{r"sub_modules\\.query": 1e-2}``).
        output_dir: when given, the trained student is saved there (atomically, on success).
        show_progress_bar: the trainer's tqdm bars.

    Example:
        >>> student = build_inference_free_student("splade-tiny", corpus=collection)  # doctest: +SKIP
        >>> ds = to_hf_dataset("scores.parquet", collection)  # doctest: +SKIP
        >>> train_sparse_student(student, ds, max_steps=100)  # doctest: +SKIP
    """
    from sentence_transformers.sparse_encoder import (
        SparseEncoderTrainer,
        SparseEncoderTrainingArguments,
    )
    from sentence_transformers.sparse_encoder.losses import (
        SparseDistillKLDivLoss,
        SparseMarginMSELoss,
        SpladeLoss,
    )

    if loss not in SPARSE_LOSSES:
        raise InputError(f"unknown sparse loss {loss!r}; known: {', '.join(SPARSE_LOSSES)}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    columns, n_neg = _training_columns(train_dataset)
    dataset = train_dataset.select_columns(columns)
    inference_free = is_inference_free(student)

    if loss == "kl":
        dataset = _kl_labels(dataset, n_neg)
        main: nn.Module = SparseDistillKLDivLoss(student, temperature=temperature)
    else:
        main = SparseMarginMSELoss(student)

    if isinstance(flops_weights, str):
        if flops_weights != "idf":
            raise InputError(f"flops_weights must be None, an IDF vector or 'idf', got {flops_weights!r}")
        flops_weights = student_idf(student)
        if flops_weights is None:
            raise InputError(
                "flops_weights='idf' needs an inference-free student (an IDF query tower); "
                "pass an IDF vector, e.g. compute_idf(corpus, tokenizer)"
            )
    document_regularizer = (
        IDFWeightedFlopsLoss(student, flops_weights, min_idf=min_idf) if flops_weights is not None else None
    )
    if query_regularizer_weight == "auto":
        query_regularizer_weight = None if inference_free else 5e-5
    elif inference_free and query_regularizer_weight is not None:
        if not query_static_module(student).weight.requires_grad:
            logger.warning(
                "query_regularizer_weight=%s has no effect: the inference-free student's IDF query weights are frozen",
                query_regularizer_weight,
            )
    objective = SpladeLoss(
        student,
        loss=main,
        document_regularizer_weight=document_regularizer_weight,
        query_regularizer_weight=query_regularizer_weight,
        document_regularizer=document_regularizer,
    )

    router_mapping = (
        {c: ("query" if c == "query" else "document") for c in columns if c != "label"} if inference_free else {}
    )
    with tempfile.TemporaryDirectory(prefix="irdistill-sparse-") as scratch:
        args = SparseEncoderTrainingArguments(
            output_dir=scratch,
            num_train_epochs=epochs,
            max_steps=max_steps,
            per_device_train_batch_size=batch_size,
            learning_rate=lr,
            warmup_steps=warmup_steps,
            weight_decay=weight_decay,
            seed=seed,
            logging_steps=logging_steps,
            save_strategy="no",
            report_to="none",
            disable_tqdm=not show_progress_bar,
            router_mapping=router_mapping,
            learning_rate_mapping=learning_rate_mapping or {},
        )
        trainer = SparseEncoderTrainer(model=student, args=args, train_dataset=dataset, loss=objective)
        result = trainer.train()
    logger.info("sparse student trained: %d steps, training loss %.4f", result.global_step, result.training_loss)
    if output_dir is not None:
        save_model_atomic(student, output_dir)
        logger.info("sparse student saved to %s", output_dir)
    return student
