"""Train a bi-encoder student from teacher scores with the sentence-transformers trainer.

One YAML recipe (:class:`TrainConfig`) names the student, the teacher-score store, the loss
and the sampler; :func:`train_student` turns them into a ``datasets.Dataset`` and runs
``SentenceTransformerTrainer`` (checkpoints, resume, DDP under ``torchrun`` /
``accelerate launch``, best checkpoint by an evaluator). Nothing here replaces the trainer:
irdistill supplies the data layout each loss expects.

=================  ===========================  ============================================================
loss               rows                         label
=================  ===========================  ============================================================
``margin-mse``     query, positive, negative    ``[t(q,p+) - t(q,p-)]``
``tas-balanced``   query, positive, negative    the margin, then the in-batch teacher's scores of the query
                                                against every passage of the (global) batch, precomputed
``listwise-kl``    query, c_1 .. c_L            teacher scores of the L candidates, then the query's floor
``infonce``        query, positive, negative    none (label-only baseline; the negative is a candidate)
``hybrid``         query, positive, negative    the margin (Margin-MSE), plus InfoNCE of the judged positive
``hybrid-kl``      query, c_1 .. c_L            as listwise-kl (KL), plus InfoNCE of the judged positive c_1
=================  ===========================  ============================================================

``margin-mse``, ``tas-balanced`` and ``hybrid`` take their (query, positive, negative) rows from a pair
sampler (``tas-balanced`` or ``random``, :mod:`irdistill.sampling`), planned for every epoch
up front so the trainer replays exactly the sampler's batches. ``listwise-kl`` and ``hybrid-kl`` lists (the judged
positive, hard and random negatives; :mod:`irdistill.sampling.lists`) are drawn afresh for every
epoch, batched without repeated texts, and the temperature is read from the teacher's spread
on them unless ``temperature`` is set.

``freeze_documents: true`` trains the query tower only: the student becomes a
sentence-transformers ``Router`` whose document route is a frozen copy of the start model,
so document embeddings (and an index built from them) stay valid.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from irdistill.config import option
from irdistill.data.collection import Collection
from irdistill.data.holdout import check_selection_split
from irdistill.errors import InputError
from irdistill.paths import resolve_model, save_model_atomic
from irdistill.precision import PRECISIONS

logger = logging.getLogger(__name__)


def loss_class(name: str) -> Any:
    """The registered loss class (:data:`irdistill.losses.LOSSES`): its ``rows`` say which
    training rows to build, its ``recipe_options`` which recipe keys it takes."""
    from irdistill.losses import LOSSES

    return LOSSES.get(name)


def sampler_class(name: str) -> Any:
    """The registered pair sampler class (:data:`irdistill.sampling.SAMPLERS`)."""
    from irdistill.sampling import SAMPLERS

    return SAMPLERS.get(name)


SAMPLING, LOSS, SPARSE = "pair sampler", "loss options", "sparse students"
STUDENT_KINDS = ("dense", "splade", "inference-free")
SPARSE_LOSS_OF = {"margin-mse": "margin-mse", "listwise-kl": "kl"}
"""The sparse trainer's loss for each loss name a sparse student accepts."""


