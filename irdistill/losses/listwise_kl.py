"""Listwise KL (ListNet-style) distillation of a teacher's scores over a candidate list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss
from sentence_transformers.util import similarity_fct_name
from torch import Tensor

from irdistill.errors import InputError
from irdistill.losses.base import LOSSES, SimilarityFn, check_columns, pairwise_similarity

__all__ = ["ListwiseKLLoss"]


@LOSSES.register("listwise-kl")
class ListwiseKLLoss(DistillKLDivLoss):
    """KL divergence from the teacher's to the student's softmax over each query's candidate list.

    ``L = mean_q KL(softmax(t(q, ·) / τ) || softmax(s(q, ·) / τ))
        = mean_q sum_j p_j (log p_j - log softmax(s(q, ·) / τ)_j)``,  ``p = softmax(t(q, ·) / τ)``

    over the ``L`` candidates ``c_1..c_L`` of every query. It differs from ListNet's cross-entropy
    ``-sum_j p_j log softmax(s / τ)_j`` only by the teacher's entropy, a constant, so the gradients
    are the same. It distils listwise teachers (FIRST, arXiv 2406.15657, whose first-token logits
    are comparable within one window) and pointwise teachers scored over a whole list. A larger
    ``τ`` flattens both distributions; identical score lists give 0 at any ``τ``.

    Reuses :class:`sentence_transformers.sentence_transformer.losses.DistillKLDivLoss` (the KL,
    the separate student/teacher temperatures and its one-off check that the teacher softmax does
    not underflow). That class multiplies the loss by the student temperature squared (Hinton et
    al.'s gradient-scale correction); here that factor is off by default so the value is the KL
    above, and ``scale_by_temperature_squared=True`` restores it.

    Args:
        model: the student ``SentenceTransformer`` (or ``SparseEncoder``); ``None`` is allowed when
            only :meth:`compute_loss_from_embeddings` is used.
        temperature: ``τ``, applied to teacher and student scores.
        similarity_fct: ``"dot"`` (default), ``"cosine"``, or a pairwise callable.
        student_temperature: overrides ``τ`` on the student side.
        teacher_temperature: overrides ``τ`` on the teacher side (match it to the spread of the
            teacher's scores: a float32 softmax underflows once spread / τ exceeds about 100).
        scale_by_temperature_squared: multiply by ``student_temperature ** 2`` as
            sentence-transformers does.

    References:
        Cao et al., "Learning to Rank: From Pairwise Approach to Listwise Approach" (ListNet),
        ICML 2007; Hinton et al., "Distilling the Knowledge in a Neural Network", arXiv 1503.02531;
        Reddy et al., "FIRST: Faster Improved Listwise Reranking with Single Token Decoding",
        arXiv 2406.15657; Xiao et al., "Distill-VQ", arXiv 2204.00185.

    Inputs:
        +--------------------------------------------------+-------------------------------------------------+
        | Inputs (columns)                                 | Labels                                          |
        +==================================================+=================================================+
        | (query, candidate_1, ..., candidate_L), L >= 2   | ``(batch, L)``: [t(q, c_1), ..., t(q, c_L)]     |
        +--------------------------------------------------+-------------------------------------------------+

    Example:
        >>> import torch
        >>> from irdistill.losses import ListwiseKLLoss
        >>> loss = ListwiseKLLoss(model=None, temperature=2.0)  # the pure part needs no model
        >>> q = torch.tensor([[1.0, 0.0]])
        >>> c1, c2 = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 2.0]])  # student scores 0, 0
        >>> round(loss.compute_loss_from_embeddings([q, c1, c2], torch.tensor([[2.0, 0.0]])).item(), 4)
        0.1109

        Training (``train_dataset`` has columns query, candidate_1..candidate_L, label)::

            trainer = SentenceTransformerTrainer(model=student, train_dataset=train_dataset,
                                                 loss=ListwiseKLLoss(student, temperature=1.0))
    """

    def __init__(self, model: Any, temperature: float = 1.0, similarity_fct: str | SimilarityFn = "dot", *,
                 student_temperature: float | None = None, teacher_temperature: float | None = None,
                 scale_by_temperature_squared: bool = False) -> None:
        super().__init__(model, similarity_fct=pairwise_similarity(similarity_fct), temperature=temperature,
                         student_temperature=student_temperature, teacher_temperature=teacher_temperature)
        self.similarity_name = similarity_fct if isinstance(similarity_fct, str) else None
        self.scale_by_temperature_squared = scale_by_temperature_squared

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], labels: Tensor | None) -> Tensor:
        """KL over the candidate columns of ``[query, candidate_1, ..., candidate_L]``."""
        name = type(self).__name__
        embeddings = list(embeddings)
        check_columns(name, embeddings, 3, "query, candidate_1, candidate_2, ...: a softmax over one "
                      "candidate is constant")
        expected = (int(embeddings[0].size(0)), len(embeddings) - 1)
        if labels is None or tuple(labels.shape) != expected:
            got = "none" if labels is None else tuple(labels.shape)
            raise InputError(f"{name}: expected teacher scores of shape (batch, list_len) = {expected}, "
                             f"one per candidate column, got {got}")
        labels = labels.to(device=embeddings[0].device, dtype=embeddings[0].dtype)
        loss = super().compute_loss_from_embeddings(embeddings, labels)
        return loss if self.scale_by_temperature_squared else loss / self.student_temperature**2

    def get_config_dict(self) -> dict[str, Any]:
        config = super().get_config_dict()
        config["similarity_fct"] = self.similarity_name or similarity_fct_name(self.similarity_fct)
        config["scale_by_temperature_squared"] = self.scale_by_temperature_squared
        return config
