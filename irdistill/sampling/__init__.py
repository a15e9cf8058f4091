"""Pair samplers for Margin-MSE training: TAS-Balanced and the random baseline.

- :func:`pairs_from_scores`: teacher scores + qrels -> ``qid -> [Pair(p+, p-, margin)]``.
- :class:`TASBalancedSampler` (``"tas-balanced"``): topic-aware query batches with
  margin-balanced pairs (Hofstätter et al., arXiv 2104.06967).
- :class:`RandomPairSampler` (``"random"``): uniform query order, uniform pair per query.
- :func:`build_trainer_inputs`: a sampler's plan as a dataset plus the ``batch_sampler`` for
  ``SentenceTransformerTrainingArguments``.

``SAMPLERS`` finds the samplers by name. Importing this package stays light (NumPy only):
faiss, pyarrow and sentence-transformers are imported where they are used, and the trainer
glue is loaded on first access.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from irdistill.sampling.base import SAMPLERS, Batch, Example, PairSampler
from irdistill.sampling.pairs import Pair, PairsByQuery, pairs_from_scores
from irdistill.sampling.random_sampler import RandomPairSampler
from irdistill.sampling.tas_balanced import (
    TASBalancedSampler,
    encode_queries,
    kmeans_clusters,
    margin_bins,
)

_LAZY = {
    name: "irdistill.sampling.st_integration"
    for name in ("PlannedBatchSampler", "PlannedBatchSamplerFactory", "TrainerInputs", "build_trainer_inputs")
}

__all__ = [
    "SAMPLERS",
    "Batch",
    "Example",
    "PairSampler",
    "Pair",
    "PairsByQuery",
    "pairs_from_scores",
    "RandomPairSampler",
    "TASBalancedSampler",
    "encode_queries",
    "kmeans_clusters",
    "margin_bins",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