@dataclass
class TrainConfig:
    """``irdistill train``: a student from teacher scores (YAML keys = these fields)."""

    student: str = option("", help="start model (folder, $IRDISTILL_MODELS name or hub id)")
    student_kind: str = option(
        "dense",
        choices=STUDENT_KINDS,
        help="dense: a sentence-transformers bi-encoder; "
        "splade / inference-free: a sparse student built on a masked LM (--student), "
        "trained with margin-mse or listwise-kl (KL) and FLOPS",
    )
    dataset: str = option("", help="training collection, e.g. beir/scifact/train")
    split: str | None = option(None, help="split; overrides one in --dataset (default train)")
    scores: str | None = option(None, help="teacher scores (scores.parquet or its folder)")
    teacher: str | None = option(None, help="teacher name inside the scores, when they hold several")
    loss: str = option(
        "margin-mse", help="a loss registered in irdistill.losses.LOSSES (an unknown name lists the known ones)"
    )
    sampler: str = option(
        "tas-balanced",
        group=SAMPLING,
        help="a pair sampler registered in irdistill.sampling.SAMPLERS (an unknown name lists the known ones); "
        "the pair losses only: listwise-kl, hybrid-kl and infonce draw their own rows",
    )
    n_clusters: int | None = option(
        None,
        group=SAMPLING,
        help="tas-balanced: query clusters (default: about 4 batches of queries a cluster, "
        "irdistill.sampling.tas_balanced.auto_clusters)",
    )
    distinct_passages: bool = option(
        True,
        group=SAMPLING,
        negate="--repeat-passages",
        help="tas-balanced: no passage twice in a batch (so no query meets its own positive as another's "
        "in-batch negative); --repeat-passages is the first version",
    )
    clusters_per_batch: int = option(1, group=SAMPLING, help="tas-balanced: clusters a batch draws from")
    n_bins: int = option(10, group=SAMPLING, help="tas-balanced: margin bins per query")
    inbatch_teacher: str | None = option(None, group=LOSS, help="tas-balanced: dense model scoring in-batch pairs")
    alpha: float = option(0.75, group=LOSS, help="tas-balanced: weight of the in-batch term")
    list_size: int = option(
        8, group=LOSS, help="listwise-kl, hybrid-kl: passages per list, the judged positive included"
    )
    hard_negatives: int | None = option(
        None,
        group=LOSS,
        help="listwise-kl, hybrid-kl: negatives drawn from the teacher's "
        "top --hard-depth (default: half of the list's negatives, rounded "
        "down); the rest are drawn below it",
    )
    hard_depth: int = option(
        20, group=LOSS, help="listwise-kl, hybrid-kl: depth of the hard region in the teacher's ranking"
    )
    in_batch_negatives: bool = option(
        True,
        group=LOSS,
        negate="--no-in-batch-negatives",
        help="listwise-kl, hybrid-kl: keep the other rows' passages out of each query's "
        "softmax (by default they join it at the query's floor score)",
    )
    temperature: float | None = option(
        None,
        group=LOSS,
        help="listwise-kl, hybrid-kl: KL softmax temperature (default: the "
        "median sd of the scaled teacher scores within a list, "
        "irdistill.sampling.lists.spread_temperature)",
    )
    student_temperature: float | None = option(
        None, group=LOSS, help="listwise-kl, hybrid-kl: temperature on the student side (default: --temperature)"
    )
    in_batch_target: str | None = option(
        None,
        group=LOSS,
        help="listwise-kl, hybrid-kl: the other rows' passages in the KL's target: zero (no mass; listwise-kl's "
        "default), floor (at the query's lowest teacher score, the first version), exclude (the KL over the "
        "query's own list; hybrid-kl's default, whose in-batch negatives then serve InfoNCE only)",
    )
    temperature_scaling: str | None = option(
        None,
        group=LOSS,
        help="listwise-kl, hybrid-kl: factor on the KL: hinton (default) max(tau, 1)^2, squared tau^2 "
        "(the first version; shrinks the term below tau = 1), none",
    )
    label_scale: float = option(1.0, help="multiply the stored teacher scores, to match the student's scale")
    beta: float = option(1.0, group=LOSS, help="hybrid, hybrid-kl: weight of the contrastive term")
    distill_weight: float = option(
        1.0,
        group=LOSS,
        help="hybrid-kl: weight of the KL term (0: InfoNCE over the teacher's lists; the teacher then only "
        "picks the negatives)",
    )
    contrastive_temperature: float = option(0.05, group=LOSS, help="hybrid, hybrid-kl: InfoNCE temperature (cosine)")
    disagreement_weight: float = option(
        1.0,
        group=LOSS,
        help="hybrid: weight of a pair whose teacher margin is negative, in both terms (0 drops it)",
    )
    loss_options: dict[str, Any] = option(
        default_factory=dict,
        group=LOSS,
        flag="--loss-option",
        parse="key=value",
        help="more keyword arguments of the loss's constructor (a plug-in loss's own options), repeatable",
    )
    sampler_options: dict[str, Any] = option(
        default_factory=dict,
        group=SAMPLING,
        flag="--sampler-option",
        parse="key=value",
        help="more keyword arguments of the pair sampler (e.g. kmeans_restarts=5), repeatable",
    )
    document_regularizer_weight: float = option(3e-5, group=SPARSE, help="FLOPS weight on document vectors")
    query_regularizer_weight: float | None = option(
        None, group=SPARSE, help="FLOPS weight on query vectors (default: 5e-5 for splade, none for inference-free)"
    )
    epochs: int = option(1, help="training epochs")
    batch_size: int = option(32, help="queries per batch (per device)")
    learning_rate: float = option(2e-5, help="peak learning rate")
    warmup_ratio: float = option(0.1, help="share of the optimizer steps for linear warm-up")
    gradient_checkpointing: bool = option(
        False,
        help="recompute the encoder's activations in the backward pass: the same training at a third of the "
        "memory and about 1.3x the step time (SciFact main job's step in bf16: 3.4 against 9.6 GiB; "
        "eval/results/precision_steps.md)",
    )
    max_seq_length: int | None = option(256, help="student truncation length in tokens")
    attention_dropout: float | None = option(
        None,
        help="probability of dropping an attention weight in training (default: the model's own, 0.1 for "
        "MiniLM); 0 lets attention take its fused kernel, 0.68x the step time of the main job's student in "
        "bf16 on the CPU with checkpointing (eval/results/precision_steps_attention.md); hidden-state dropout stays",
    )
    freeze_documents: bool = option(False, help="train the query tower only against a frozen document tower")
    seed: int = option(42, help="random seed (sampling, initialisation, data order)")
    max_queries: int | None = option(None, help="train on the first N training queries only (quick runs)")
    eval_dataset: str | None = option(None, help="collection for the best-checkpoint evaluator")
    eval_split: str | None = option(None, help="its split")
    eval_steps: int | None = option(None, help="evaluate every N steps (default: at every checkpoint)")
    save_steps: int | None = option(None, help="checkpoint every N steps (default: twice per epoch)")
    logging_steps: int = option(10, help="log the loss every N steps")
    precision: str = option(
        "auto",
        choices=PRECISIONS,
        help="training precision: bf16 mixed precision (fp32 master weights) or fp32; auto takes bf16 where the "
        "hardware computes it natively (a bf16 GPU; a CPU with AMX or AVX-512 BF16) and fp32 elsewhere "
        "(irdistill.precision)",
    )
    resume: bool = option(
        True, negate="--no-resume", help="start afresh instead of resuming from the last complete checkpoint"
    )
    out: str = option("", help="output model folder")

    def validate(self) -> None:
        for key in ("student", "dataset", "out"):
            if not getattr(self, key):
                raise InputError(f"train: {key} is required")
        from irdistill.losses import Rows

        try:
            rows = loss_class(self.loss).rows
            sampler_class(self.sampler)
        except InputError as err:
            raise InputError(f"train: {err}") from None
        if self.student_kind not in STUDENT_KINDS:
            raise InputError(f"train: unknown student_kind {self.student_kind!r}; known: {', '.join(STUDENT_KINDS)}")
        if self.student_kind != "dense" and self.loss not in SPARSE_LOSS_OF:
            raise InputError(
                f"train: a {self.student_kind} student trains with {' or '.join(SPARSE_LOSS_OF)}, not {self.loss}"
            )
        if rows is not Rows.TRIPLES and not self.scores:
            raise InputError(f"train: loss {self.loss} needs teacher scores (scores: PATH)")
        if rows is Rows.PAIRS_INBATCH and not self.inbatch_teacher:
            raise InputError(f"train: {self.loss} needs inbatch_teacher (a dense model scoring in-batch pairs)")
        for key in ("epochs", "batch_size", "list_size", "n_clusters", "logging_steps", "hard_depth"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise InputError(f"train: {key} must be >= 1, got {getattr(self, key)}")
        if self.attention_dropout is not None and not 0 <= self.attention_dropout < 1:
            raise InputError(f"train: attention_dropout must be in [0, 1), got {self.attention_dropout}")
        if self.distill_weight < 0:
            raise InputError(f"train: distill_weight must be >= 0, got {self.distill_weight}")
        if self.beta < 0 or not 0 <= self.disagreement_weight <= 1 or self.contrastive_temperature <= 0:
            raise InputError(
                f"train: hybrid needs beta >= 0, disagreement_weight in [0, 1] and "
                f"contrastive_temperature > 0, got {self.beta}, {self.disagreement_weight}, "
                f"{self.contrastive_temperature}"
            )
        if not 0 <= self.warmup_ratio < 1:
            raise InputError(f"train: warmup_ratio is a share of the training steps in [0, 1), got {self.warmup_ratio}")
        if self.list_size < 2:
            raise InputError(
                f"train: list_size counts the positive and at least one negative (>= 2), got {self.list_size}"
            )
        if self.hard_negatives is not None and not 0 <= self.hard_negatives <= self.list_size - 1:
            raise InputError(
                f"train: hard_negatives must lie in [0, list_size - 1] = [0, {self.list_size - 1}], "
                f"got {self.hard_negatives}"
            )
        if self.learning_rate <= 0 or (self.temperature is not None and self.temperature <= 0):
            raise InputError("train: learning_rate and temperature must be positive")
        if self.student_temperature is not None and self.student_temperature <= 0:
            raise InputError("train: student_temperature must be positive")
        from irdistill.losses.listwise_kl import IN_BATCH_TARGETS, TEMPERATURE_SCALINGS

        for key, known in (("in_batch_target", IN_BATCH_TARGETS), ("temperature_scaling", TEMPERATURE_SCALINGS)):
            if getattr(self, key) is not None and getattr(self, key) not in known:
                raise InputError(f"train: unknown {key} {getattr(self, key)!r}; known: {', '.join(known)}")
        if self.precision not in PRECISIONS:
            raise InputError(f"train: unknown precision {self.precision!r}; known: {', '.join(PRECISIONS)}")
        if self.student_kind != "dense" and self.precision == "bf16":
            raise InputError(f"train: a {self.student_kind} student trains in fp32; set precision: fp32 or auto")
        if self.max_queries is not None and self.max_queries < 1:
            raise InputError(f"train: max_queries must be >= 1, got {self.max_queries}")
        if not np.isfinite(self.label_scale) or self.label_scale <= 0:
            raise InputError(f"train: label_scale must be a positive number, got {self.label_scale}")
        if self.eval_dataset:
            check_selection_split(
                self.eval_dataset, self.eval_split, train=(self.dataset, self.split or "train"), where="train"
            )
        elif self.eval_split:
            raise InputError("train: eval_split without eval_dataset; name the collection to choose checkpoints on")

    def check_inputs(self) -> None:
        """:meth:`validate`, then what can be checked before any work: the packages training
        imports, the student and in-batch teacher models, the score file."""
        from irdistill.dependencies import TRAINING, require
        from irdistill.paths import check_model

        self.validate()
        require(*TRAINING, purpose="training a student")
        check_model(self.student, what="train: student")
        if self.inbatch_teacher:
            check_model(self.inbatch_teacher, what="train: inbatch_teacher")
        if self.scores and not _scores_path(self.scores).is_file():
            raise InputError(
                f"train: scores {self.scores}: no such file (expected scores.parquet "
                "or its folder, from irdistill score)"
            )


@dataclass
class TrainResult:
    """A finished training run: ``examples`` are the rows trained on over every epoch, and
    ``examples_per_second`` those rows over the trainer's own running time."""

    path: Path
    examples: int
    seconds: float
    examples_per_second: float
    train_loss: float
    best_checkpoint: str | None


# --------------------------------------------------------------------------------------------
# data


def _scores_by_query(cfg: TrainConfig, collection: Collection) -> dict[str, dict[str, float]]:
    """The chosen teacher's scores, ``qid -> {pid: score}``; every id must be in ``collection``."""
    from irdistill.scores import scores_by_query

    assert cfg.scores is not None
    path = _scores_path(cfg.scores)
    try:
        out = scores_by_query(path, cfg.teacher)
    except InputError as err:
        raise InputError(f"{cfg.scores}: {err}") from None
    # The store may cover more queries than training sees: the first max_queries, one part of a
    # split (a train:fit run never reaches the dev queries' rows), or a cross-fitting fold. Only
    # the training queries' scores are kept; a store sharing no query with them is refused.
    outside = [qid for qid in out if qid not in collection.queries]
    if outside:
        if len(outside) == len(out):
            raise InputError(f"{cfg.scores}: query id {outside[0]!r} is not in {collection.label}; no stored query is")
        logger.info(
            "train: %d of the %d queries in %s are not training queries here (%s); their scores are left out",
            len(outside),
            len(out),
            cfg.scores,
            collection.label,
        )
        out = {qid: docs for qid, docs in out.items() if qid in collection.queries}
    for docs in out.values():
        for pid in docs:
            if pid not in collection.corpus:
                raise InputError(f"{cfg.scores}: passage id {pid!r} is not in the corpus of {collection.name}")
    return out


def _scores_path(path: str) -> Path:
    p = Path(path)
    return p / "scores.parquet" if p.is_dir() else p


def training_collection(cfg: TrainConfig) -> Collection:
    """The training split of ``cfg.dataset``, cut to its first ``max_queries`` queries if set."""
    from irdistill.data import load_collection

    collection = load_collection(cfg.dataset, split=cfg.split or "train")
    if cfg.max_queries is not None:
        collection = collection.subset(query_ids=collection.query_ids[: cfg.max_queries])
    return collection


@contextmanager
def _returning_memory_pool() -> Iterator[None]:
    """Arrow allocations of the training data through jemalloc (else the system allocator) unless
    ``ARROW_DEFAULT_MEMORY_POOL`` chooses: pyarrow's default mimalloc pool keeps freed blocks, and
    the read, check and pairing of a score table stack up (MS MARCO-shaped store at 1/4 scale:
    peak 1.50 GiB with mimalloc, 1.18 with jemalloc, 1.21 with the system allocator). Scoped: the
    process's default pool is restored on exit, so an application around irdistill keeps its own."""
    previous = pa.default_memory_pool()
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        for make in (pa.jemalloc_memory_pool, pa.system_memory_pool):
            try:
                pa.set_memory_pool(make())
                break
            except (NotImplementedError, pa.ArrowNotImplementedError):
                continue
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _pair_inputs(cfg: TrainConfig, collection: Collection, show_progress_bar: bool = False) -> Any:
    from irdistill.sampling import build_trainer_inputs
    from irdistill.sampling.pairs import pairs_from_scores

    with _returning_memory_pool():  # read compact
        pairs = pairs_from_scores(_scores_path(cfg.scores or ""), collection.qrels, teacher=cfg.teacher)
    qids = [q for q in collection.query_ids if q in pairs]
    if not qids:
        raise InputError(f"{cfg.scores}: no query has both a scored positive and a scored negative")
    cls = sampler_class(cfg.sampler)
    try:
        sampler = cls.for_training(
            qids,
            pairs,
            cfg.batch_size,
            cfg.seed,
            query_texts=collection.queries,
            encoder=cfg.student,
            show_progress_bar=show_progress_bar,
            **_recipe_options(cfg, cls, cfg.sampler_options),
        )
    except TypeError as err:  # an option the class does not take
        raise InputError(f"train: sampler {cfg.sampler}: {err}") from None
    return build_trainer_inputs(
        sampler, collection, epochs=cfg.epochs, world_size=int(os.environ.get("WORLD_SIZE", "1"))
    )


def _recipe_options(cfg: TrainConfig, cls: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """``cls``'s recipe keys, read from ``cfg``, by constructor keyword, then ``extra``."""
    return {**{keyword: getattr(cfg, key) for key, keyword in cls.recipe_options.items()}, **extra}


def _inbatch_labels(cfg: TrainConfig, inputs: Any, show_progress_bar: bool = False) -> pa.Array:
    """For every row, its margin times ``label_scale`` and the in-batch teacher's scores against
    the global batch, as a float32 list column.

    Columns follow :class:`~irdistill.losses.TASBalancedLoss`: passage column (positive, then
    negative), then rank, then row. Under DDP the global batch of a step is ``world_size``
    consecutive planned batches (accelerate deals whole batches to ranks in turn); the plan of
    every epoch holds a multiple of ``world_size`` batches (:func:`build_trainer_inputs` pads it
    as accelerate would), so no step mixes batches this function did not group together.
    Only the queries and passages the plan holds are encoded; the scores of one global batch are
    one matrix product.

    Under torchrun every rank plans the same rows, so one process per machine (local rank 0)
    computes the labels and keeps them in a file beside the checkpoints, keyed by the plan, the
    in-batch teacher and the label scale; the other ranks wait for that file and read it. A
    resumed run finds the file and encodes nothing.
    """
    from irdistill.paths import atomic_path, model_fingerprint

    world = int(os.environ.get("WORLD_SIZE", "1"))
    assert cfg.inbatch_teacher is not None
    table = inputs.rows.data
    query_rows = table.column("query").to_numpy()
    positive = table.column("positive").to_numpy()
    negative = table.column("negative").to_numpy()
    margins = inputs.margins()
    if world == 1:
        return _compute_inbatch_labels(cfg, inputs, query_rows, positive, negative, margins, world, show_progress_bar)
    digest = hashlib.sha256()
    for part in (query_rows, positive, negative, np.asarray(margins, dtype=np.float64)):
        digest.update(np.ascontiguousarray(part).tobytes())
    for offsets in inputs.batch_sampler.epoch_offsets:
        digest.update(np.asarray(offsets, dtype=np.int64).tobytes())
    digest.update(json.dumps([model_fingerprint(cfg.inbatch_teacher), cfg.label_scale, world]).encode())
    shared = checkpoint_folder(Path(cfg.out)) / f"inbatch-labels-{digest.hexdigest()[:24]}.arrow"
    if int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0"))) != 0:
        if not shared.is_file():
            logger.info("waiting for local rank 0's in-batch labels (%s)", shared)
        while not shared.is_file():
            time.sleep(0.5)
        return _read_labels(shared)
    if shared.is_file():
        logger.info("in-batch labels read from %s", shared)
        return _read_labels(shared)
    labels = _compute_inbatch_labels(cfg, inputs, query_rows, positive, negative, margins, world, show_progress_bar)
    shared.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(shared) as tmp, pa.OSFile(str(tmp), "wb") as sink:
        batch = pa.record_batch([labels], names=["label"])
        with pa.ipc.new_file(sink, batch.schema) as writer:
            writer.write_batch(batch)
    return labels


def checkpoint_folder(out: Path) -> Path:
    """Where the trainer keeps the checkpoints of a model bound for ``out`` (and what it resumes from)."""
    return out.parent / f".{out.name}.checkpoints"


def _read_labels(path: Path) -> pa.Array:
    with pa.OSFile(str(path), "rb") as source:  # read into memory: the file may be replaced later
        return pa.ipc.open_file(source).read_all().column("label").combine_chunks()


def _compute_inbatch_labels(
    cfg: TrainConfig,
    inputs: Any,
    query_rows: np.ndarray,
    positive: np.ndarray,
    negative: np.ndarray,
    margins: np.ndarray,
    world: int,
    show_progress_bar: bool,
) -> pa.Array:
    """:func:`_inbatch_labels`'s work: encode the planned queries and passages, score each global batch."""
    from irdistill.encoding import DenseEncoder

    teacher = DenseEncoder(cfg.inbatch_teacher, show_progress_bar=show_progress_bar)
    corpus, texts = inputs.texts.corpus, inputs.texts
    passages = np.unique(np.concatenate([positive, negative]))
    queries = np.unique(query_rows)
    doc_emb = teacher.encode(
        [corpus.doc_id(int(r)) for r in passages], corpus.texts(passages), side="document"
    ).embeddings
    q_emb = teacher.encode(
        [texts.query_ids[int(r)] for r in queries], [texts.queries[int(r)] for r in queries], side="query"
    ).embeddings
    values: list[np.ndarray] = []
    offsets = [0]
    for epoch_offsets in inputs.batch_sampler.epoch_offsets:
        if (len(epoch_offsets) - 1) % world:
            raise InputError(
                f"{len(epoch_offsets) - 1} planned batches an epoch are not a multiple of the "
                f"{world} DDP ranks; build the inputs with world_size={world}"
            )
        for start, end in zip(epoch_offsets[:-world:world].tolist(), epoch_offsets[world::world].tolist(), strict=True):
            group = np.concatenate([positive[start:end], negative[start:end]])
            scores = (
                q_emb[np.searchsorted(queries, query_rows[start:end])] @ doc_emb[np.searchsorted(passages, group)].T
            )
            block = np.concatenate([(margins[start:end] * cfg.label_scale)[:, None], scores], axis=1)
            values.append(block.astype(np.float32).ravel())
            offsets.extend((offsets[-1] + block.shape[1] * np.arange(1, end - start + 1)).tolist())
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int64()).cast(pa.int32()), pa.array(np.concatenate(values)))


