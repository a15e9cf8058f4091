"""One dataclass config per command, loadable from YAML and overridable from the command line.

A recipe file holds the same keys as the command's flags (underscores, not dashes);
``irdistill evaluate --config eval/recipes/minilm_scifact.yaml --index flat`` loads it and lets the
flag win (:mod:`irdistill.config`). Unknown keys are an error that lists the allowed ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from irdistill.errors import InputError

C = TypeVar("C")


@dataclass
class EvaluateConfig:
    """``irdistill evaluate``: one retriever on one collection."""

    model: str = ""
    dataset: str = ""
    split: str | None = None
    index: str = "flat"
    index_params: dict[str, Any] = field(default_factory=dict)
    k: int = 1000
    metrics: list[str] = field(default_factory=lambda: ["ndcg@10", "mrr@10", "recall@100", "recall@1000"])
    batch_size: int = 64
    max_seq_length: int | None = None
    device: str = "auto"
    model_device: str | None = None
    cache: bool = True
    cache_dir: str | None = None
    out: str | None = None
    save_index: bool = False

    def validate(self) -> None:
        if not self.model:
            raise InputError("evaluate: --model is required (a sentence-transformers model or 'bm25')")
        if not self.dataset:
            raise InputError("evaluate: --dataset is required (e.g. beir/scifact/test or a folder)")


@dataclass
class CompareConfig:
    """``irdistill compare``: several runs on one collection, with significance tests."""

    runs: list[str] = field(default_factory=list)
    dataset: str = ""
    split: str | None = None
    names: list[str] | None = None
    metrics: list[str] = field(default_factory=lambda: ["ndcg@10", "mrr@10", "recall@100"])
    stat_test: str = "student"
    max_p: float = 0.05
    out: str | None = None

    def validate(self) -> None:
        if len(self.runs) < 2:
            raise InputError("compare: give at least two runs (TREC files or evaluate --out folders)")
        if not self.dataset:
            raise InputError("compare: --dataset is required")
        if self.names is not None and len(self.names) != len(self.runs):
            raise InputError(f"compare: {len(self.names)} names for {len(self.runs)} runs")


@dataclass
class CandidatesConfig:
    """``irdistill candidates``: top-k candidates per query, positives kept apart."""

    dataset: str = ""
    split: str | None = None
    retriever: str = "bm25"
    k: int = 100
    keep_positives: bool = False
    query_batch_size: int = 256
    index: str = "flat"
    batch_size: int = 64
    false_negative_teacher: str | None = None
    false_negative_margin: float = 0.0
    out: str = ""

    def validate(self) -> None:
        if not self.dataset:
            raise InputError("candidates: --dataset is required")
        if not self.out:
            raise InputError("candidates: --out FILE (a TREC run) is required")


@dataclass
class ScoreConfig:
    """``irdistill score``: teacher scores of candidates (and judged positives) to Parquet."""

    teacher: str = ""
    dataset: str = ""
    split: str | None = None
    candidates: str = ""
    depth: int | None = None
    include_positives: bool = True
    chunk_queries: int = 64
    overwrite: bool = False
    out: str = ""
    export_tsv: str | None = None

    def validate(self) -> None:
        for key in ("teacher", "dataset", "candidates", "out"):
            if not getattr(self, key):
                raise InputError(f"score: --{key} is required")
        if self.depth is not None and self.depth < 1:
            raise InputError(f"score: --depth must be >= 1, got {self.depth}")


@dataclass
class TrainTeacherConfig:
    """``irdistill train-teacher``: fine-tune a cross-encoder teacher on training qrels."""

    backbone: str = ""
    dataset: str = ""
    split: str | None = None
    out: str = ""
    negatives: str = "bm25"
    num_negatives: int = 4
    depth: int = 30
    loss: str = "bce"
    epochs: float = 1.0
    batch_size: int = 16
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    max_length: int = 256
    seed: int = 42

    def validate(self) -> None:
        for key in ("backbone", "dataset", "out"):
            if not getattr(self, key):
                raise InputError(f"train-teacher: --{key} is required")


@dataclass
class IndexConfig:
    """``irdistill index``: a compressed index of a collection's corpus (Distill-VQ, IVF-PQ, PQ, sparse).

    The kind's options (``m`` .. ``max_active_dims``) are ``None`` unless given, so the index kind's
    own defaults apply and an option the kind does not take is an error
    (:func:`irdistill.workflows.indexing.check_build_options`).
    """

    kind: str = ""
    dataset: str = ""
    split: str | None = None
    model: str = ""
    out: str = ""
    m: int | None = None
    nbits: int | None = None
    nlist: int | None = None
    nprobe: int | None = None
    use_ivf: bool | None = None
    train_queries: str | None = None
    epochs: int | None = None
    learning_rate: float | None = None
    distill_batch_size: int | None = None
    top_k: int | None = None
    temperature: float | None = None
    ivf_weight: float | None = None
    reassign_every: int | None = None
    pseudo_queries: bool | None = None
    seed: int | None = None
    train_device: str | None = None
    max_active_dims: int | None = None
    batch_size: int = 64
    max_seq_length: int | None = None
    model_device: str | None = None
    cache: bool = True
    cache_dir: str | None = None
    evaluate: bool = False
    metrics: list[str] = field(default_factory=lambda: ["ndcg@10", "recall@10", "recall@100"])
    k: int | None = None

    OPTIONS = ("m", "nbits", "nlist", "nprobe", "use_ivf", "epochs", "learning_rate", "distill_batch_size",
               "top_k", "temperature", "ivf_weight", "reassign_every", "pseudo_queries", "seed", "train_device",
               "max_active_dims")

    def options(self) -> dict[str, Any]:
        """The index kind's options that were given."""
        return {key: getattr(self, key) for key in self.OPTIONS if getattr(self, key) is not None}

    def validate(self) -> None:
        from irdistill.workflows.indexing import check_build_options

        for key in ("kind", "dataset", "model", "out"):
            if not getattr(self, key):
                raise InputError(f"index: --{key} is required")
        self.kind = self.kind.lower()
        check_build_options(self.kind, self.options())
        if self.train_queries is not None and self.kind != "distill-vq":
            raise InputError(f"index: --train-queries only drives distill-vq, not --kind {self.kind}")
        if self.batch_size < 1:
            raise InputError(f"index: --batch-size must be >= 1, got {self.batch_size}")
