"""Hybrid over candidate lists: listwise KL distillation plus InfoNCE on the judged positive."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from irdistill.errors import InputError
from irdistill.losses.base import LOSSES, LossParts, Rows, SimilarityFn
from irdistill.losses.infonce import InfoNCELoss
from irdistill.losses.listwise_kl import ListwiseKLLoss

__all__ = ["HybridListwiseLoss"]


@LOSSES.register("hybrid-kl")
class HybridListwiseLoss(ListwiseKLLoss):
    """``L = α · L_KL + β · L_contrastive`` over ``(query, c_1, ..., c_L)`` lists whose ``c_1`` is the
    judged positive (the rows of :mod:`irdistill.sampling.lists`).

    ``L_KL`` is :class:`~irdistill.losses.ListwiseKLLoss` over the query's own list (by default;
    ``in_batch_target`` ``zero`` or ``floor`` lets the other rows' passages into it too), so the whole
    list's order comes from the teacher, not only one pair's margin as in
    :class:`~irdistill.losses.HybridLoss`; the in-batch negatives serve the contrastive term.

    ``L_contrastive = -mean_i log( exp(s'(q_i, c_i1) / τ') / sum_{p in P_i} exp(s'(q_i, p) / τ') )``
    keeps the judged positive above the rest: ``P_i`` is every passage of the batch (all rows'
    lists) with in-batch negatives, else row ``i``'s own list. ``s'`` is cosine by default (a
    bounded similarity at temperature τ', as in :class:`~irdistill.losses.InfoNCELoss`) while the
    KL term keeps its own similarity and temperature. Under DDP both terms use the rank's own
    batch, as :class:`~irdistill.losses.ListwiseKLLoss` does.

    The two terms come back as named parts (``distill``, ``contrastive``, already weighted),
    which the sentence-transformers trainer logs separately and sums.

    **Choosing β and α.** The two terms' gradients scale differently (the KL's temperature and
    factor, InfoNCE's τ' = 0.05 on cosines, the label scale), so the weights say little on their
    own: measure each part's share of the student's gradient norm with
    ``benchmarks/loss_balance.py`` and choose on a dev split. The first version (in-batch passages
    at the floor in the KL's target, a ``τ²`` factor at τ ≈ 0.2) left the KL 0.4 % of the gradient
    on SciFact train and trained like InfoNCE over the lists.

    Args:
        model: the student ``SentenceTransformer``; ``None`` when only
            :meth:`compute_loss_from_embeddings` is used.
        temperature, similarity_fct: the KL term's, as in :class:`~irdistill.losses.ListwiseKLLoss`.
        **listwise: its other keywords (``student_temperature``, ``teacher_temperature``,
            ``temperature_scaling``, ``in_batch_negatives``, ``in_batch_target``: default
            ``exclude`` here).
        beta: weight of the contrastive term (>= 0; 0 is listwise KL alone).
        distill_weight: ``α``, weight of the KL term (>= 0, default 1). 0 is InfoNCE over the
            teacher's lists: the teacher picks the hard negatives but its scores are not fit,
            the control that tells the KL's share of a gain from the lists' share.
        contrastive_temperature: ``τ'``.
        contrastive_similarity: ``"cosine"`` (default) or ``"dot"``, or a matrix callable; the
            contrastive term is :class:`~irdistill.losses.InfoNCELoss` with these two.

    References:
        Ren et al., "RocketQAv2", arXiv 2110.07367 (listwise distillation over hard and random
        negatives, trained jointly with the labels); Karpukhin et al., arXiv 2004.04906 (DPR,
        in-batch negatives); Hinton et al., arXiv 1503.02531.

    Example:
        >>> import torch
        >>> from irdistill.losses import HybridListwiseLoss
        >>> loss = HybridListwiseLoss(None, temperature=1.0, beta=1.0, contrastive_temperature=1.0,
        ...                           contrastive_similarity="dot")
        >>> q = torch.tensor([[1.0, 0.0]])
        >>> c1, c2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])  # student scores 1, 0
        >>> parts = loss.compute_loss_from_embeddings([q, c1, c2], torch.tensor([[1.0, 0.0]]))
        >>> round(parts["distill"].item(), 4), round(parts["contrastive"].item(), 4)  # same softmax
        (0.0, 0.3133)
    """

    rows: ClassVar[Rows] = Rows.LISTS
    recipe_options: ClassVar[dict[str, str]] = {
        **ListwiseKLLoss.recipe_options,
        "beta": "beta",
        "contrastive_temperature": "contrastive_temperature",
        "distill_weight": "distill_weight",
    }
    default_in_batch_target: ClassVar[str] = "exclude"

    def __init__(
        self,
        model: Any,
        temperature: float = 1.0,
        similarity_fct: str | SimilarityFn = "dot",
        *,
        beta: float = 1.0,
        contrastive_temperature: float = 0.05,
        contrastive_similarity: str | SimilarityFn = "cosine",
        distill_weight: float = 1.0,
        **listwise: Any,
    ) -> None:
        super().__init__(model, temperature, similarity_fct, **listwise)
        if not beta >= 0:
            raise InputError(f"beta (weight of the contrastive term) must be >= 0, got {beta}")
        if not distill_weight >= 0:
            raise InputError(f"distill_weight (weight of the KL term) must be >= 0, got {distill_weight}")
        if beta == 0 and distill_weight == 0:
            raise InputError("beta and distill_weight are both 0: the loss would be 0")
        if not contrastive_temperature > 0:
            raise InputError(f"contrastive_temperature must be > 0, got {contrastive_temperature}")
        self.beta, self.distill_weight = float(beta), float(distill_weight)
        # with in-batch negatives the contrastive term is InfoNCE over the columns [query, c_1, ..., c_L]
        self.contrastive = InfoNCELoss(
            model, temperature=contrastive_temperature, similarity_fct=contrastive_similarity
        )

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], labels: Tensor | None) -> LossParts:  # type: ignore[override]
        """The weighted parts for columns ``[query, c_1 (judged positive), c_2, ..., c_L]``."""
        embeddings = list(embeddings)
        distill = super().compute_loss_from_embeddings(embeddings, labels)  # checks columns and labels
        if self.in_batch_negatives:
            contrastive = self.contrastive.compute_loss_from_embeddings(embeddings, None)
        else:  # each query against its own list: the diagonal blocks of the batch's score matrix
            query = embeddings[0]
            batch, width = int(query.size(0)), len(embeddings) - 1
            passages = torch.stack(embeddings[1:], dim=1).reshape(batch * width, -1)  # row r's list in turn
            scores = self.contrastive.similarity_fct(query, passages).view(batch, batch, width)
            rows = torch.arange(batch, device=query.device)
            logits = scores[rows, rows] * self.contrastive.scale
            contrastive = nn.functional.cross_entropy(logits, torch.zeros_like(rows))
        return LossParts(distill=self.distill_weight * distill, contrastive=self.beta * contrastive)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "beta": self.beta,
            "distill_weight": self.distill_weight,
            "contrastive_temperature": self.contrastive.temperature,
            "contrastive_similarity": self.contrastive.similarity_name,
        }

    @property
    def citation(self) -> str:
        return "Ren et al., arXiv 2110.07367; Hinton et al., arXiv 1503.02531"
