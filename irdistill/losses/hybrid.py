"""Hybrid: teacher distillation plus a contrastive term on the judged positive.

The recipe used when judgements exist (e.g. RocketQAv2 and the Margin-MSE + InfoNCE mixtures of
later dense retrievers): the teacher's margins teach the order of the candidates, the label keeps
the judged positive above everything else in the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from irdistill.errors import InputError
from irdistill.losses.base import (
    LOSSES,
    LossParts,
    Rows,
    SimilarityFn,
    check_columns,
    distributed_rank_and_world,
    pairwise_similarity,
)
from irdistill.losses.infonce import InfoNCELoss
from irdistill.losses.margin_mse import margin_labels

__all__ = ["HybridLoss"]


@LOSSES.register("hybrid")
class HybridLoss(nn.Module):
    """``L = L_distill + β · L_contrastive`` over ``(query, positive, negative)`` rows.

    ``L_distill = sum_i w_i ((s(q_i, p_i+) - s(q_i, p_i-)) - (t(q_i, p_i+) - t(q_i, p_i-)))^2 / sum_i w_i``
    is Margin-MSE (arXiv 2010.02666) with a weight ``w_i`` per pair: 1, or ``disagreement_weight``
    when the teacher ranks the judged positive *below* the negative (``t(q, p+) < t(q, p-)``), so
    such pairs can be dropped (0) or down-weighted instead of pulling against the label.

    ``L_contrastive = -mean_i log( exp(s'(q_i, p_i+) / τ) / sum_{p in P} c_ip exp(s'(q_i, p) / τ) )``
    is InfoNCE (:class:`~irdistill.losses.InfoNCELoss`): the judged positive against every passage
    of the batch, positives of the other queries and all hard negatives (``P``). ``c_ip`` is 1,
    except for a row's own negative, which counts ``w_i`` times: a pair the teacher orders against
    the label is dropped (``w_i = 0``) or down-weighted in both terms, so that a negative the
    teacher scores above the judged positive (often an unjudged relevant passage) is not pushed
    under it (the denoised hard negatives of RocketQA, arXiv 2010.08191). Under DDP
    (``gather_across_devices=True``, the default) ``P`` is the global batch, gathered with
    gradients as sentence-transformers does (no world-size factor). ``s`` and ``s'`` are the
    distillation and contrastive similarities (dot product and cosine by default: Margin-MSE
    regresses onto the teacher's scale, InfoNCE needs a bounded one at temperature τ).

    The two terms are returned as named parts (``distill``, ``contrastive``, already weighted),
    which the sentence-transformers trainer logs separately and sums.

    **Choosing β.** The terms' values say little about which one steers the student: InfoNCE at
    τ = 0.05 multiplies its gradient by 1 / τ = 20, while Margin-MSE's is twice a margin error of
    order 0.1 on a cosine student. On SciFact train with all-MiniLM-L6-v2 and the z-scored ensemble
    teacher at ``label_scale`` 0.15, InfoNCE makes 93 % of the gradient norm at β = 1 and half of it
    at β = 0.07 (``benchmarks/loss_balance.py``, ``eval/results/loss_balance_scifact.md``); measure
    it for another student, teacher or label scale before reading a β as a mixing ratio.

    Args:
        model: the student ``SentenceTransformer``; ``None`` when only
            :meth:`compute_loss_from_embeddings` is used.
        beta: weight of the contrastive term (``β`` >= 0; 0 is plain Margin-MSE).
        temperature: ``τ`` of the contrastive term.
        disagreement_weight: ``w`` of a pair whose teacher margin is negative, in [0, 1], in both
            terms (its squared error, and its negative in its own query's contrastive softmax).
        distill_similarity, contrastive_similarity: ``"dot"`` or ``"cosine"`` (or callables: a
            pairwise one for distillation, a matrix one for the contrastive term).
        gather_across_devices: in-batch negatives from every rank under DDP.

    References:
        Hofstätter et al., arXiv 2010.02666 (Margin-MSE); Karpukhin et al., arXiv 2004.04906 (DPR,
        in-batch negatives); Qu et al., "RocketQA", arXiv 2010.08191 (a cross-encoder removes
        false hard negatives); Ren et al., "RocketQAv2", arXiv 2110.07367 (distillation joined with
        label supervision).

    Inputs:
        +-------------------------------------------------+-----------------------------------------------+
        | Inputs (columns)                                | Labels                                        |
        +=================================================+===============================================+
        | (query, positive, negative)                     | ``(batch,)``: t(q, p+) - t(q, p-), or         |
        |                                                 | ``(batch, 2)``: [t(q, p+), t(q, p-)]          |
        +-------------------------------------------------+-----------------------------------------------+

    Example:
        >>> import torch
        >>> from irdistill.losses import HybridLoss
        >>> loss = HybridLoss(model=None, beta=0.5, temperature=1.0, contrastive_similarity="dot")
        >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> pos, neg = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 0.0]])
        >>> parts = loss.compute_loss_from_embeddings([q, pos, neg], torch.tensor([1.0, 3.0]))
        >>> round(parts["distill"].item(), 4)  # ((2 - 1 - 1)^2 + (1 - 0 - 3)^2) / 2
        2.0
        >>> round(parts["contrastive"].item(), 4)  # 0.5 x InfoNCE over the 4 passages of the batch
        0.3094
    """

    rows: ClassVar[Rows] = Rows.PAIRS
    recipe_options: ClassVar[dict[str, str]] = {
        "beta": "beta",
        "contrastive_temperature": "temperature",
        "disagreement_weight": "disagreement_weight",
    }

    def __init__(
        self,
        model: Any,
        *,
        beta: float = 1.0,
        temperature: float = 0.05,
        disagreement_weight: float = 1.0,
        distill_similarity: str | SimilarityFn = "dot",
        contrastive_similarity: str | SimilarityFn = "cosine",
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__()
        if not beta >= 0:
            raise InputError(f"beta (weight of the contrastive term) must be >= 0, got {beta}")
        if not 0 <= disagreement_weight <= 1:
            raise InputError(f"disagreement_weight must lie in [0, 1], got {disagreement_weight}")
        self.model = model
        self.gather_across_devices = gather_across_devices
        self.beta = float(beta)
        self.disagreement_weight = float(disagreement_weight)
        self.distill_similarity = pairwise_similarity(distill_similarity)
        self.contrastive = InfoNCELoss(
            model,
            temperature=temperature,
            similarity_fct=contrastive_similarity,
            gather_across_devices=gather_across_devices,
        )
        self._names = {
            "distill_similarity": distill_similarity if isinstance(distill_similarity, str) else None,
            "contrastive_similarity": contrastive_similarity if isinstance(contrastive_similarity, str) else None,
        }

    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: Tensor | None) -> LossParts:
        embeddings = [self.model(features)["sentence_embedding"] for features in sentence_features]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], labels: Tensor | None) -> LossParts:
        """The weighted parts for columns ``[query, positive, negative]``."""
        name = type(self).__name__
        embeddings = list(embeddings)
        check_columns(name, embeddings, 3, "query, positive, negative")
        if len(embeddings) != 3:
            raise InputError(f"{name} expects exactly 3 columns (query, positive, negative), got {len(embeddings)}")
        query, positive, negative = embeddings
        margins = margin_labels(labels, int(query.size(0)), 1, name)[:, 0]
        margins = margins.to(device=query.device, dtype=query.dtype)
        student = self.distill_similarity(query, positive) - self.distill_similarity(query, negative)
        weights = torch.where(margins < 0, torch.full_like(margins, self.disagreement_weight), torch.ones_like(margins))
        errors = (student - margins) ** 2
        total = weights.sum()
        distill = (weights * errors).sum() / total if total > 0 else errors.sum() * 0.0
        contrastive = self._contrastive(query, positive, negative, weights)
        return LossParts(distill=distill, contrastive=self.beta * contrastive)

    def _contrastive(self, query: Tensor, positive: Tensor, negative: Tensor, weights: Tensor) -> Tensor:
        """InfoNCE of the judged positives with each row's own negative counted ``weights[i]`` times
        (``log w`` added to its logit; ``w = 0`` masks it)."""
        # gather only when a process group runs (sentence-transformers warns at every step otherwise)
        rank, world = distributed_rank_and_world()
        gather = self.gather_across_devices and world > 1
        if bool((weights == 1).all()):  # every pair kept: plain InfoNCE
            self.contrastive.gather_across_devices = gather
            return self.contrastive.compute_loss_from_embeddings([query, positive, negative], None)
        batch, offset = int(query.size(0)), 0
        if gather:
            from sentence_transformers.util import all_gather_with_grad

            positive, negative = all_gather_with_grad(positive), all_gather_with_grad(negative)
            offset = rank * batch
        logits = self.contrastive.similarity_fct(query, torch.cat([positive, negative])) * self.contrastive.scale
        rows = torch.arange(batch, device=query.device)
        own = int(positive.size(0)) + offset + rows  # this rank's rows' own negatives in the global batch
        logits = logits.index_put((rows, own), logits[rows, own] + weights.to(logits.dtype).log())
        return nn.functional.cross_entropy(logits, offset + rows)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "beta": self.beta,
            "temperature": self.contrastive.temperature,
            "disagreement_weight": self.disagreement_weight,
            **self._names,
        }

    @property
    def citation(self) -> str:
        return "Hofstätter et al., arXiv 2010.02666; Ren et al., arXiv 2110.07367"
