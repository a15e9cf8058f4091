"""Listwise KL (ListNet-style) distillation of a teacher's scores over a candidate list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss
from sentence_transformers.util import similarity_fct_name
from torch import Tensor

from irdistill.errors import InputError
from irdistill.losses.base import (
    LOSSES,
    Rows,
    SimilarityFn,
    check_columns,
    matrix_similarity,
    pairwise_similarity,
)

__all__ = ["ListwiseKLLoss"]


@LOSSES.register("listwise-kl")
class ListwiseKLLoss(DistillKLDivLoss):
    """KL divergence from the teacher's to the student's softmax over each query's candidate list.

    ``L = τ_s² · mean_q KL(softmax(t(q, ·) / τ_t) || softmax(s(q, ·) / τ_s))``

    over the ``L`` candidates ``c_1..c_L`` of every query. It differs from ListNet's cross-entropy
    ``-sum_j p_j log softmax(s / τ)_j`` only by the teacher's entropy, a constant, so the gradients
    are the same. The ``τ_s²`` factor (Hinton et al.; sentence-transformers' default) keeps the
    gradient's size from growing as ``1 / τ`` when the temperature is lowered;
    ``scale_by_temperature_squared=False`` gives the bare KL.

    **In-batch negatives** (``in_batch_negatives=True``): the student's softmax of query ``i`` runs
    over every passage of the batch, its own ``L`` candidates and the ``(B - 1) · L`` of the other
    rows. The teacher has not scored those pairs; they get the *floor* of the query, passed as an
    extra last label column: the lowest teacher score among the query's scored candidates (the
    other rows' passages are, with high probability, further down the teacher's ranking than
    anything first-stage retrieval put in front of it). Rows must not share texts: the trainer
    uses sentence-transformers' ``NoDuplicatesBatchSampler`` for this loss. The batch is the
    rank's own under DDP (no gathering).

    Reuses :class:`sentence_transformers.sentence_transformer.losses.DistillKLDivLoss` (the KL of
    the candidate lists, the separate student/teacher temperatures and its one-off check that the
    teacher softmax does not underflow).

    Args:
        model: the student ``SentenceTransformer`` (or ``SparseEncoder``); ``None`` is allowed when
            only :meth:`compute_loss_from_embeddings` is used.
        temperature: ``τ``, applied to teacher and student scores.
        similarity_fct: ``"dot"`` (default), ``"cosine"``, or a pairwise callable (not with
            in-batch negatives, which need the matrix form of a named similarity).
        student_temperature: overrides ``τ`` on the student side.
        teacher_temperature: overrides ``τ`` on the teacher side (match it to the spread of the
            teacher's scores: a float32 softmax underflows once spread / τ exceeds about 100).
        scale_by_temperature_squared: multiply by ``student_temperature ** 2`` (default).
        in_batch_negatives: the other rows' candidates join each query's softmax at its floor.

    References:
        Cao et al., "Learning to Rank: From Pairwise Approach to Listwise Approach" (ListNet),
        ICML 2007; Hinton et al., "Distilling the Knowledge in a Neural Network", arXiv 1503.02531;
        Ren et al., "RocketQAv2" (listwise distillation over sampled hard and random negatives),
        arXiv 2110.07367; Reddy et al., "FIRST", arXiv 2406.15657.

    Inputs:
        +--------------------------------------------------+-------------------------------------------------+
        | Inputs (columns)                                 | Labels                                          |
        +==================================================+=================================================+
        | (query, candidate_1, ..., candidate_L), L >= 2   | ``(batch, L)``: [t(q, c_1), ..., t(q, c_L)]     |
        +--------------------------------------------------+-------------------------------------------------+
        | the same, ``in_batch_negatives=True``            | ``(batch, L + 1)``: the L scores, then the floor|
        +--------------------------------------------------+-------------------------------------------------+

    Example:
        >>> import torch
        >>> from irdistill.losses import ListwiseKLLoss
        >>> loss = ListwiseKLLoss(model=None, temperature=2.0, scale_by_temperature_squared=False)
        >>> q = torch.tensor([[1.0, 0.0]])
        >>> c1, c2 = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 2.0]])  # student scores 0, 0
        >>> round(loss.compute_loss_from_embeddings([q, c1, c2], torch.tensor([[2.0, 0.0]])).item(), 4)
        0.1109

        Training (``train_dataset`` has columns query, c_1..c_L, label)::

            trainer = SentenceTransformerTrainer(model=student, train_dataset=train_dataset,
                                                 loss=ListwiseKLLoss(student, temperature=0.1))
    """

    rows: ClassVar[Rows] = Rows.LISTS
    recipe_options: ClassVar[dict[str, str]] = {
        "temperature": "temperature",
        "student_temperature": "student_temperature",
        "in_batch_negatives": "in_batch_negatives",
    }

    def __init__(
        self,
        model: Any,
        temperature: float = 1.0,
        similarity_fct: str | SimilarityFn = "dot",
        *,
        student_temperature: float | None = None,
        teacher_temperature: float | None = None,
        scale_by_temperature_squared: bool = True,
        in_batch_negatives: bool = False,
    ) -> None:
        super().__init__(
            model,
            similarity_fct=pairwise_similarity(similarity_fct),
            temperature=temperature,
            student_temperature=student_temperature,
            teacher_temperature=teacher_temperature,
        )
        if in_batch_negatives and not isinstance(similarity_fct, str):
            raise InputError("ListwiseKLLoss: in-batch negatives need a named similarity ('dot' or 'cosine')")
        self.similarity_name = similarity_fct if isinstance(similarity_fct, str) else None
        self.matrix_similarity = matrix_similarity(similarity_fct) if isinstance(similarity_fct, str) else None
        self.scale_by_temperature_squared = scale_by_temperature_squared
        self.in_batch_negatives = in_batch_negatives

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], labels: Tensor | None) -> Tensor:
        """KL over the candidate columns of ``[query, candidate_1, ..., candidate_L]``."""
        name = type(self).__name__
        embeddings = list(embeddings)
        check_columns(
            name, embeddings, 3, "query, candidate_1, candidate_2, ...: a softmax over one candidate is constant"
        )
        width = len(embeddings) - 1
        expected = (int(embeddings[0].size(0)), width + 1 if self.in_batch_negatives else width)
        if labels is None or tuple(labels.shape) != expected:
            got = "none" if labels is None else tuple(labels.shape)
            what = "list_len + 1 (the floor)" if self.in_batch_negatives else "list_len"
            raise InputError(
                f"{name}: expected teacher scores of shape (batch, {what}) = {expected}, "
                f"one per candidate column, got {got}"
            )
        labels = labels.to(device=embeddings[0].device, dtype=embeddings[0].dtype)
        if not self.in_batch_negatives:
            loss = super().compute_loss_from_embeddings(embeddings, labels)
            return loss if self.scale_by_temperature_squared else loss / self.student_temperature**2
        assert self.matrix_similarity is not None
        query = embeddings[0]
        batch = int(query.size(0))
        # passages row by row: row r's candidates are columns r * L .. r * L + L - 1
        passages = torch.stack(embeddings[1:], dim=1).reshape(batch * width, -1)
        student = self.matrix_similarity(query, passages) / self.student_temperature
        own = torch.arange(batch, device=query.device)[:, None] * width + torch.arange(width, device=query.device)
        teacher = labels[:, -1:].expand(batch, batch * width).clone()
        teacher.scatter_(1, own, labels[:, :width])
        teacher_probs = torch.softmax(teacher.detach() / self.teacher_temperature, dim=1)
        loss = self.loss_fct(torch.log_softmax(student, dim=1), teacher_probs)
        return loss * self.student_temperature**2 if self.scale_by_temperature_squared else loss

    def get_config_dict(self) -> dict[str, Any]:
        config = super().get_config_dict()
        config["similarity_fct"] = self.similarity_name or similarity_fct_name(self.similarity_fct)
        config["scale_by_temperature_squared"] = self.scale_by_temperature_squared
        config["in_batch_negatives"] = self.in_batch_negatives
        return config
