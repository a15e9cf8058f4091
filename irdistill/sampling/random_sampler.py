"""The random pair sampler: the baseline TAS-Balanced is compared with.

Each epoch is a uniform random permutation of the training queries cut into batches of
``batch_size`` (the last one shorter, or dropped with ``drop_last``); each query takes one of
its (p+, p-) pairs uniformly at random, whatever its teacher margin. This is the "random
sampling" baseline of Hofstätter et al., arXiv 2104.06967 (Margin-MSE training without topic
aware or balanced sampling).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from irdistill.sampling.base import SAMPLERS, Batch, PairSampler, batches_of, epoch_rng

__all__ = ["RandomPairSampler"]


@SAMPLERS.register("random")
class RandomPairSampler(PairSampler):
    """Uniform query order, uniform pair per query.

    Args:
        query_ids: the training queries; each must have at least one pair.
        pairs_by_query: ``qid -> [(pos_pid, neg_pid, margin), ...]``, e.g. from
            :func:`~irdistill.sampling.pairs_from_scores`.
        batch_size: queries per batch.
        seed: seed of every random choice (``>= 0``).
        drop_last: drop the last, shorter batch of each epoch.

    Example:
        >>> sampler = RandomPairSampler(["q1", "q2", "q3"], pairs, batch_size=2)  # doctest: +SKIP
        >>> len(sampler), [len(batch) for batch in sampler]  # doctest: +SKIP
        (2, [2, 1])
    """

    def __init__(
        self,
        query_ids: Sequence[str],
        pairs_by_query: Mapping[str, Sequence[tuple[str, str, float]]],
        batch_size: int,
        seed: int = 0,
        *,
        drop_last: bool = False,
    ) -> None:
        super().__init__(query_ids, pairs_by_query, batch_size, seed)
        self.drop_last = bool(drop_last)
        self._counts = [len(p) for p in self.pairs]

    def __len__(self) -> int:
        n = len(self.query_ids)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def plan(self, epoch: int) -> list[Batch]:
        rng = epoch_rng(self.seed, epoch)
        order = rng.permutation(len(self.query_ids))
        return [
            [self._example(int(q), int(rng.integers(self._counts[q]))) for q in chunk]
            for chunk in batches_of(order, self.batch_size, self.drop_last)
        ]
