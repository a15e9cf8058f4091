"""An IDF-weighted FLOPS regulariser for sparse students (an ablation; see the class)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from irdistill.errors import InputError

__all__ = ["IDFWeightedFlopsLoss"]

logger = logging.getLogger(__name__)


class IDFWeightedFlopsLoss(nn.Module):
    r"""FLOPS with a per-token penalty that falls as IDF rises (an irdistill variant, off by default).

    For a batch of ``N`` document vectors ``w^{(d_i)}`` over the vocabulary ``V``:

        ``ℓ = sum_{j in V} ( (1/N) sum_{i=1..N} w_j^{(d_i)} / max(idf(t_j), ε) )^2``

    i.e. sentence-transformers' ``FlopsLoss`` (``sum_j (mean_i w_j^{(d_i)})^2``, Paria et al.,
    arXiv 2004.05665) on the document vectors divided term-wise by the (floored) IDF, so frequent,
    low-IDF tokens (long posting lists) are penalised more and rare ones less. Special tokens (IDF 0)
    get the largest weight, ``1/ε``.

    .. note::
        This is *not* the IDF-aware penalty of Geng et al. (arXiv 2411.04403): there the IDF enters
        through the inference-free student's IDF query tower, with plain FLOPS on the documents (see
        the module docstring), which is :func:`train_sparse_student`'s default for such a student.
        With an IDF query tower this class counts the IDF a second time; use it to ablate how
        strongly common tokens are pushed out, or to give a siamese SPLADE an IDF-shaped penalty.

    Use it as the ``document_regularizer`` of ``SpladeLoss`` (as :func:`train_sparse_student` does
    with ``flops_weights``); like ``FlopsLoss`` it is not a loss on its own.

    Args:
        model: the student (kept for symmetry with ``FlopsLoss``).
        idf: vocabulary-sized IDF vector (e.g. :func:`compute_idf` or :func:`student_idf`).
        min_idf: the floor ``ε`` of the IDF, so the penalty weight is at most ``1/ε``.
        threshold: as ``FlopsLoss``: only documents with more than this many non-zeros count.

    References:
        Geng, Ru, Yang: Towards Competitive Search Relevance For Inference-Free Learned Sparse
        Retrievers, arXiv 2411.04403. Paria et al.: Minimizing FLOPs to Learn Efficient Sparse
        Representations, arXiv 2004.05665.

    Example:
        >>> import torch
        >>> reg = IDFWeightedFlopsLoss(None, torch.tensor([0.0, 0.5, 1.0, 2.0]), min_idf=0.5)
        >>> w = torch.tensor([[1.0, 0.0, 2.0, 4.0], [0.0, 2.0, 0.0, 0.0]])
        >>> float(reg.compute_loss_from_embeddings(w))  # (1·2/2)² + (2·2/2)² + (2/2)² + (4·0.5/2)²
        7.0
    """

    def __init__(self, model: Any, idf: Any, *, min_idf: float = 0.5, threshold: float | None = None) -> None:
        super().__init__()
        if min_idf <= 0:
            raise InputError(f"min_idf must be > 0, got {min_idf}")
        values = torch.as_tensor(np.asarray(idf.detach().cpu() if hasattr(idf, "detach") else idf, dtype=np.float32))
        if values.ndim != 1 or not torch.isfinite(values).all():
            raise InputError(f"idf must be a finite 1-D vector, got shape {tuple(values.shape)}")
        self.model = model
        self.min_idf = float(min_idf)
        self.threshold = threshold
        self.register_buffer("penalty", 1.0 / values.clamp(min=self.min_idf), persistent=False)

    def forward(self, sentence_features: Any, labels: Any = None) -> Tensor:
        raise NotImplementedError(
            "IDFWeightedFlopsLoss is a regulariser: use it as the document_regularizer "
            "of sentence_transformers' SpladeLoss"
        )

    def compute_loss_from_embeddings(self, embeddings: Tensor) -> Tensor:
        if embeddings.shape[-1] != self.penalty.shape[0]:
            raise InputError(
                f"IDFWeightedFlopsLoss: embeddings have {embeddings.shape[-1]} dimensions but the "
                f"IDF vector {self.penalty.shape[0]}"
            )
        if embeddings.is_sparse:
            embeddings = embeddings.to_dense()
        if self.threshold is not None:
            active = (embeddings != 0).sum(dim=1)
            embeddings = embeddings * (active > self.threshold).to(embeddings.dtype).unsqueeze(1)
        penalty = self.penalty.to(device=embeddings.device, dtype=embeddings.dtype)
        return torch.sum(torch.mean(embeddings * penalty, dim=0) ** 2)

    def get_config_dict(self) -> dict[str, Any]:
        return {"min_idf": self.min_idf, "threshold": self.threshold}

    @property
    def citation(self) -> str:
        return """
@article{geng2024competitive,
    title={Towards Competitive Search Relevance For Inference-Free Learned Sparse Retrievers},
    author={Geng, Zhichao and Ru, Dongyu and Yang, Yang},
    journal={arXiv preprint arXiv:2411.04403},
    year={2024}
}
"""