def _listwise_rows(cfg: TrainConfig, collection: Collection) -> tuple[dict[str, list[Any]], float]:
    """``cfg.epochs`` epochs of lists (each epoch drawn afresh, rows shuffled within it), with
    labels already multiplied by ``label_scale``, and the softmax temperature."""
    from irdistill.sampling.lists import sample_lists, spread_temperature

    scores = _scores_by_query(cfg, collection)
    positives = {q: collection.positives(q) for q in scores}
    hard = cfg.hard_negatives if cfg.hard_negatives is not None else (cfg.list_size - 1) // 2
    scale = cfg.label_scale
    columns: dict[str, list[Any]] = {"query": [], **{f"c_{i + 1}": [] for i in range(cfg.list_size)}, "label": []}
    first: list[Any] = []
    for epoch in range(cfg.epochs):
        lists, skipped = sample_lists(
            scores,
            positives,
            list_size=cfg.list_size,
            hard_negatives=hard,
            hard_depth=cfg.hard_depth,
            seed=cfg.seed,
            epoch=epoch,
        )
        if not lists:
            raise InputError(f"{cfg.scores}: no query has a scored positive and {cfg.list_size - 1} scored negatives")
        if epoch == 0:
            first = lists
            if skipped:
                logger.info(
                    "listwise: %d queries without a scored positive or %d scored negatives skipped",
                    skipped,
                    cfg.list_size - 1,
                )
        for item in lists:  # the trainer's batch sampler shuffles
            columns["query"].append(collection.queries[item.qid])
            for j, pid in enumerate(item.pids):
                columns[f"c_{j + 1}"].append(collection.corpus[pid].full_text())
            label = [x * scale for x in item.scores]
            columns["label"].append([*label, item.floor * scale] if cfg.in_batch_negatives else label)
    temperature = cfg.temperature if cfg.temperature is not None else spread_temperature(first, scale)
    logger.info(
        "listwise: %d lists an epoch (%d hard + %d random negatives), temperature %.4g%s",
        len(first),
        hard,
        cfg.list_size - 1 - hard,
        temperature,
        "" if cfg.temperature is not None else " (the teacher's median spread within a list)",
    )
    return columns, temperature


