"""Train with a pair sampler's batches in the sentence-transformers trainer.

How it plugs in (sentence-transformers 6.2, ``sentence_transformers.base``):
``SentenceTransformerTrainingArguments.batch_sampler`` accepts, besides the ``BatchSamplers``
names, a ``DefaultBatchSampler`` subclass or *any callable*; ``get_batch_sampler`` calls it as
``batch_sampler(dataset, batch_size=, drop_last=, valid_label_columns=, generator=, seed=)``
and the result becomes the ``batch_sampler`` of the training ``DataLoader`` (accelerate keeps
it as is in one process and wraps it in ``BatchSamplerShard`` under DDP). At the start of each
epoch the trainer calls ``set_epoch(epoch)`` on it (directly, or through accelerate's
``DataLoaderShard``), and ``len()`` of it sets the steps per epoch.

So :func:`build_trainer_inputs` materialises the sampler's plan of ``epochs`` epochs as one
``datasets.Dataset`` with the columns ``query, positive, negative, label`` (the texts, and
``label = [t(q, p+) - t(q, p-)]`` as :class:`~sentence_transformers.losses.MarginMSELoss`
reads it), rows in plan order, epoch after epoch. Its ``batch_sampler`` is a picklable
factory that returns a :class:`PlannedBatchSampler` (a ``DefaultBatchSampler``) for that
dataset: ``set_epoch(e)`` selects epoch ``e``'s rows and ``__iter__`` yields each planned batch
as its row indices, so the trainer's batches are exactly the sampler's batches, in order. For
any other dataset (an ``eval_dataset`` goes through the same argument) the factory returns a
plain sequential ``DefaultBatchSampler``.

Under DDP, accelerate hands whole planned batches to the ranks in turn (batch ``i`` to rank
``i % world_size``), so each device's batch is one TAS batch; every rank must build the same
plan (same inputs and seed).

Reused: the sentence-transformers trainer, its ``DefaultBatchSampler`` and data collator, the
Hugging Face ``datasets.Dataset``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from irdistill.data.collection import Collection
from irdistill.data.store import corpus_rows
from irdistill.errors import InputError, MissingDependencyError
from irdistill.sampling.base import Batch, PairSampler, check_positive_int

try:  # sentence-transformers >= 6 moved the samplers to sentence_transformers.base
    from sentence_transformers.base.sampler import DefaultBatchSampler
except ImportError:  # pragma: no cover - sentence-transformers 3.x - 5.x
    from sentence_transformers.sampler import DefaultBatchSampler

if TYPE_CHECKING:
    import datasets
    import torch

logger = logging.getLogger(__name__)

__all__ = ["PlannedBatchSampler", "PlannedBatchSamplerFactory", "TrainerInputs", "build_trainer_inputs"]

COLUMNS = ("query", "positive", "negative", "label")


class PlannedBatchSampler(DefaultBatchSampler):
    """Yields the row indices of the planned batches of the current epoch.

    Args:
        dataset, batch_size, drop_last, valid_label_columns, generator, seed: what the trainer
            passes to every batch sampler (``drop_last`` is ignored: the plan fixes the batches).
        epoch_offsets: per epoch, the row where each batch starts, plus the end row.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        *,
        epoch_offsets: list[np.ndarray],
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        if not epoch_offsets or len({len(o) for o in epoch_offsets}) != 1:
            raise InputError("epoch_offsets must hold the same number of batches for every epoch")
        self.epoch_offsets = epoch_offsets

    def set_epoch(self, epoch: int) -> None:
        epoch = check_positive_int("epoch", epoch, minimum=0)
        if epoch >= len(self.epoch_offsets):
            raise InputError(
                f"the trainer started epoch {epoch}, but the training set holds "
                f"{len(self.epoch_offsets)} planned epoch(s); build it with "
                f"build_trainer_inputs(..., epochs={epoch + 1}) or more, or lower "
                "num_train_epochs / max_steps"
            )
        super().set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        offsets = self.epoch_offsets[self.epoch]
        for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
            yield list(range(start, end))

    def __len__(self) -> int:
        return len(self.epoch_offsets[0]) - 1


