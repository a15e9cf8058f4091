"""Distillation losses for students, one per module, found by name in ``LOSSES``.

Each is an ``nn.Module`` built from the student model like the sentence-transformers losses:
``forward(sentence_features, labels)`` embeds the input columns and calls a pure
``compute_loss_from_embeddings(embeddings, labels)``, which dense and sparse students share.

==================  ============================  ==================================================
name                class                         method
==================  ============================  ==================================================
``"margin-mse"``    :class:`MarginMSELoss`        Margin-MSE (arXiv 2010.02666)
``"tas-balanced"``  :class:`TASBalancedLoss`      pair + α · in-batch Margin-MSE (arXiv 2104.06967)
``"listwise-kl"``   :class:`ListwiseKLLoss`       KL / ListNet over a candidate list
``"infonce"``       :class:`InfoNCELoss`          InfoNCE with in-batch negatives (no teacher)
``"hybrid"``        :class:`HybridLoss`           Margin-MSE + β · InfoNCE on the judged positive
``"hybrid-kl"``     :class:`HybridListwiseLoss`   listwise KL + β · InfoNCE on the judged positive
==================  ============================  ==================================================

``IDFWeightedFlopsLoss`` (:mod:`.flops`) is a document regulariser of sparse students inside
sentence-transformers' ``SpladeLoss``, not a distillation loss, so it is not registered.

A new loss is one module registered with ``@LOSSES.register(name)`` that declares ``rows`` (a
:class:`Rows` layout the training driver builds) and ``recipe_options``, plus its import here.
"""

from __future__ import annotations

from irdistill.losses.base import LOSSES, LossParts, Rows
from irdistill.losses.flops import IDFWeightedFlopsLoss
from irdistill.losses.hybrid import HybridLoss
from irdistill.losses.hybrid_listwise import HybridListwiseLoss
from irdistill.losses.infonce import InfoNCELoss
from irdistill.losses.listwise_kl import ListwiseKLLoss
from irdistill.losses.margin_mse import MarginMSELoss
from irdistill.losses.tas_balanced import (
    FrozenBiEncoderTeacher,
    TASBalancedLoss,
    inbatch_margin_mse,
    inbatch_teacher_scores,
)

__all__ = [
    "LOSSES",
    "LossParts",
    "Rows",
    "MarginMSELoss",
    "TASBalancedLoss",
    "FrozenBiEncoderTeacher",
    "ListwiseKLLoss",
    "InfoNCELoss",
    "HybridLoss",
    "HybridListwiseLoss",
    "IDFWeightedFlopsLoss",
    "inbatch_margin_mse",
    "inbatch_teacher_scores",
]