def _infonce_rows(cfg: TrainConfig, collection: Collection) -> dict[str, list[Any]]:
    """(query, positive, hard negative): negatives from the scored candidates, or BM25."""
    rng = random.Random(cfg.seed)
    if cfg.scores:
        pools = {q: list(d) for q, d in _scores_by_query(cfg, collection).items()}
    else:
        from irdistill.candidates import mine_candidates

        pools = {q: list(d) for q, d in mine_candidates(collection, "bm25", k=30, show_progress_bar=False).items()}
    rows: dict[str, list[Any]] = {"query": [], "positive": [], "negative": []}
    for qid in collection.query_ids:
        positives = collection.positives(qid)
        negatives = [d for d in pools.get(qid, []) if d not in positives]
        for pos in positives:
            if not negatives:
                continue
            rows["query"].append(collection.queries[qid])
            rows["positive"].append(collection.corpus[pos].full_text())
            rows["negative"].append(collection.corpus[rng.choice(negatives)].full_text())
    if not rows["query"]:
        raise InputError(f"{collection.name}/{collection.split}: no (query, positive, negative) rows")
    return rows


# --------------------------------------------------------------------------------------------
# model, loss, evaluator


def load_student(cfg: TrainConfig) -> Any:
    from sentence_transformers import SentenceTransformer

    from irdistill.encoding import load_sentence_transformer, set_attention_dropout, set_max_seq_length

    path = resolve_model(cfg.student)
    model = load_sentence_transformer(path)
    if cfg.max_seq_length is not None:
        set_max_seq_length(model, cfg.max_seq_length)
    if cfg.attention_dropout is not None:
        set_attention_dropout(model, cfg.attention_dropout)
    if not cfg.freeze_documents:
        return model
    import copy

    from sentence_transformers.models import Router

    query_modules = [model[i] for i in range(len(model))]
    document_modules = [copy.deepcopy(m) for m in query_modules]
    for module in document_modules:
        for p in module.parameters():
            p.requires_grad_(False)
    router = Router.for_query_document(query_modules, document_modules)
    return SentenceTransformer(modules=[router], similarity_fn_name=model.similarity_fn_name)


