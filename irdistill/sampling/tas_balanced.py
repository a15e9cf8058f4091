"""TAS-Balanced: topic-aware query batches with margin-balanced pairs.

Hofstätter, Lin, Yang, Lin, Hanbury: *Efficiently Teaching an Effective Dense Retriever with
Balanced Topic Aware Sampling*, SIGIR 2021, arXiv 2104.06967.

Procedure
---------

1. **Topic clusters (once).** The training queries are clustered with k-means on their
   embeddings (``n_clusters`` clusters; faiss ``Kmeans``, seeded; the paper uses 2000 clusters
   of the baseline retriever's query embeddings for MS MARCO). Embeddings are given as an array
   or computed with :class:`~irdistill.encoding.DenseEncoder` from a model name.
2. **Topic-aware batches (TAS).** Every batch draws its queries from one cluster, or from
   ``clusters_per_batch`` = ``k`` different clusters with equal shares ``batch_size / k``.
3. **Balanced margins (-Balanced).** For each drawn query ``q``, let
   ``M(q, p+, p-) = t(q, p+) - t(q, p-)`` be the teacher margin of each of its available pairs.
   The range ``[min_q M, max_q M]`` *of that query's own margins* is cut into ``h = n_bins``
   (10) bins of equal width ``w = (max_q M - min_q M) / h``; bin ``i`` holds the pairs with
   ``min_q M + i w <= M < min_q M + (i + 1) w``, and the maximum goes into the last bin. One
   bin is chosen uniformly among the **non-empty** bins, then one pair uniformly inside it.
   A query whose pairs all have the same margin (one pair, say) has a single bin.

   The bins are per query, not global. The bin edges follow the authors' reference
   implementation (matchmaker's ``TASBalancedDatasetLoader``: ``np.digitize`` of the query's
   margins over ``np.arange(min, max, (max - min) / 10)``, with an empty bin re-drawn until a
   non-empty one comes up, which is the same as choosing uniformly among the non-empty
   bins). Because each non-empty bin is equally likely, the rare large or small margins are
   drawn as often as the common ones, which is the point of the "Balanced" in the name.

Epochs, and where this differs from the reference code
------------------------------------------------------

The reference loader streams batches without end: for each batch it picks a cluster uniformly
(small clusters are therefore over-sampled), takes ``batch_size / k`` of its queries, or all of
them when the cluster is smaller, and then fills what is left from further random clusters.
Here an epoch is finite and reproducible so that it plugs into the Hugging Face trainer, and
**no query appears twice in a batch** (a copy's positive would be an in-batch "negative" with a
0 - 0 margin, and a small cluster would weigh several times its size):

- Each cluster's queries are shuffled and cut into *chunks* of ``share = batch_size / k``
  queries; the full chunks are single-topic.
- **Short remainders are filled from other clusters**, as the reference fills a short batch:
  what is left of every cluster (its last, short chunk, or all of a cluster smaller than
  ``share``) is pooled, cluster after cluster in a random cluster order, and cut into chunks of
  ``share`` as well, so a mixed chunk holds the remainders of a few clusters side by side.
- The chunks, in random order with the one short chunk (if any) last, make the batches, ``k``
  chunks each. Every query is in exactly one chunk: each is trained on exactly once per epoch,
  and a cluster contributes in proportion to its size. ``len(sampler) = ceil(N / batch_size)``
  for ``N`` queries.
- The last batch, when short, is topped up with queries drawn without replacement from those
  not in it (so a few queries are seen twice in the epoch, never twice in a batch). Only with
  fewer queries than ``batch_size`` is a batch short: it holds every query once.
- With ``k > 1`` the ``k`` chunks of a batch are ``k`` random chunks (usually of ``k``
  different clusters, not always).
- Queries whose pairs all share one margin are kept (one bin); the reference code drops them.
- **No passage twice in a batch** (``distinct_passages``, default on). Queries that share a
  judged positive cluster together (on SciFact 248 abstracts are the positive of two or more
  train claims), so in a topic batch one query's positive is often another's, an in-batch
  "negative" for it. Each query's pair is drawn (balanced, as above) among the pairs whose two
  passages the batch does not hold yet; a query with none left waits for a later batch, which
  takes waiting queries after its own; a batch still short is topped up with queries that fit.
  A query that fits no batch of the epoch is left out of it (counted). :attr:`last_plan`
  records, per plan, the share of single-topic batches and those counts.
- ``n_clusters=None`` sizes the clusters to hold about :data:`BATCHES_PER_CLUSTER` batches each
  (SciFact: 809 queries, batches of 32, 6 clusters); with clusters smaller than a batch, few
  batches can be single-topic (32 clusters of ~25 queries gave 7-10 of 26 an epoch).

Reused: faiss k-means (``faiss.Kmeans``), :class:`~irdistill.encoding.DenseEncoder` and its
embedding cache, NumPy's ``SeedSequence`` generators.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from irdistill.errors import InputError
from irdistill.sampling.base import SAMPLERS, Batch, PairSampler, check_positive_int, epoch_rng

logger = logging.getLogger(__name__)

__all__ = [
    "BATCHES_PER_CLUSTER",
    "TASBalancedSampler",
    "auto_clusters",
    "encode_queries",
    "kmeans_clusters",
    "margin_bins",
]

_NONE = np.empty(0, dtype=np.int64)

BATCHES_PER_CLUSTER = 4
"""With ``n_clusters=None``: queries / (this x batch size) clusters, at least 1."""

FIT_DRAWS = 8
"""Balanced draws tried for a query before its fitting pairs are scanned in random order."""


def auto_clusters(n_queries: int, batch_size: int) -> int:
    """The number of clusters that gives each about :data:`BATCHES_PER_CLUSTER` batches."""
    return max(1, round(n_queries / (BATCHES_PER_CLUSTER * batch_size)))


def margin_bins(margins: Sequence[float] | np.ndarray, n_bins: int = 10) -> np.ndarray:
    """The bin (``0 .. n_bins - 1``) of each margin: equal-width bins over ``[min, max]``.

    Bin ``i`` holds ``min + i w <= m < min + (i + 1) w`` with ``w = (max - min) / n_bins``; the
    maximum is in the last bin; when all margins are equal every one is in bin 0.

    Example:
        >>> margin_bins([0.0, 0.5, 1.0, 9.99, 10.0], n_bins=10).tolist()
        [0, 0, 1, 9, 9]
    """
    values = np.asarray(margins, dtype=np.float64)
    n_bins = check_positive_int("n_bins", n_bins)
    if values.ndim != 1 or values.size == 0:
        raise InputError(f"margins must be a non-empty 1-D sequence, got shape {values.shape}")
    low, high = float(values.min()), float(values.max())
    if not high > low:
        return np.zeros(values.shape, dtype=np.int64)
    index = np.floor((values - low) / (high - low) * n_bins).astype(np.int64)
    return np.clip(index, 0, n_bins - 1)


def kmeans_clusters(
    embeddings: np.ndarray, n_clusters: int, *, seed: int = 0, niter: int = 20, restarts: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded faiss k-means (L2): the cluster of each row and the centroids.

    Returns:
        ``(assignments, centroids)``: ``assignments[i]`` is the index of the centroid nearest
        to row ``i`` after training, ``centroids`` has shape ``(n_clusters, dim)``.
    """
    import faiss

    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < n_clusters:
        raise InputError(f"k-means needs at least {n_clusters} rows of 2-D embeddings, got shape {x.shape}")
    # faiss initialises from random points: one start often puts two centroids in one topic and
    # merges two others (15 of 20 seeds on six well-separated blobs); the best of 5 starts
    # (faiss's nredo, lowest objective) did so in 2 of 20
    kmeans = faiss.Kmeans(
        x.shape[1], n_clusters, niter=niter, seed=seed, verbose=False, nredo=restarts, min_points_per_centroid=1
    )
    kmeans.train(x)
    _, nearest = kmeans.index.search(x, 1)
    return nearest[:, 0].astype(np.int64), np.array(kmeans.centroids, dtype=np.float32)


