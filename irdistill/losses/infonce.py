"""InfoNCE with in-batch negatives: the relevance-label-only baseline (no teacher)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from torch import Tensor

from irdistill.errors import InputError
from irdistill.losses.base import LOSSES, Rows, SimilarityFn, check_columns, matrix_similarity

__all__ = ["InfoNCELoss"]


@LOSSES.register("infonce")
class InfoNCELoss(MultipleNegativesRankingLoss):
    """InfoNCE: each query's positive against every passage of the batch, softmax at temperature τ.

    ``L = -mean_i log( exp(s(q_i, p_i+) / τ) / sum_{p in P} exp(s(q_i, p) / τ) )``

    with ``P`` every passage of the batch: all positives and all hard-negative columns (the other
    queries' passages are the in-batch negatives). No teacher is involved: the positive column is
    the label, which makes this the baseline the distillation losses are compared with.

    This is :class:`sentence_transformers.sentence_transformer.losses.MultipleNegativesRankingLoss`
    (default ``directions=("query_to_doc",)``) registered as ``"infonce"``, parameterised by the
    temperature ``τ`` (``scale = 1 / τ``) and a similarity name; other keyword arguments
    (``directions``, ``partition_mode``, ``hardness_mode``, ...) are passed through. With
    ``gather_across_devices=True`` the passages come from the global batch under DDP (as
    sentence-transformers does it: gathered with gradients, no world-size factor).

    Args:
        model: the student ``SentenceTransformer`` (or ``SparseEncoder``); ``None`` is allowed when
            only :meth:`compute_loss_from_embeddings` is used.
        temperature: ``τ``; 0.05 (scale 20) is the sentence-transformers default.
        similarity_fct: ``"cosine"`` (default), ``"dot"``, or a matrix callable.
        gather_across_devices: in-batch negatives from every rank under DDP.
        **kwargs: passed to ``MultipleNegativesRankingLoss``.

    References:
        van den Oord et al., "Representation Learning with Contrastive Predictive Coding",
        arXiv 1807.03748; Karpukhin et al., "Dense Passage Retrieval", arXiv 2004.04906.

    Inputs:
        +-------------------------------------------------+--------+
        | Inputs (columns)                                | Labels |
        +=================================================+========+
        | (query, positive)                               | none   |
        +-------------------------------------------------+--------+
        | (query, positive, negative_1, ..., negative_n)  | none   |
        +-------------------------------------------------+--------+

    Example:
        >>> import torch
        >>> from irdistill.losses import InfoNCELoss
        >>> loss = InfoNCELoss(model=None, temperature=1.0, similarity_fct="dot")
        >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # logits [[1, 0], [0, 1]]
        >>> round(loss.compute_loss_from_embeddings([q, p], None).item(), 4)  # -log(e / (e + 1))
        0.3133

        Training (``train_dataset`` has columns query, positive[, negative...] and no label)::

            trainer = SentenceTransformerTrainer(model=student, train_dataset=train_dataset,
                                                 loss=InfoNCELoss(student, temperature=0.05))
    """

    rows: ClassVar[Rows] = Rows.TRIPLES
    recipe_options: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        model: Any,
        temperature: float = 0.05,
        similarity_fct: str | SimilarityFn = "cosine",
        gather_across_devices: bool = False,
        **kwargs: Any,
    ) -> None:
        if not temperature > 0:
            raise InputError(f"temperature must be positive, got {temperature}")
        super().__init__(
            model,
            scale=1.0 / temperature,
            similarity_fct=matrix_similarity(similarity_fct),
            gather_across_devices=gather_across_devices,
            **kwargs,
        )
        self.similarity_name = similarity_fct if isinstance(similarity_fct, str) else None

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        """InfoNCE of columns ``[query, positive, negative_1, ...]``; ``labels`` must be ``None``."""
        name = type(self).__name__
        embeddings = list(embeddings)
        check_columns(name, embeddings, 2, "query, positive[, negative_1, ...]")
        if labels is not None:
            raise InputError(
                f"{name} takes no labels (the positive column is the label): expected none, got a "
                f"tensor of shape {tuple(labels.shape)}; drop the label/score column or use a "
                "distillation loss"
            )
        return super().compute_loss_from_embeddings(embeddings, labels)

    def get_config_dict(self) -> dict[str, Any]:
        config = super().get_config_dict()
        config["temperature"] = self.temperature
        if self.similarity_name:
            config["similarity_fct"] = self.similarity_name
        return config