def _loss(cfg: TrainConfig, model: Any, resolved: dict[str, Any] | None = None) -> Any:
    """The registered loss of ``cfg`` with its recipe options; ``resolved`` holds options the
    training rows settled (listwise-kl's temperature, read from the teacher's spread)."""
    cls = loss_class(cfg.loss)
    options = {**_recipe_options(cfg, cls, cfg.loss_options), **(resolved or {})}
    try:
        return cls(model, **options)
    except TypeError as err:  # an option the class does not take
        raise InputError(f"train: loss {cfg.loss}: {err}") from None


class HarnessEvaluator:
    """A sentence-transformers evaluator backed by irdistill's harness (flat index, ranx).

    Returns ``{"<name>_ndcg@10": x, ...}``; ``primary_metric`` is nDCG@10. Embeddings are not
    cached (the model changes between calls).
    """

    greater_is_better = True

    def __init__(
        self,
        collection: Collection,
        name: str = "eval",
        metrics: tuple[str, ...] = ("ndcg@10", "recall@100"),
        batch_size: int = 64,
    ) -> None:
        self.collection, self.name, self.metrics, self.batch_size = collection, name, metrics, batch_size
        self.primary_metric = f"{name}_ndcg@10"

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        from irdistill.evaluation.metrics import evaluate_run
        from irdistill.retrieval import DenseRetriever, retrieve

        retriever = DenseRetriever(model, index="flat", device="cpu", batch_size=self.batch_size)
        retriever.index(self.collection)
        run = retrieve(retriever, self.collection, 100)
        values = evaluate_run(self.collection.qrels, run, list(self.metrics))
        return {f"{self.name}_{m}": float(v) for m, v in values.items()}