def encode_queries(model: str, query_ids: Sequence[str], texts: Sequence[str], **encoder_options: Any) -> np.ndarray:
    """Query embeddings from a sentence-transformers model through :class:`DenseEncoder`
    (``side="query"``, so query prompts apply, and the embedding cache is used)."""
    from irdistill.encoding import DenseEncoder

    encoder = DenseEncoder(model, **encoder_options)
    return encoder.encode(list(query_ids), list(texts), side="query").embeddings


@SAMPLERS.register("tas-balanced")
class TASBalancedSampler(PairSampler):
    """Topic-aware, margin-balanced batches of (query, p+, p-, margin) (arXiv 2104.06967).

    See the module docstring for the procedure and how epochs are built.

    Args:
        query_ids: the training queries; each must have at least one pair.
        pairs_by_query: ``qid -> [(pos_pid, neg_pid, margin), ...]``, e.g. from
            :func:`~irdistill.sampling.pairs_from_scores`. Keys not in ``query_ids`` are unused.
        query_embeddings: one row per query in ``query_ids`` order, or the name of a
            sentence-transformers model (a folder, a name under ``$IRDISTILL_MODELS`` or a hub
            id) to encode ``query_texts`` with.
        batch_size: queries (examples) per batch; a multiple of ``clusters_per_batch``.
        n_clusters: k-means clusters; at most the number of queries. ``None``:
            :func:`auto_clusters` (about :data:`BATCHES_PER_CLUSTER` batches a cluster).
        clusters_per_batch: clusters each batch draws from, with equal shares.
        n_bins: margin bins per query (the paper's ``h = 10``).
        seed: seeds the k-means and every draw (``>= 0``).
        query_texts: the texts to encode when ``query_embeddings`` is a model name:
            ``qid -> text`` or a sequence in ``query_ids`` order.
        encoder_options: keyword arguments for :class:`~irdistill.encoding.DenseEncoder`
            (``batch_size``, ``device``, ``cache``, ...).
        kmeans_iterations: Lloyd iterations of the k-means.
        kmeans_restarts: k-means runs from different random starts; the one with the lowest
            objective is kept.
        distinct_passages: no passage twice in a batch (see the module's text); ``False`` is
            the first version, whose topic batches often held one query's positive as another's
            negative.

    Attributes:
        assignments: ``qid -> k-means cluster id``.
        centroids: the k-means centroids, ``(n_clusters, dim)``.
        clusters: the non-empty clusters as arrays of query positions (in ``query_ids``).
        cluster_ids: the k-means id of each entry of ``clusters``.
        share: queries per cluster in a batch, ``batch_size / clusters_per_batch``.
        last_plan: counts of the latest :meth:`plan`: ``batches``, ``single_topic`` (batches
            whose queries share one cluster), ``deferred`` (queries moved to a later batch),
            ``topped_up``, ``left_out``, ``repeated_passages`` (a passage's extra copies in a
            batch, summed; 0 with ``distinct_passages``).

    Raises:
        InputError: a bad size or count, a query without pairs (named), a non-finite margin,
            embeddings whose row count differs from the query count, fewer non-empty clusters
            than ``clusters_per_batch``.

    Example:
        >>> pairs = pairs_from_scores("scores/ce", collection.qrels)  # doctest: +SKIP
        >>> sampler = TASBalancedSampler(list(pairs), pairs, embeddings, batch_size=32,
        ...                              n_clusters=200)  # doctest: +SKIP
        >>> sampler.set_epoch(1)  # doctest: +SKIP
        >>> first = next(iter(sampler))  # 32 Examples from one cluster  # doctest: +SKIP
    """

    recipe_options: ClassVar[dict[str, str]] = {
        "n_clusters": "n_clusters",
        "clusters_per_batch": "clusters_per_batch",
        "n_bins": "n_bins",
        "distinct_passages": "distinct_passages",
    }

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
    ) -> TASBalancedSampler:
        """Clusters of the student's query embeddings; ``n_clusters`` is capped at the number
        of queries (a small training set)."""
        from irdistill.encoding import DenseEncoder

        qids = list(query_ids)
        embeddings = (
            DenseEncoder(encoder, show_progress_bar=show_progress_bar)
            .encode(qids, [query_texts[q] for q in qids], side="query")
            .embeddings
        )
        if options.get("n_clusters") is not None:
            options["n_clusters"] = min(options["n_clusters"], len(qids))
        return cls(qids, pairs_by_query, embeddings, batch_size, seed=seed, **options)

    def __init__(
        self,
        query_ids: Sequence[str],
        pairs_by_query: Mapping[str, Sequence[tuple[str, str, float]]],
        query_embeddings: np.ndarray | str,
        batch_size: int,
        n_clusters: int | None = None,
        clusters_per_batch: int = 1,
        n_bins: int = 10,
        seed: int = 0,
        *,
        query_texts: Mapping[str, str] | Sequence[str] | None = None,
        encoder_options: Mapping[str, Any] | None = None,
        kmeans_iterations: int = 20,
        kmeans_restarts: int = 5,
        distinct_passages: bool = True,
    ) -> None:
        super().__init__(query_ids, pairs_by_query, batch_size, seed)
        n_queries = len(self.query_ids)
        if n_clusters is None:
            n_clusters = min(auto_clusters(n_queries, self.batch_size), n_queries)
        self.n_clusters = check_positive_int("n_clusters", n_clusters)
        self.distinct_passages = bool(distinct_passages)
        self.last_plan: dict[str, int] = {}
        self.clusters_per_batch = check_positive_int("clusters_per_batch", clusters_per_batch)
        self.n_bins = check_positive_int("n_bins", n_bins)
        kmeans_iterations = check_positive_int("kmeans_iterations", kmeans_iterations)
        if self.n_clusters > n_queries:
            raise InputError(
                f"n_clusters={self.n_clusters} is more than the {n_queries} training "
                "queries; use at most one cluster per query"
            )
        if self.clusters_per_batch > self.n_clusters:
            raise InputError(f"clusters_per_batch={self.clusters_per_batch} is more than n_clusters={self.n_clusters}")
        if self.batch_size % self.clusters_per_batch:
            raise InputError(
                f"batch_size={self.batch_size} is not a multiple of "
                f"clusters_per_batch={self.clusters_per_batch}; each cluster of a "
                "batch takes an equal share"
            )
        self.share = self.batch_size // self.clusters_per_batch

        embeddings = self._embeddings(query_embeddings, query_texts, encoder_options)
        assign, self.centroids = kmeans_clusters(
            embeddings,
            self.n_clusters,
            seed=self.seed,
            niter=kmeans_iterations,
            restarts=check_positive_int("kmeans_restarts", kmeans_restarts),
        )
        self.assignments = dict(zip(self.query_ids, assign.tolist(), strict=True))
        self._cluster_of = np.asarray(assign, dtype=np.int64)
        ids = np.unique(assign)
        self.cluster_ids = ids
        self.clusters = [np.flatnonzero(assign == c) for c in ids]
        self._topic_rows = dict(zip(ids.tolist(), self.clusters, strict=True))
        if len(self.clusters) < self.clusters_per_batch:
            raise InputError(
                f"k-means left only {len(self.clusters)} non-empty clusters, fewer "
                f"than clusters_per_batch={self.clusters_per_batch}"
            )
        self._sizes = np.array([len(c) for c in self.clusters], dtype=np.int64)
        self._n_batches = math.ceil(n_queries / self.batch_size)
        self._bins = [self._binned(m) for m in self._margins]

        single = int((self._sizes // self.share).sum())
        logger.info(
            "TAS-Balanced: %d queries in %d non-empty clusters (sizes %d..%d, median %g); per "
            "epoch %d single-topic chunks of %d queries and %d queries in chunks mixed from the "
            "clusters' remainders; %d batches of %d",
            n_queries,
            len(self.clusters),
            self._sizes.min(),
            self._sizes.max(),
            float(np.median(self._sizes)),
            single,
            self.share,
            n_queries - single * self.share,
            self._n_batches,
            self.batch_size,
        )

    def __len__(self) -> int:
        return self._n_batches

    def plan(self, epoch: int) -> list[Batch]:
        epoch = check_positive_int("epoch", epoch, minimum=0)
        rng = epoch_rng(self.seed, epoch)
        chunks: list[np.ndarray] = []  # single-topic chunks of `share` queries
        remainders: list[np.ndarray] = []
        for cluster in rng.permutation(len(self.clusters)):
            order = rng.permutation(self.clusters[cluster])
            cut = len(order) - len(order) % self.share
            chunks.extend(order[i : i + self.share] for i in range(0, cut, self.share))
            remainders.append(order[cut:])
        pooled = np.concatenate(remainders)  # each cluster's remainder kept together
        mixed = [pooled[i : i + self.share] for i in range(0, len(pooled), self.share)]
        short = mixed.pop() if mixed and len(mixed[-1]) < self.share else _NONE
        chunks.extend(mixed)
        flat = np.concatenate([*(chunks[i] for i in rng.permutation(len(chunks))), short])
        groups = [flat[i : i + self.batch_size] for i in range(0, len(flat), self.batch_size)]
        if len(groups[-1]) < self.batch_size:
            groups[-1] = self._top_up(groups[-1], rng)
        if self.distinct_passages:
            batches = self._distinct(groups, rng)
        else:
            batches = [[self._example(int(q), self._draw(int(q), rng)) for q in rng.permutation(g)] for g in groups]
            self.last_plan = {"deferred": 0, "topped_up": 0, "left_out": 0}
        assign = self.assignments
        self.last_plan["batches"] = len(batches)
        self.last_plan["single_topic"] = sum(len({assign[e.qid] for e in b}) == 1 for b in batches)
        self.last_plan["repeated_passages"] = sum(
            2 * len(b) - len({p for e in b for p in (e.positive, e.negative)}) for b in batches
        )
        logger.debug("TAS-Balanced epoch %d: %s", epoch, self.last_plan)
        return batches

    # -- internals ---------------------------------------------------------------------------

    def _fitting_pair(self, query: int, used: set[str], rng: np.random.Generator) -> int | None:
        """A pair of ``query`` whose passages are not in ``used``: a balanced draw when one of
        :data:`FIT_DRAWS` fits, else a random fitting pair; ``None`` when none fits."""
        pairs = self.pairs[query]
        for _ in range(FIT_DRAWS):
            pair = self._draw(query, rng)
            pos, neg, _ = pairs[pair]
            if pos not in used and neg not in used:
                return pair
        for pair in rng.permutation(len(pairs)).tolist():
            pos, neg, _ = pairs[pair]
            if pos not in used and neg not in used:
                return int(pair)
        return None

    def _distinct(self, groups: list[np.ndarray], rng: np.random.Generator) -> list[Batch]:
        """``groups`` as batches of the same sizes without a passage twice in a batch.

        A batch takes its own queries that fit, then queries of its topic (the group's most common
        cluster) not placed yet this epoch, then unplaced queries of other topics, then, if still
        short, any query that fits (a repeat in the epoch, as the last batch's top-up is). A query
        that a batch could not take is placed by a later one; one that fits none is left out."""
        unplaced = np.ones(len(self.query_ids), dtype=bool)
        batches: list[Batch] = []
        deferred = topped_up = 0
        for group in groups:
            used: set[str] = set()
            batch: Batch = []
            members: set[int] = set()
            topic = int(np.bincount(self._cluster_of[group]).argmax())
            own = [int(q) for q in rng.permutation(group)]
            candidates = self._candidates(own, topic, unplaced, rng)
            while len(batch) < len(group):  # asks for the next candidate only while the batch is short
                found = next(candidates, None)
                if found is None:
                    break
                q, repeat = found
                if q in members or (not repeat and not unplaced[q]):
                    continue
                pair = self._fitting_pair(q, used, rng)
                if pair is None:
                    continue
                example = self._example(q, pair)
                batch.append(example)
                members.add(q)
                used.update((example.positive, example.negative))
                topped_up += bool(repeat and not unplaced[q])
                unplaced[q] = False
            deferred += sum(1 for q in own if q not in members and unplaced[q])
            batches.append(batch)
        left_out = int(unplaced.sum())
        self.last_plan = {"deferred": deferred, "topped_up": topped_up, "left_out": left_out}
        if left_out:
            logger.info("TAS-Balanced: %d queries fit no batch of this epoch without a repeated passage", left_out)
        return batches

    def _candidates(
        self, own: list[int], topic: int, unplaced: np.ndarray, rng: np.random.Generator
    ) -> Iterator[tuple[int, bool]]:
        """``(query, is a repeat)`` in the order :meth:`_distinct` tries them: the group's own
        queries, then unplaced queries of ``topic``, then unplaced ones of other topics, then any
        query (a repeat in the epoch). Each later stage is drawn only when the batch reaches it, so
        the batches their own queries fill (nearly all) never pass over every query: an epoch of
        MS MARCO has 15k batches of 32."""
        for q in own:
            yield q, False
        rows = self._topic_rows[topic]
        rows = rows[unplaced[rows]]
        for q in rows[rng.permutation(len(rows))].tolist():
            yield q, False
        rows = np.flatnonzero(unplaced & (self._cluster_of != topic))
        for q in rows[rng.permutation(len(rows))].tolist():
            yield q, False
        for q in rng.permutation(len(self.query_ids)).tolist():
            yield q, True

    def _top_up(self, group: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``group`` filled to ``batch_size`` with queries not in it, without replacement (all
        of them when there are too few)."""
        others = np.setdiff1d(np.arange(len(self.query_ids)), group, assume_unique=False)
        need = min(self.batch_size - len(group), len(others))
        return np.concatenate([group, rng.choice(others, size=need, replace=False)])

    def _binned(self, margins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pair indices grouped by bin, and the start of each non-empty bin (plus the end)."""
        bins = margin_bins(margins, self.n_bins)
        order = np.argsort(bins, kind="stable").astype(np.int64)
        counts = np.bincount(bins, minlength=self.n_bins)
        starts = np.concatenate([[0], np.cumsum(counts[counts > 0])]).astype(np.int64)
        return order, starts

    def _draw(self, query: int, rng: np.random.Generator) -> int:
        """A non-empty bin uniformly, then a pair uniformly inside it."""
        order, starts = self._bins[query]
        b = int(rng.integers(len(starts) - 1))
        return int(order[rng.integers(starts[b], starts[b + 1])])

    def _embeddings(
        self,
        given: np.ndarray | str,
        texts: Mapping[str, str] | Sequence[str] | None,
        options: Mapping[str, Any] | None,
    ) -> np.ndarray:
        n = len(self.query_ids)
        if isinstance(given, str):
            if texts is None:
                raise InputError(f"query_embeddings names a model ({given!r}); give query_texts to encode")
            if isinstance(texts, Mapping):
                missing = [q for q in self.query_ids if q not in texts]
                if missing:
                    raise InputError(f"query_texts has no text for query {missing[0]!r} ({len(missing)} missing)")
                ordered = [texts[q] for q in self.query_ids]
            else:
                ordered = list(texts)
                if len(ordered) != n:
                    raise InputError(f"query_texts holds {len(ordered)} texts for {n} query ids")
            given = encode_queries(given, self.query_ids, ordered, **dict(options or {}))
        try:
            array = np.asarray(given, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise InputError(f"query_embeddings is not a numeric array ({err})") from None
        if array.ndim != 2:
            raise InputError(f"query_embeddings must be 2-D (one row per query), got shape {array.shape}")
        if array.shape[0] != n:
            raise InputError(
                f"query_embeddings has {array.shape[0]} rows but there are {n} query "
                "ids; give one row per query, in query_ids order"
            )
        finite = np.isfinite(array).all(axis=1)
        if not finite.all():
            bad = int(np.argmin(finite))
            raise InputError(f"query_embeddings row {bad} (query {self.query_ids[bad]!r}) is not finite")
        return array