@dataclass
class PlannedBatchSamplerFactory:
    """The value for ``SentenceTransformerTrainingArguments(batch_sampler=...)``.

    Holds only the batch boundaries and the training set's fingerprint (not the data), so the
    training arguments stay small when the trainer pickles them into a checkpoint.
    """

    epoch_offsets: list[np.ndarray]
    batch_size: int
    num_rows: int
    fingerprint: str | None

    def is_training_set(self, dataset: Any) -> bool:
        return len(dataset) == self.num_rows and getattr(dataset, "_fingerprint", None) == self.fingerprint

    def __call__(
        self,
        dataset: Any,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> DefaultBatchSampler:
        if not self.is_training_set(dataset):
            from torch.utils.data import SequentialSampler

            logger.debug("dataset of %d rows is not the planned training set; sequential batches", len(dataset))
            return DefaultBatchSampler(
                SequentialSampler(dataset),
                batch_size=batch_size,
                drop_last=drop_last,
                valid_label_columns=valid_label_columns,
                generator=generator,
                seed=seed,
            )
        if batch_size != self.batch_size:
            raise InputError(
                f"the trainer asks for batches of {batch_size}, but the sampler "
                f"planned batches of {self.batch_size}; set "
                f"per_device_train_batch_size={self.batch_size}"
            )
        return PlannedBatchSampler(
            dataset, batch_size, drop_last, valid_label_columns, generator, seed, epoch_offsets=self.epoch_offsets
        )


def one_label_a_row(values: np.ndarray) -> pa.Array:
    """``values`` as a list column of one entry a row (``label = [margin]``, as
    ``MarginMSELoss`` reads it)."""
    return pa.ListArray.from_arrays(pa.array(np.arange(len(values) + 1, dtype=np.int32)), pa.array(values))


class BatchTexts:
    """The ``datasets`` transform of a training set: a batch's stored row numbers to its texts.

    The training set stores ``query`` (a row of :attr:`queries`), ``positive`` and ``negative``
    (rows of the corpus) as integers and ``label``; the texts are fetched when the trainer takes
    a batch, so the set holds 20-odd bytes a row whatever the text lengths (MS MARCO: 502,939 rows
    an epoch), and passages come from the memory-mapped corpus store.
    """

    def __init__(self, query_ids: list[str], queries: list[str], corpus: Any) -> None:
        self.query_ids = query_ids
        self.queries = queries
        self.corpus = corpus

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {
            "query": [self.queries[i] for i in batch["query"]],
            "positive": self.corpus.texts(batch["positive"]),
            "negative": self.corpus.texts(batch["negative"]),
            "label": batch["label"],
        }


@dataclass
class TrainerInputs:
    """A training set laid out as a sampler's plan, and the batch sampler that replays it.

    ``dataset`` yields texts (:class:`BatchTexts` on top of ``rows``, the stored integers).
    """

    dataset: datasets.Dataset
    batch_sampler: PlannedBatchSamplerFactory
    batch_size: int
    epochs: int
    plans: list[list[Batch]] = field(repr=False)
    """``plans[epoch][batch]``: the :class:`~irdistill.sampling.base.Example` s, row order."""
    rows: datasets.Dataset | None = field(default=None, repr=False)
    texts: BatchTexts | None = field(default=None, repr=False)

    def training_arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``SentenceTransformerTrainingArguments`` that must match."""
        return {
            "per_device_train_batch_size": self.batch_size,
            "num_train_epochs": self.epochs,
            "batch_sampler": self.batch_sampler,
        }

    def margins(self) -> np.ndarray:
        """Every row's teacher margin, in row order, in float64 as planned (the stored ``label``
        column holds them as float32, and :meth:`relabel` may have replaced it): a label computed
        from a margin is rounded to float32 once, as the trainer's collator would round it."""
        count = sum(len(batch) for plan in self.plans for batch in plan)
        margins = (example.margin for plan in self.plans for batch in plan for example in batch)
        return np.fromiter(margins, dtype=np.float64, count=count)

    def relabel(self, labels: Any) -> None:
        """Replace every row's label (an Arrow array or a list, one entry a row) and re-point the
        batch sampler at the new set (it recognises its training set by fingerprint)."""
        assert self.rows is not None and self.texts is not None
        self.rows = self.rows.remove_columns("label").add_column("label", labels)
        self.dataset = self.rows.with_transform(self.texts)
        self.batch_sampler.fingerprint = getattr(self.dataset, "_fingerprint", None)


def _even_batches(plan: list[Batch], size: int) -> list[Batch]:
    """``plan`` with every short batch filled to ``size`` (as far as the epoch allows) from the
    epoch's other examples in plan order, skipping those whose query or passages the batch holds:
    under DDP a rank with a shorter batch breaks the losses' all_gather (the random sampler's last
    batch), so every rank's batches must be equal."""
    out = []
    pool = [example for batch in plan for example in batch]
    for batch in plan:
        if len(batch) >= size:
            out.append(batch)
            continue
        filled = list(batch)
        queries = {e.qid for e in filled}
        passages = {p for e in filled for p in (e.positive, e.negative)}
        for example in pool:
            if len(filled) == size:
                break
            if example.qid in queries or example.positive in passages or example.negative in passages:
                continue
            filled.append(example)
            queries.add(example.qid)
            passages.update((example.positive, example.negative))
        out.append(filled)
    return out


