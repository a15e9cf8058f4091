"""Candidate lists for listwise distillation: the judged positive, hard and random negatives.

A list of ``L`` passages per (query, judged positive), drawn afresh every epoch:

- the positive, first;
- ``hard`` negatives drawn uniformly from the teacher's ``hard_depth`` highest-scored candidates
  that are not judged positive: what the student must learn to order;
- ``L - 1 - hard`` random negatives drawn uniformly from the rest of the scored candidates: what
  keeps the positive above the bulk of the collection (a list of hard negatives alone teaches the
  order of the top and nothing else).

Each list also carries the query's *floor*, its lowest teacher score over all its scored
candidates, which :class:`~irdistill.losses.ListwiseKLLoss` gives to in-batch negatives. This is
the sampling of RocketQAv2 (Ren et al., arXiv 2110.07367: a positive and negatives drawn from the
retriever's top candidates, scored by the teacher) with the hard/random split of dense-retrieval
training (Xiong et al., ANCE; Karpukhin et al., DPR).

:func:`spread_temperature` picks the softmax temperature from the teacher's own scores on these
lists: the median, over lists, of the standard deviation of a list's scores. At that ``τ`` a list's
teacher scores become z-scores before the softmax, so the teacher's distribution is neither one
hot (``τ`` far below the spread) nor flat (far above), whatever the teacher's scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from irdistill.errors import InputError
from irdistill.sampling.base import check_positive_int, epoch_rng

__all__ = ["CandidateList", "sample_lists", "spread_temperature"]


@dataclass(frozen=True)
class CandidateList:
    """One training list: ``pids[0]`` is the judged positive, ``scores`` the teacher's."""

    qid: str
    pids: tuple[str, ...]
    scores: tuple[float, ...]
    floor: float


def sample_lists(
    scores: Mapping[str, Mapping[str, float]],
    positives: Mapping[str, Sequence[str]],
    *,
    list_size: int,
    hard_negatives: int,
    hard_depth: int,
    seed: int,
    epoch: int,
) -> tuple[list[CandidateList], int]:
    """One epoch of lists, in query order then positive order.

    Args:
        scores: ``qid -> {pid: teacher score}`` of the scored candidates.
        positives: ``qid -> judged positive pids``; a positive the teacher did not score is
            skipped (the list needs its score).
        list_size: ``L`` >= 2, the positive included.
        hard_negatives: negatives drawn from the teacher's top ``hard_depth`` (at most ``L - 1``).
        hard_depth: how deep the hard region reaches in the teacher's ranking of the negatives.
        seed, epoch: the draw is a pure function of both.

    Returns:
        The lists, and the number of queries skipped for lacking a scored positive or ``L - 1``
        scored negatives.
    """
    check_positive_int("list_size", list_size, 2)
    check_positive_int("hard_depth", hard_depth)
    check_positive_int("hard_negatives", hard_negatives, 0)
    if hard_negatives > list_size - 1:
        raise InputError(f"hard_negatives ({hard_negatives}) cannot exceed list_size - 1 ({list_size - 1})")
    rng = epoch_rng(seed, epoch)
    lists: list[CandidateList] = []
    skipped = 0
    for qid in sorted(scores):
        docs = scores[qid]
        judged = set(positives.get(qid, ()))
        scored_positives = sorted(p for p in judged if p in docs)
        negatives = sorted((d for d in docs if d not in judged), key=lambda d: (-docs[d], d))
        if not scored_positives or len(negatives) < list_size - 1:
            skipped += 1
            continue
        floor = min(docs.values())
        hard_pool, rest = negatives[:hard_depth], negatives[hard_depth:]
        for positive in scored_positives:
            n_hard = min(hard_negatives, len(hard_pool))
            hard_idx = rng.choice(len(hard_pool), size=n_hard, replace=False)
            n_random = min(list_size - 1 - n_hard, len(rest))
            random_idx = rng.choice(len(rest), size=n_random, replace=False)
            chosen = [hard_pool[i] for i in sorted(hard_idx)] + [rest[i] for i in sorted(random_idx)]
            if len(chosen) < list_size - 1:  # few candidates below the hard region: more hard ones
                left = [d for d in hard_pool if d not in set(chosen)]
                fill = rng.choice(len(left), size=list_size - 1 - len(chosen), replace=False)
                chosen += [left[i] for i in sorted(fill)]
            pids = (positive, *chosen)
            lists.append(CandidateList(qid, pids, tuple(float(docs[p]) for p in pids), float(floor)))
    return lists, skipped


def spread_temperature(lists: Sequence[CandidateList], scale: float = 1.0) -> float:
    """The median over lists of the (population) standard deviation of ``scale`` x a list's
    teacher scores: a temperature matched to the teacher's spread on the lists it trains on."""
    if not lists:
        raise InputError("no candidate lists to choose a temperature from")
    spreads = np.array([np.std(np.asarray(c.scores, dtype=np.float64) * scale) for c in lists])
    tau = float(np.median(spreads))
    if not np.isfinite(tau) or tau <= 0:
        raise InputError(
            "the teacher's scores are constant within most candidate lists, so no "
            "temperature can be read from their spread; set temperature explicitly"
        )
    return tau
