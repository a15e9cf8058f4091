"""What the distillation losses share: the ``LOSSES`` registry, similarity lookup by name,
label-shape checks, the dict of named loss parts, and the distributed-batch helpers.

The losses themselves live one per module (:mod:`irdistill.losses.margin_mse`,
:mod:`~irdistill.losses.tas_balanced`, :mod:`~irdistill.losses.listwise_kl`,
:mod:`~irdistill.losses.infonce`) and follow sentence-transformers: ``forward(features, labels)``
embeds the columns and calls a pure ``compute_loss_from_embeddings(embeddings, labels)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum

import torch
from sentence_transformers.util import cos_sim, dot_score, pairwise_cos_sim, pairwise_dot_score
from torch import Tensor, nn

from irdistill.errors import InputError
from irdistill.registry import Registry

__all__ = [
    "LOSSES",
    "LossParts",
    "Rows",
    "SimilarityFn",
    "check_columns",
    "distributed_rank_and_world",
    "matrix_similarity",
    "pairwise_similarity",
]

LOSSES: Registry[type[nn.Module]] = Registry("loss")
"""Loss classes by name: ``LOSSES.get("margin-mse")(model, **kwargs)``.

Every registered class declares two class attributes that the training driver
(:func:`irdistill.workflows.training.train_student`) reads, so that a new loss is one module and one import line:

- ``rows``: the :class:`Rows` layout it consumes;
- ``recipe_options``: ``{training-recipe key: constructor keyword}`` for the options a recipe
  may set (e.g. ``{"alpha": "alpha"}``).
"""


class Rows(str, Enum):
    """The training rows a loss consumes, built by :func:`irdistill.workflows.training.build_training_data`."""

    PAIRS = "pairs"
    """(query, positive, negative) from a pair sampler; label ``t(q, p+) - t(q, p-)``."""
    PAIRS_INBATCH = "pairs+inbatch"
    """The same rows; label: the margin, then an in-batch teacher's scores of the query against
    every passage of the (global) batch (``inbatch_teacher``)."""
    LISTS = "lists"
    """(query, c_1 .. c_L): the judged positive, hard and random negatives; label: the teacher's
    scores of the list, then the query's floor score (:mod:`irdistill.sampling.lists`)."""
    TRIPLES = "triples"
    """(query, judged positive, candidate negative); no label: judgements only, no teacher."""


SimilarityFn = Callable[[Tensor, Tensor], Tensor]
"""``(a, b) -> scores``: pairwise (``a[i]`` with ``b[i]``) or matrix (``a[i]`` with every ``b[j]``)."""

_PAIRWISE: dict[str, SimilarityFn] = {"dot": pairwise_dot_score, "cosine": pairwise_cos_sim}
_MATRIX: dict[str, SimilarityFn] = {"dot": dot_score, "cosine": cos_sim}


def _known(name: str) -> str:
    key = name.lower()
    if key not in _MATRIX:
        raise InputError(f"unknown similarity {name!r}; known: {', '.join(sorted(_MATRIX))}")
    return key


def pairwise_similarity(similarity: str | SimilarityFn) -> SimilarityFn:
    """The pairwise function ``s(a[i], b[i])`` for ``"dot"`` or ``"cosine"``; a callable is kept."""
    return _PAIRWISE[_known(similarity)] if isinstance(similarity, str) else similarity


def matrix_similarity(similarity: str | SimilarityFn) -> SimilarityFn:
    """The matrix function ``s(a[i], b[j])`` for ``"dot"`` or ``"cosine"``; a callable is kept."""
    return _MATRIX[_known(similarity)] if isinstance(similarity, str) else similarity


class LossParts(dict[str, Tensor]):
    """Named, already weighted parts of a composite loss.

    The sentence-transformers trainer logs each part under its name and optimises the *sum* of
    the values (``torch.stack(list(loss.values())).sum()``), so the total is deliberately not one
    of the entries: it is :attr:`total`.
    """

    @property
    def total(self) -> Tensor:
        return torch.stack(list(self.values())).sum()


def check_columns(loss_name: str, embeddings: Sequence[Tensor], minimum: int, expected: str) -> None:
    """At least ``minimum`` embedding columns of one batch size, or an :class:`InputError`."""
    if len(embeddings) < minimum:
        raise InputError(f"{loss_name} expects at least {minimum} input columns ({expected}), got {len(embeddings)}")
    sizes = {int(e.size(0)) for e in embeddings}
    if len(sizes) != 1:
        raise InputError(f"{loss_name}: every column must hold the same number of rows, got {sorted(sizes)}")


def distributed_rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` when not distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