# --------------------------------------------------------------------------------------------


@dataclass
class TrainingData:
    """What :func:`train_student` hands the trainer: the dataset, the trainer arguments it needs,
    the rows the whole run trains on (every epoch; the pair and listwise datasets already hold
    every epoch, the triples one, which the trainer passes ``epochs`` times), and loss options
    the rows settled (listwise-kl's ``temperature``)."""

    dataset: Any
    arguments: dict[str, Any]
    rows: int
    loss_options: dict[str, Any] = field(default_factory=dict)


def build_train_dataset(
    cfg: TrainConfig, collection: Collection, show_progress_bar: bool = False
) -> tuple[Any, dict[str, Any]]:
    """The training ``datasets.Dataset`` and the trainer arguments it needs (see
    :func:`build_training_data`)."""
    data = build_training_data(cfg, collection, show_progress_bar)
    return data.dataset, data.arguments


def build_training_data(cfg: TrainConfig, collection: Collection, show_progress_bar: bool = False) -> TrainingData:
    """The training rows of ``cfg.loss`` with the trainer arguments they need.

    ``label_scale`` multiplies the stored teacher's scores (so margins and score lists) to put
    them on the student's scale, e.g. a z-scored or logit teacher against a cosine student; the
    in-batch teacher of ``tas-balanced`` is a bi-encoder on the student's scale and is left as is.
    The listwise dataset holds every epoch's lists, so the trainer runs one pass over it; with
    in-batch negatives its batches never repeat a text (sentence-transformers'
    ``NoDuplicatesBatchSampler``), so no query meets its own positive as a negative.
    """
    from datasets import Dataset
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    from irdistill.losses import Rows

    rows = loss_class(cfg.loss).rows
    scale = cfg.label_scale
    if rows in (Rows.LISTS, Rows.TRIPLES):
        logger.info("train: %s draws its own rows; the %s sampler is not used", cfg.loss, cfg.sampler)
    if rows in (Rows.PAIRS, Rows.PAIRS_INBATCH):
        inputs = _pair_inputs(cfg, collection, show_progress_bar)
        if rows is Rows.PAIRS_INBATCH:
            inputs.relabel(_inbatch_labels(cfg, inputs, show_progress_bar))
        elif scale != 1.0:
            from irdistill.sampling.st_integration import one_label_a_row

            inputs.relabel(one_label_a_row(inputs.margins() * scale))
        return TrainingData(inputs.dataset, inputs.training_arguments(), len(inputs.dataset))
    if rows is Rows.LISTS:
        columns, temperature = _listwise_rows(cfg, collection)
        sampler = BatchSamplers.NO_DUPLICATES if cfg.in_batch_negatives else BatchSamplers.BATCH_SAMPLER
        dataset = Dataset.from_dict(columns)
        return TrainingData(
            dataset,
            {"per_device_train_batch_size": cfg.batch_size, "num_train_epochs": 1, "batch_sampler": sampler},
            len(dataset),
            {"temperature": temperature},
        )
    if rows is Rows.TRIPLES:
        dataset = Dataset.from_dict(_infonce_rows(cfg, collection))
        return TrainingData(
            dataset,
            {"per_device_train_batch_size": cfg.batch_size, "num_train_epochs": cfg.epochs},
            len(dataset) * cfg.epochs,
        )
    raise InputError(f"train: loss {cfg.loss!r} consumes rows {rows!r}, which the driver cannot build")


