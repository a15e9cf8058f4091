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

__all__ = ["IN_BATCH_TARGETS", "TEMPERATURE_SCALINGS", "ListwiseKLLoss", "temperature_factor"]


IN_BATCH_TARGETS = ("zero", "floor", "exclude")
"""Where the other rows' passages sit in the teacher's target when they join a query's softmax:
``zero`` (no mass: the student learns to keep them below its own list, the target over the list
is the teacher's), ``floor`` (at the query's lowest scored candidate, the first version: on
SciFact lists of 8 in batches of 32 the 248 floor passages took 0.735 of the target's mass and
left the judged positive 0.165), ``exclude`` (the KL runs over the query's own list only)."""

TEMPERATURE_SCALINGS = ("hinton", "squared", "none")
"""The factor on the KL: ``hinton`` ``max(τ_s, 1)²`` (Hinton et al.'s ``T²`` compensates the
``1 / T²`` fall of soft-target gradients for ``T > 1``; below 1 the gradient does not fall, and
a ``τ²`` there only shrinks the term: 0.04 at τ = 0.2), ``squared`` ``τ_s²`` always
(sentence-transformers' default and the first version), ``none``."""


def temperature_factor(scaling: str, student_temperature: float) -> float:
    """The factor :data:`TEMPERATURE_SCALINGS` names, for ``student_temperature``."""
    if scaling == "hinton":
        return max(student_temperature, 1.0) ** 2
    if scaling == "squared":
        return student_temperature**2
    if scaling == "none":
        return 1.0
    raise InputError(f"unknown temperature_scaling {scaling!r}; known: {', '.join(TEMPERATURE_SCALINGS)}")