def build_trainer_inputs(
    sampler: PairSampler, collection: Collection, *, epochs: int = 1, world_size: int = 1
) -> TrainerInputs:
    """Materialise ``epochs`` epochs of ``sampler`` for the sentence-transformers trainer.

    Args:
        sampler: a :class:`~irdistill.sampling.TASBalancedSampler`, a
            :class:`~irdistill.sampling.RandomPairSampler` or another
            :class:`~irdistill.sampling.base.PairSampler`.
        collection: the query texts and passages (``Document.full_text()``).
        epochs: epochs to plan; the trainer's ``num_train_epochs`` must not exceed it.
        world_size: DDP processes. Each rank takes every ``world_size``-th batch, and when an
            epoch's batch count is not a multiple of it, accelerate fills the last step with the
            epoch's first batches. Here the plan itself is extended by those same batches, so that
            the last step's global batch is a planned one whose in-batch labels can be computed
            for exactly the batches it holds. With more than one, a short batch (the random
            sampler's last) is filled from the epoch's other rows, since every rank's batch must
            have the same size for the losses' all_gather.

    Returns:
        :class:`TrainerInputs`: ``dataset`` (``epochs x len(sampler)`` batches of rows
        ``query, positive, negative, label``) and ``batch_sampler`` to pass as
        ``SentenceTransformerTrainingArguments(batch_sampler=...)``, together with
        ``per_device_train_batch_size = sampler.batch_size`` (see
        :meth:`TrainerInputs.training_arguments`).

    Raises:
        InputError: a query or passage id of the plan missing from ``collection``.
        MissingDependencyError: ``datasets`` is not installed.

    Example:
        >>> inputs = build_trainer_inputs(sampler, collection, epochs=3)  # doctest: +SKIP
        >>> args = SentenceTransformerTrainingArguments(
        ...     output_dir="out", **inputs.training_arguments())  # doctest: +SKIP
        >>> SentenceTransformerTrainer(model=model, args=args, train_dataset=inputs.dataset,
        ...                            loss=MarginMSELoss(model)).train()  # doctest: +SKIP
    """
    try:
        import datasets
    except ImportError as err:
        raise MissingDependencyError(
            "build_trainer_inputs needs the Hugging Face datasets library: pip install datasets"
        ) from err
    epochs = check_positive_int("epochs", epochs)
    where = collection.name or "?"
    corpus = corpus_rows(collection.corpus)
    query_ids = list(collection.queries)
    query_row = {qid: i for i, qid in enumerate(query_ids)}
    columns: dict[str, list[np.ndarray]] = {name: [] for name in COLUMNS}
    plans: list[list[Batch]] = []
    epoch_offsets: list[np.ndarray] = []
    world_size = check_positive_int("world_size", world_size)
    total = 0
    for epoch in range(epochs):
        plan = sampler.plan(epoch)
        if getattr(sampler, "last_plan", None):
            logger.info("sampler, epoch %d: %s", epoch, sampler.last_plan)
        if world_size > 1:
            plan = _even_batches(plan, sampler.batch_size)
        pad = -len(plan) % world_size
        plan = plan + [plan[i % len(plan)] for i in range(pad)]
        examples = [example for batch in plan for example in batch]
        queries = np.fromiter((query_row.get(e.qid, -1) for e in examples), dtype=np.int32, count=len(examples))
        if (queries < 0).any():
            bad = examples[int(np.argmin(queries))].qid
            raise InputError(f"query id {bad!r} of the sampler is not among the queries of collection {where}")
        for name, ids in (("positive", [e.positive for e in examples]), ("negative", [e.negative for e in examples])):
            rows = corpus.rows_of(ids)
            if (rows < 0).any():
                bad = ids[int(np.argmin(rows))]
                raise InputError(
                    f"passage id {bad!r} of the sampler's pairs is not in the corpus of collection {where}"
                )
            columns[name].append(rows.astype(np.int32))
        columns["query"].append(queries)
        columns["label"].append(np.fromiter((e.margin for e in examples), dtype=np.float32, count=len(examples)))
        sizes = np.fromiter((len(batch) for batch in plan), dtype=np.int64, count=len(plan))
        epoch_offsets.append(total + np.concatenate([[0], np.cumsum(sizes)]))
        total += len(examples)
        plans.append(plan)
    labels = np.concatenate(columns["label"])
    rows = datasets.Dataset(
        pa.table(
            {
                "query": np.concatenate(columns["query"]),
                "positive": np.concatenate(columns["positive"]),
                "negative": np.concatenate(columns["negative"]),
                "label": one_label_a_row(labels),
            }
        )
    )
    texts = BatchTexts(query_ids, [collection.queries[q] for q in query_ids], corpus)
    dataset = rows.with_transform(texts)
    factory = PlannedBatchSamplerFactory(
        epoch_offsets, sampler.batch_size, len(dataset), getattr(dataset, "_fingerprint", None)
    )
    logger.info("planned %d epoch(s) of %d batches (%d rows) for the trainer", epochs, len(plans[0]), len(dataset))
    return TrainerInputs(dataset, factory, sampler.batch_size, epochs, plans, rows, texts)
