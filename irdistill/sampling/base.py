"""What every pair sampler shares: the example type, the epoch protocol and the registry.

A pair sampler turns training queries and their (p+, p-) pairs with teacher margins (see
:mod:`irdistill.sampling.pairs`) into batches of :class:`Example` for Margin-MSE training. It is
a pure-Python/NumPy object with the protocol of a PyTorch batch sampler:

- ``plan(epoch)`` returns the batches of epoch ``epoch``; it is a pure function of the
  sampler's inputs, its ``seed`` and ``epoch`` (one NumPy generator seeded with
  ``SeedSequence([seed, epoch])``), so epochs differ and every epoch can be replayed;
- ``set_epoch(epoch)`` chooses the epoch that ``__iter__`` yields (as the Hugging Face trainer
  does for its samplers at the start of each epoch); iterating twice without it yields the
  same batches;
- ``len(sampler)`` is the number of batches of every epoch.

:mod:`irdistill.sampling.st_integration` feeds the batches to the sentence-transformers trainer.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np

from irdistill.errors import InputError
from irdistill.registry import Registry
from irdistill.sampling.pairs import QueryPairs

__all__ = ["Example", "Batch", "PairSampler", "SAMPLERS", "epoch_rng", "check_positive_int"]


class Example(NamedTuple):
    """One training example: a query, a (positive, negative) pair and the teacher margin
    ``t(q, positive) - t(q, negative)``."""

    qid: str
    positive: str
    negative: str
    margin: float


Batch = list[Example]

SAMPLERS: Registry[Any] = Registry("sampler")
"""Pair samplers by name: ``"tas-balanced"``, ``"random"``. The training driver builds one with
:meth:`PairSampler.for_training` and the recipe keys its ``recipe_options`` name."""


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of one epoch: a pure function of ``(seed, epoch)``."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch]))


def check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    """``value`` if it is an integer ``>= minimum``, else an :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class PairSampler(ABC):
    """Base class of the samplers: epoch bookkeeping and the checked query/pair inputs.

    Subclasses implement :meth:`plan` and ``__len__``, declare the training-recipe keys they
    take in ``recipe_options`` (``{recipe key: constructor keyword}``), and override
    :meth:`for_training` when they need more than the recipe's values (e.g. query embeddings).
    """

    recipe_options: ClassVar[dict[str, str]] = {}

    batch_size: int
    seed: int
    query_ids: list[str]
    pairs: list[Sequence[tuple[str, str, float]]]
    """The pairs of each query, in ``query_ids`` order (the caller's sequences, not copied)."""

    def __init__(
        self,
        query_ids: Sequence[str],
        pairs_by_query: Mapping[str, Sequence[tuple[str, str, float]]],
        batch_size: int,
        seed: int,
    ) -> None:
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.seed = check_positive_int("seed", seed, minimum=0)
        self.query_ids, self.pairs, self._margins = _check_queries(query_ids, pairs_by_query)
        self.epoch = 0

    @classmethod
    def for_training(
        cls,
        query_ids: Sequence[str],
        pairs_by_query: Mapping[str, Sequence[tuple[str, str, float]]],
        batch_size: int,
        seed: int,
        *,
        query_texts: Mapping[str, str],
        encoder: str,
        show_progress_bar: bool = False,
        **options: Any,
    ) -> PairSampler:
        """The sampler of a training recipe: ``options`` are its ``recipe_options`` values by
        constructor keyword; ``query_texts`` and ``encoder`` (the student) serve samplers that
        embed the queries."""
        return cls(query_ids, pairs_by_query, batch_size, seed, **options)

    @abstractmethod
    def plan(self, epoch: int) -> list[Batch]:
        """The batches of epoch ``epoch`` (deterministic for the sampler's seed)."""

    @abstractmethod
    def __len__(self) -> int:
        """Batches per epoch."""

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch that ``__iter__`` yields."""
        self.epoch = check_positive_int("epoch", epoch, minimum=0)

    def __iter__(self) -> Iterator[Batch]:
        yield from self.plan(self.epoch)

    def _example(self, query: int, pair: int) -> Example:
        pos, neg, _ = self.pairs[query][pair]
        return Example(self.query_ids[query], pos, neg, float(self._margins[query][pair]))


def _check_queries(
    query_ids: Sequence[str], pairs_by_query: Mapping[str, Sequence[tuple[str, str, float]]]
) -> tuple[list[str], list[Sequence[tuple[str, str, float]]], list[np.ndarray]]:
    """Query ids, their pair lists and their margins as float arrays; every problem named."""
    if isinstance(query_ids, str):
        raise InputError("query_ids must be a sequence of query ids, got a single string")
    qids = list(query_ids)
    if not qids:
        raise InputError("query_ids is empty: there is nothing to sample")
    seen: set[str] = set()
    pairs: list[Sequence[tuple[str, str, float]]] = []
    margins: list[np.ndarray] = []
    for qid in qids:
        if qid in seen:
            raise InputError(f"query id {qid!r} appears twice in query_ids")
        seen.add(qid)
        query_pairs = pairs_by_query.get(qid)
        if not query_pairs:
            where = "is not in pairs_by_query" if query_pairs is None else "has an empty pair list"
            raise InputError(
                f"query {qid!r} has no (positive, negative) pairs (it {where}); drop "
                "it from query_ids or give it a scored positive and negative"
            )
        if isinstance(query_pairs, QueryPairs):  # columnar, from checked scores: margins in one step
            pairs.append(query_pairs)
            margins.append(query_pairs.margins())
            continue
        for index, pair in enumerate(query_pairs):
            if len(pair) != 3:
                raise InputError(
                    f"query {qid!r}, pair {index} (0-based): expected (positive id, negative id, margin), got {pair!r}"
                )
        try:
            values = np.fromiter((pair[2] for pair in query_pairs), dtype=np.float64, count=len(query_pairs))
        except (TypeError, ValueError):
            bad = next(i for i, p in enumerate(query_pairs) if not _is_number(p[2]))
            raise InputError(
                f"query {qid!r}, pair {bad} (0-based): margin {query_pairs[bad][2]!r} is not a number"
            ) from None
        finite = np.isfinite(values)
        if not finite.all():
            bad = int(np.argmin(finite))
            raise InputError(
                f"query {qid!r}, pair {bad} (0-based): margin is {values[bad]}; teacher margins must be finite"
            )
        pairs.append(query_pairs)
        margins.append(values)
    return qids, pairs, margins


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def batches_of(order: np.ndarray, batch_size: int, drop_last: bool = False) -> list[np.ndarray]:
    """``order`` cut into consecutive chunks of ``batch_size`` (the last one may be short)."""
    count = len(order) // batch_size if drop_last else math.ceil(len(order) / batch_size)
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(count)]