@LOSSES.register("listwise-kl")
class ListwiseKLLoss(DistillKLDivLoss):
    """KL divergence from the teacher's to the student's softmax over each query's candidate list.

    ``L = f(τ_s) · mean_q KL(softmax(t(q, ·) / τ_t) || softmax(s(q, ·) / τ_s))``

    over the ``L`` candidates ``c_1..c_L`` of every query. It differs from ListNet's cross-entropy
    ``-sum_j p_j log softmax(s / τ)_j`` only by the teacher's entropy, a constant, so the gradients
    are the same. ``f`` is :data:`TEMPERATURE_SCALINGS`' ``temperature_scaling``: by default
    ``max(τ_s, 1)²``, Hinton et al.'s ``T²`` where it compensates (``T > 1``) and 1 below, where
    a ``τ²`` would only shrink the teacher's gradient (0.04 at the τ ≈ 0.2 that SciFact's scaled
    scores give). Undamped, the KL alone is a strong pull: all-MiniLM-L6-v2 trained with it alone
    at learning rate 3e-5 fell below its untrained self on SciFact dev (0.5985 against 0.6737
    nDCG@10, one seed, ``eval/results/students_scifact_dev_bf16.md``), where beside InfoNCE
    (``hybrid-kl``) it did not; choose the learning rate, τ and factor on a dev split.

    **In-batch negatives** (``in_batch_negatives=True``): the student's softmax of query ``i`` runs
    over every passage of the batch, its own ``L`` candidates and the ``(B - 1) · L`` of the other
    rows, which the teacher has not scored. ``in_batch_target`` (:data:`IN_BATCH_TARGETS`) says
    what the target gives them: ``zero`` (default) no mass, so the target over the query's own
    list is exactly the teacher's and the other passages are pushed below it; ``floor`` the
    query's lowest teacher score (the first version: with 248 of them against a list of 8 they
    took most of the target's mass and the teacher's order of the list was left a sliver of the
    gradient); ``exclude`` leaves them out (the plain list KL). Labels then carry the floor as an
    extra last column in every mode, so one row layout serves all three. Rows must not share
    texts: the trainer uses sentence-transformers' ``NoDuplicatesBatchSampler``. The batch is the
    rank's own under DDP (no gathering).

    Reuses :class:`sentence_transformers.sentence_transformer.losses.DistillKLDivLoss` (the
    separate student/teacher temperatures and its one-off check that the teacher softmax does not
    underflow).

    Args:
        model: the student ``SentenceTransformer`` (or ``SparseEncoder``); ``None`` is allowed when
            only :meth:`compute_loss_from_embeddings` is used.
        temperature: ``τ``, applied to teacher and student scores.
        similarity_fct: ``"dot"`` (default), ``"cosine"``, or a pairwise callable (not with
            in-batch negatives, which need the matrix form of a named similarity).
        student_temperature: overrides ``τ`` on the student side.
        teacher_temperature: overrides ``τ`` on the teacher side (match it to the spread of the
            teacher's scores: a float32 softmax underflows once spread / τ exceeds about 100).
        temperature_scaling: ``hinton`` (default), ``squared`` or ``none``.
        scale_by_temperature_squared: the former switch, kept for old recipes: ``True`` is
            ``temperature_scaling="squared"``, ``False`` ``"none"``.
        in_batch_negatives: the other rows' candidates join each query's softmax.
        in_batch_target: ``zero`` (default), ``floor`` or ``exclude``.

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
        >>> loss = ListwiseKLLoss(model=None, temperature=2.0, temperature_scaling="none")
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
        "in_batch_target": "in_batch_target",
        "temperature_scaling": "temperature_scaling",
    }
    default_in_batch_target: ClassVar[str] = "zero"

    def __init__(
        self,
        model: Any,
        temperature: float = 1.0,
        similarity_fct: str | SimilarityFn = "dot",
        *,
        student_temperature: float | None = None,
        teacher_temperature: float | None = None,
        temperature_scaling: str | None = None,
        scale_by_temperature_squared: bool | None = None,
        in_batch_negatives: bool = False,
        in_batch_target: str | None = None,
    ) -> None:
        super().__init__(
            model,
            similarity_fct=pairwise_similarity(similarity_fct),
            temperature=temperature,
            student_temperature=student_temperature,
            teacher_temperature=teacher_temperature,
        )
        name = type(self).__name__
        if scale_by_temperature_squared is not None:
            legacy = "squared" if scale_by_temperature_squared else "none"
            if temperature_scaling is not None and temperature_scaling != legacy:
                raise InputError(f"{name}: scale_by_temperature_squared and temperature_scaling disagree")
            temperature_scaling = legacy
        self.temperature_scaling = temperature_scaling or "hinton"
        self.factor = temperature_factor(self.temperature_scaling, self.student_temperature)
        target = in_batch_target or self.default_in_batch_target
        if target not in IN_BATCH_TARGETS:
            raise InputError(f"{name}: unknown in_batch_target {target!r}; known: {', '.join(IN_BATCH_TARGETS)}")
        if in_batch_negatives and target != "exclude" and not isinstance(similarity_fct, str):
            raise InputError(f"{name}: in-batch negatives need a named similarity ('dot' or 'cosine')")
        self.similarity_name = similarity_fct if isinstance(similarity_fct, str) else None
        self.matrix_similarity = matrix_similarity(similarity_fct) if isinstance(similarity_fct, str) else None
        self.in_batch_negatives = in_batch_negatives
        self.in_batch_target = target

    @property
    def scale_by_temperature_squared(self) -> bool:
        """Whether the KL carries the ``τ_s²`` factor (``temperature_scaling`` ``squared``)."""
        return self.temperature_scaling == "squared"

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
        if not self.in_batch_negatives or self.in_batch_target == "exclude":
            # the parent's KL over the list, then its τ² factor swapped for ours
            loss = super().compute_loss_from_embeddings(embeddings, labels[:, :width])
            return loss * (self.factor / self.student_temperature**2)
        assert self.matrix_similarity is not None
        query = embeddings[0]
        batch = int(query.size(0))
        # passages row by row: row r's candidates are columns r * L .. r * L + L - 1
        passages = torch.stack(embeddings[1:], dim=1).reshape(batch * width, -1)
        student = self.matrix_similarity(query, passages) / self.student_temperature
        loss = self.loss_fct(torch.log_softmax(student, dim=1), self.in_batch_target_probs(labels))
        return loss * self.factor

    def in_batch_target_probs(self, labels: Tensor) -> Tensor:
        """The teacher's target over every passage of the batch, ``(batch, batch * L)`` (row ``r``'s
        list at columns ``r * L .. r * L + L - 1``), for labels ``(batch, L + 1)`` (scores, floor):
        the softmax of the scores at ``teacher_temperature`` with the other rows' passages at the
        floor (``floor``) or at no mass (``zero``)."""
        batch, width = int(labels.size(0)), int(labels.size(1)) - 1
        own = torch.arange(batch, device=labels.device)[:, None] * width + torch.arange(width, device=labels.device)
        if self.in_batch_target == "floor":
            teacher = labels[:, -1:].expand(batch, batch * width).clone()
        else:  # zero mass: -inf logits, exactly 0 after the softmax
            teacher = torch.full((batch, batch * width), -torch.inf, device=labels.device, dtype=labels.dtype)
        teacher.scatter_(1, own, labels[:, :width])
        return torch.softmax(teacher.detach() / self.teacher_temperature, dim=1)

    def get_config_dict(self) -> dict[str, Any]:
        config = super().get_config_dict()
        config["similarity_fct"] = self.similarity_name or similarity_fct_name(self.similarity_fct)
        config["temperature_scaling"] = self.temperature_scaling
        config["in_batch_negatives"] = self.in_batch_negatives
        config["in_batch_target"] = self.in_batch_target
        return config