def _argument_names() -> set[str]:
    """The fields of the installed transformers' ``TrainingArguments``."""
    import dataclasses

    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments)}


def _warmup(ratio: float) -> dict[str, float]:
    """The trainer's warm-up as a share of its own total steps: ``warmup_ratio`` where the
    installed transformers has it (4.x), else ``warmup_steps`` below 1, its ratio form (5.x)."""
    return {"warmup_ratio": ratio} if "warmup_ratio" in _argument_names() else {"warmup_steps": ratio}


def _checkpointing(enabled: bool) -> dict[str, bool]:
    """Activation checkpointing under the name the installed transformers reads without a
    warning: ``activation_checkpointing`` where it exists (late 5.x, where the old name is a
    deprecated alias that warns), else ``gradient_checkpointing``."""
    name = "activation_checkpointing" if "activation_checkpointing" in _argument_names() else "gradient_checkpointing"
    return {name: enabled}


def _last_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint. The trainer writes a checkpoint in place and its
    ``trainer_state.json`` last, so a folder without it was cut short (killed while saving):
    it is removed, and training resumes from the one before."""
    checkpoints = sorted(
        (p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    for checkpoint in reversed(checkpoints):
        if (checkpoint / "trainer_state.json").is_file():
            return str(checkpoint)
        logger.warning("%s is incomplete (no trainer_state.json): removed", checkpoint)
        shutil.rmtree(checkpoint, ignore_errors=True)
    return None


def train_student(
    cfg: TrainConfig, *, collection: Collection | None = None, show_progress_bar: bool = True
) -> TrainResult:
    """Run one training recipe; the final model lands in ``cfg.out`` (a folder ST loads).

    ``collection``: the training queries, when they are not ``cfg.dataset``'s ``cfg.split`` (the
    generated queries of a label-free run, :func:`irdistill.generation.pseudo_collection`).
    """
    cfg.check_inputs()  # before the imports below, which fail without accelerate
    from irdistill.memory import limit_heap_growth

    limit_heap_growth()  # only where IRDISTILL_MMAP_THRESHOLD asks: glibc's heap is the faster (irdistill.memory)
    import torch
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )

    from irdistill.data import load_collection
    from irdistill.precision import resolve_precision

    if collection is None:
        collection = training_collection(cfg)
    if cfg.student_kind != "dense":
        return _train_sparse(cfg, collection, show_progress_bar)
    logger.info("training on %r with %s / %s", collection, cfg.loss, cfg.sampler)
    torch.manual_seed(cfg.seed)
    data = build_training_data(cfg, collection, show_progress_bar)  # input errors surface before training
    dataset, sized = data.dataset, data.arguments
    model = load_student(cfg)
    loss = _loss(cfg, model, data.loss_options)
    evaluator = None
    if cfg.eval_dataset:
        evaluator = HarnessEvaluator(load_collection(cfg.eval_dataset, split=cfg.eval_split))
    out = Path(cfg.out)
    checkpoints = checkpoint_folder(out)
    # Warm-up and the default checkpoint interval are shares of the optimizer steps the trainer
    # itself counts (the batches each rank really iterates, every epoch), not of len(dataset):
    # the pair losses' dataset holds every planned epoch, and under DDP each rank takes
    # 1 / world_size of the batches.
    save_steps: float = cfg.save_steps or 1 / (2 * cfg.epochs)  # twice per epoch
    precision = resolve_precision(cfg.precision)  # CUDA when available, else the CPU
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        learning_rate=cfg.learning_rate,
        **_warmup(cfg.warmup_ratio),
        seed=cfg.seed,
        bf16=precision.bf16,
        **_checkpointing(cfg.gradient_checkpointing),
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=2,
        eval_strategy="steps" if evaluator else "no",
        eval_steps=cfg.eval_steps or save_steps,
        load_best_model_at_end=evaluator is not None,
        metric_for_best_model=f"eval_{evaluator.primary_metric}" if evaluator else None,
        report_to="none",
        disable_tqdm=not show_progress_bar,
        dataloader_drop_last=False,
        router_mapping={"query": "query"} if cfg.freeze_documents else {},
        # transformers only sets up CPU DDP (gloo) under torchrun when told the run is on the CPU
        use_cpu=not torch.cuda.is_available(),
        **sized,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss, evaluator=evaluator)
    resume = _last_checkpoint(checkpoints) if cfg.resume else None
    if resume:
        logger.info("resuming from %s", resume)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    best = trainer.state.best_model_checkpoint
    examples = data.rows
    metrics = output.metrics
    # the trainer counts len(dataset) x num_train_epochs samples (over the share of the steps this
    # call ran), which is every epoch's rows again for the pair losses, whose dataset holds the
    # whole plan and whose batch sampler takes one epoch of it at a time: rescaled to the rows
    counted = len(dataset) * args.num_train_epochs
    rate = metrics.get("train_samples_per_second")
    result = TrainResult(
        path=out,
        examples=examples,
        seconds=seconds,
        examples_per_second=float(rate * examples / counted if rate is not None else examples / seconds),
        train_loss=float(output.training_loss),
        best_checkpoint=best,
    )
    if trainer.is_world_process_zero():  # under DDP one rank writes the model, the others wait
        # the training record goes into the model folder before it is published: a folder with
        # irdistill_training.json is a finished student (the pipeline's test for this stage)
        record = {
            "config": asdict(cfg),
            "examples": examples,
            "seconds": round(seconds, 2),
            "examples_per_second": result.examples_per_second,
            "train_loss": result.train_loss,
            "world_size": trainer.args.world_size,
            "precision": precision.name,
            "precision_reason": precision.reason,
            "best_checkpoint": best,
            "resumed_from": resume,
            "log_history": trainer.state.log_history,
        }
        if data.loss_options:
            record["resolved_loss_options"] = data.loss_options
        save_model_atomic(model, out, {"irdistill_training.json": json.dumps(record, indent=2) + "\n"})
        shutil.rmtree(checkpoints, ignore_errors=True)
        logger.info(
            "student trained: %d examples in %.0f s (%.1f/s) -> %s", examples, seconds, result.examples_per_second, out
        )
    trainer.accelerator.wait_for_everyone()
    return result


def _train_sparse(cfg: TrainConfig, collection: Collection, show_progress_bar: bool) -> TrainResult:
    """A SPLADE or inference-free student from the teacher's margins (one negative per row for
    margin-mse, ``list_size - 1`` for listwise-kl's KL), through :func:`train_sparse_student`."""
    from irdistill.scores.hf import to_hf_dataset
    from irdistill.students.sparse import (
        build_inference_free_student,
        build_splade_student,
        train_sparse_student,
    )

    if cfg.student_kind == "splade":
        student = build_splade_student(cfg.student, max_seq_length=cfg.max_seq_length)
    else:  # the IDF of the training collection's corpus
        student = build_inference_free_student(cfg.student, collection, max_seq_length=cfg.max_seq_length)
    if cfg.attention_dropout is not None:
        from irdistill.encoding import set_attention_dropout

        set_attention_dropout(student, cfg.attention_dropout)
    negatives = cfg.list_size - 1 if cfg.loss == "listwise-kl" else 1
    dataset = to_hf_dataset(
        _scores_path(cfg.scores or ""), collection, negatives_per_query=negatives, seed=cfg.seed, teacher=cfg.teacher
    )
    if cfg.label_scale != 1.0:
        dataset = dataset.map(lambda row: {"label": [x * cfg.label_scale for x in row["label"]]})
    logger.info("training a %s student on %r with %s (%d rows)", cfg.student_kind, collection, cfg.loss, len(dataset))
    query_weight: Any = cfg.query_regularizer_weight if cfg.query_regularizer_weight is not None else "auto"
    start = time.perf_counter()
    train_sparse_student(
        student,
        dataset,
        loss=SPARSE_LOSS_OF[cfg.loss],  # type: ignore[arg-type]
        document_regularizer_weight=cfg.document_regularizer_weight,
        query_regularizer_weight=query_weight,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.learning_rate,
        warmup_steps=0,
        seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        show_progress_bar=show_progress_bar,
        **cfg.loss_options,
    )
    seconds = time.perf_counter() - start
    out = Path(cfg.out)
    examples = len(dataset) * cfg.epochs  # one epoch's rows, passed over epochs times
    record = {
        "config": asdict(cfg),
        "examples": examples,
        "seconds": round(seconds, 2),
        "examples_per_second": examples / seconds if seconds > 0 else 0.0,
    }
    save_model_atomic(student, out, {"irdistill_training.json": json.dumps(record, indent=2) + "\n"})
    logger.info("sparse student trained: %d rows in %.0f s -> %s", len(dataset), seconds, out)
    return TrainResult(
        path=out,
        examples=examples,
        seconds=seconds,
        examples_per_second=record["examples_per_second"],
        train_loss=float("nan"),
        best_checkpoint=None,
    )
