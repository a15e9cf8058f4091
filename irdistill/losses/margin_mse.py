"""Margin-MSE: cross-architecture distillation of a teacher's score margins (arXiv 2010.02666)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sentence_transformers.sentence_transformer.losses import MarginMSELoss as _STMarginMSELoss
from sentence_transformers.util import similarity_fct_name
from torch import Tensor

from irdistill.errors import InputError
from irdistill.losses.base import LOSSES, Rows, SimilarityFn, check_columns, pairwise_similarity

__all__ = ["MarginMSELoss", "margin_labels"]


def margin_labels(labels: Tensor | None, batch_size: int, n_neg: int, loss_name: str) -> Tensor:
    """Teacher labels as margins of shape ``(batch_size, n_neg)``.

    Accepts margins ``t(q, p+) - t(q, p-_i)`` shaped ``(batch,)`` (one negative only) or
    ``(batch, n_neg)``, or raw teacher scores ``[t(q, p+), t(q, p-_1), ..., t(q, p-_n)]`` shaped
    ``(batch, n_neg + 1)``. Anything else is an :class:`~irdistill.errors.InputError` that lists
    the shapes this batch accepts.
    """
    accepted = [(batch_size, n_neg), (batch_size, n_neg + 1)]
    if n_neg == 1:
        accepted.insert(0, (batch_size,))
    if labels is None:
        raise InputError(
            f"{loss_name} needs teacher labels of shape {' or '.join(map(str, accepted))}, got none; "
            "add a 'label' column with the teacher margins or scores"
        )
    shape = tuple(labels.shape)
    if shape not in accepted:
        raise InputError(
            f"{loss_name}: expected teacher labels of shape {' or '.join(map(str, accepted))} for a batch "
            f"of {batch_size} queries with {n_neg} negative column(s) (margins t(q,p+) - t(q,p-_i), or raw "
            f"scores [t(q,p+), t(q,p-_1), ...]), got {shape}"
        )
    labels = labels.detach()
    if shape == (batch_size, n_neg + 1):
        return labels[:, :1] - labels[:, 1:]
    return labels.reshape(batch_size, n_neg)


@LOSSES.register("margin-mse")
class MarginMSELoss(_STMarginMSELoss):
    """Margin-MSE: the student's score margins regress onto the teacher's margins.

    ``L = mean_{q, i} ((s(q, p+) - s(q, p-_i)) - (t(q, p+) - t(q, p-_i)))^2``

    with ``s`` the student's similarity of query and passage embeddings (dot product by default,
    as in the paper), ``t`` the teacher's score (a cross-encoder, or the mean of several), and the
    mean taken over the queries ``q`` of the batch and their negatives ``i = 1..n``.

    Reuses :class:`sentence_transformers.sentence_transformer.losses.MarginMSELoss` (which in
    sentence-transformers 6.2 already handles one or several negatives and margin or raw-score
    labels); this subclass registers it as ``"margin-mse"``, takes the similarity by name, and
    checks the columns and label shapes up front with a message that lists what the batch
    accepts. ``compute_loss_from_embeddings`` works on any student's embeddings (dense or the
    vocabulary-sized vectors of a sparse encoder).

    Args:
        model: the student ``SentenceTransformer`` (or ``SparseEncoder``); ``None`` is allowed when
            only :meth:`compute_loss_from_embeddings` is used.
        similarity_fct: ``"dot"`` (default), ``"cosine"``, or a pairwise callable
            ``(a, b) -> s(a[i], b[i])``.

    References:
        Hofstätter et al., "Improving Efficient Neural Ranking Models with Cross-Architecture
        Knowledge Distillation", arXiv 2010.02666.

    Inputs:
        +------------------------------------------------+-------------------------------------------------------------+
        | Inputs (columns)                               | Labels                                                      |
        +================================================+=============================================================+
        | (query, positive, negative)                    | ``(batch,)``: t(q, p+) - t(q, p-)                           |
        +------------------------------------------------+-------------------------------------------------------------+
        | (query, positive, negative_1, ..., negative_n) | ``(batch, n)``: t(q, p+) - t(q, p-_i) for i = 1..n          |
        +------------------------------------------------+-------------------------------------------------------------+
        | (query, positive, negative_1, ..., negative_n) | ``(batch, n + 1)``: [t(q, p+), t(q, p-_1), ..., t(q, p-_n)] |
        +------------------------------------------------+-------------------------------------------------------------+

    Example:
        >>> import torch
        >>> from irdistill.losses import MarginMSELoss
        >>> loss = MarginMSELoss(model=None)  # the pure part needs no model
        >>> q = torch.tensor([[1.0, 0.0]])
        >>> pos, neg = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.0]])
        >>> loss.compute_loss_from_embeddings([q, pos, neg], torch.tensor([3.0]))  # (2 - 1 - 3)^2
        tensor(4.)

        Training (``train_dataset`` has columns query, positive, negative, label)::

            trainer = SentenceTransformerTrainer(model=student, train_dataset=train_dataset,
                                                 loss=MarginMSELoss(student))
    """

    rows: ClassVar[Rows] = Rows.PAIRS
    recipe_options: ClassVar[dict[str, str]] = {}

    def __init__(self, model: Any, similarity_fct: str | SimilarityFn = "dot") -> None:
        super().__init__(model, similarity_fct=pairwise_similarity(similarity_fct))
        self.similarity_name = similarity_fct if isinstance(similarity_fct, str) else None

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], labels: Tensor | None) -> Tensor:
        """Margin-MSE of embedding columns ``[query, positive, negative_1, ...]`` (each ``(batch, dim)``)."""
        embeddings = list(embeddings)
        check_columns(type(self).__name__, embeddings, 3, "query, positive, negative_1, ...")
        batch_size, n_neg = int(embeddings[0].size(0)), len(embeddings) - 2
        margins = margin_labels(labels, batch_size, n_neg, type(self).__name__)
        margins = margins.to(device=embeddings[0].device, dtype=embeddings[0].dtype)
        return super().compute_loss_from_embeddings(embeddings, margins)

    def get_config_dict(self) -> dict[str, Any]:
        return {"similarity_fct": self.similarity_name or similarity_fct_name(self.similarity_fct)}
