"""One dataclass config per command, loadable from YAML and overridable from the command line.

A recipe file holds the same keys as the command's flags (underscores, not dashes);
``irdistill evaluate --config eval/recipes/minilm_scifact.yaml --index flat`` loads it and lets the
flag win (:mod:`irdistill.config`). Unknown keys are an error that lists the allowed ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from irdistill.backends import BACKEND_CHOICES, BACKEND_HELP, check_backend
from irdistill.config import option
from irdistill.errors import InputError

C = TypeVar("C")


@dataclass
class EvaluateConfig:
    """``irdistill evaluate``: one retriever on one collection."""

    model: str = option("", help="sentence-transformers model (folder, name or hub id) or 'bm25'")
    dataset: str = option("", help="ir_datasets id, beir/<name>[/<split>], or a BEIR / MS MARCO folder")
    split: str | None = option(None, help="split (test, train, dev ...); overrides one in --dataset")
    index: str = option("flat", help="FAISS index kind: flat (exact), hnsw, ivfpq, pq")
    index_params: dict[str, Any] = option(
        default_factory=dict,
        flag="--index-param",
        parse="key=value",
        help="index option, repeatable: m=48, nprobe=32, ef_search=256",
    )
    k: int = option(1000, short="-k", help="documents retrieved per query")
    metrics: list[str] = option(
        default_factory=lambda: ["ndcg@10", "mrr@10", "recall@100", "recall@1000"],
        parse="comma",
        help="comma-separated ranx metrics",
    )
    batch_size: int = option(64, help="encoding batch size")
    max_seq_length: int | None = option(None, help="truncate texts to this many tokens (default: the model's own)")
    device: str = option("auto", choices=("auto", "cpu", "cuda"), help="faiss device")
    model_device: str | None = option(None, help="torch device for encoding (default: sentence-transformers picks)")
    backend: str = option("torch", choices=BACKEND_CHOICES, help=BACKEND_HELP)
    cache: bool = option(True, negate="--no-cache", help="neither read nor write the embedding cache")
    cache_dir: str | None = option(None, help="embedding cache folder (default $IRDISTILL_CACHE)")
    out: str | None = option(None, help="output folder (default: print the metrics only)")
    save_index: bool = option(False, help="also write the FAISS index to OUT/index.faiss")

    def validate(self) -> None:
        if not self.model:
            raise InputError("evaluate: --model is required (a sentence-transformers model or 'bm25')")
        if not self.dataset:
            raise InputError("evaluate: --dataset is required (e.g. beir/scifact/test or a folder)")
        check_backend(self.backend, what="evaluate: --backend")


@dataclass
class CompareConfig:
    """``irdistill compare``: several runs on one collection, with significance tests."""

    runs: list[str] = option(default_factory=list, cli=False, help="TREC run files or evaluate --out folders")
    dataset: str = option("", help="collection the runs were made on")
    split: str | None = option(None, help="split (test, train, dev ...); overrides one in --dataset")
    names: list[str] | None = option(
        None,
        parse="nargs",
        help="display names, one per run; a name given to several runs makes them one method's seeds, "
        "compared over queries and seeds (irdistill.evaluation.seeds)",
    )
    margin: float | None = option(
        None, help="with seeds: equivalence margin; pairs whose 90 %% intervals lie inside it are called level"
    )
    metrics: list[str] = option(
        default_factory=lambda: ["ndcg@10", "mrr@10", "recall@100"], parse="comma", help="comma-separated ranx metrics"
    )
    stat_test: str = option("student", choices=("student", "fisher", "tukey"), help="paired test")
    max_p: float = option(0.05, help="significance level")
    out: str | None = option(None, help="folder for compare.md, compare.json and compare.png")

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

    dataset: str = option("", help="ir_datasets id, beir/<name>[/<split>], or a BEIR / MS MARCO folder")
    split: str | None = option(None, help="split (test, train, dev ...); overrides one in --dataset")
    retriever: str = option("bm25", help="'bm25' or a sentence-transformers model")
    k: int = option(100, short="-k", help="candidates per query")
    keep_positives: bool = option(False, help="keep judged positives in the run")
    query_batch_size: int = option(256, help="queries searched at once")
    index: str = option("flat", help="FAISS index kind for a dense retriever")
    batch_size: int = option(64, help="encoding batch size")
    backend: str = option("torch", choices=BACKEND_CHOICES, help=BACKEND_HELP + " (dense retriever only)")
    false_negative_teacher: str | None = option(None, help="teacher name or recipe for the false-negative filter")
    false_negative_margin: float = option(0.0, help="margin of that filter")
    out: str = option("", help="output TREC run file")

    def validate(self) -> None:
        if not self.dataset:
            raise InputError("candidates: --dataset is required")
        if not self.out:
            raise InputError("candidates: --out FILE (a TREC run) is required")
        check_backend(self.backend, what="candidates: --backend")


@dataclass
class ScoreConfig:
    """``irdistill score``: teacher scores of candidates (and judged positives) to Parquet."""

    teacher: str = option("", help="teacher name (bm25, dense, cross-encoder, ...) or YAML recipe")
    teacher_model: str | None = option(
        None, help="the named teacher's model (a folder, a name under $IRDISTILL_MODELS or a hub id), without a YAML"
    )
    teacher_options: dict[str, Any] = option(
        default_factory=dict,
        flag="--teacher-option",
        parse="key=value",
        help="another setting of the named teacher (batch_size=64, backend=auto-bf16, ...), repeatable",
    )
    dataset: str = option("", help="ir_datasets id, beir/<name>[/<split>], or a BEIR / MS MARCO folder")
    split: str | None = option(None, help="split (test, train, dev ...); overrides one in --dataset")
    candidates: str = option("", help="TREC run of candidates (from `irdistill candidates`)")
    depth: int | None = option(None, help="score only the top DEPTH candidates per query")
    include_positives: bool = option(
        True, negate="--no-positives", help="do not add judged positives to each query's list"
    )
    chunk_queries: int = option(64, help="queries per shard")
    overwrite: bool = option(False, help="discard an earlier, different job in OUT")
    out: str = option("", help="output folder (shards, manifest, scores.parquet)")
    export_tsv: str | None = option(None, help="also write the MS MARCO teacher-score TSV here")

    def validate(self) -> None:
        for key in ("teacher", "dataset", "candidates", "out"):
            if not getattr(self, key):
                raise InputError(f"score: --{key} is required")
        if self.depth is not None and self.depth < 1:
            raise InputError(f"score: --depth must be >= 1, got {self.depth}")
        if (self.teacher_model or self.teacher_options) and self.teacher.endswith((".yaml", ".yml")):
            raise InputError(
                "score: --teacher-model / --teacher-option go with a teacher name; a YAML recipe sets them itself"
            )

    def teacher_spec(self) -> str | dict[str, Any]:
        """The teacher as :func:`irdistill.teachers.factory.build_teacher` takes it: the name or
        recipe path, or ``{teacher, model, ...}`` when ``--teacher-model`` / ``--teacher-option`` are given."""
        if not (self.teacher_model or self.teacher_options):
            return self.teacher
        spec: dict[str, Any] = {"teacher": self.teacher, **self.teacher_options}
        if self.teacher_model:
            spec["model"] = self.teacher_model
        return spec


@dataclass
class ImportScoresConfig:
    """``irdistill import-scores``: a published MS MARCO teacher-score TSV into a score store."""

    tsv: str = option(
        "",
        help="the TSV: 'score_pos score_neg qid pid_pos pid_neg' per line (--layout ids) or "
        "'score_pos score_neg query passage_pos passage_neg' (--layout text), as the Margin-MSE teacher files",
    )
    layout: str = option("ids", help="ids | text: which of the two published layouts the TSV has")
    dataset: str = option("", help="the collection the texts belong to (--layout text), e.g. msmarco-passage/train")
    split: str | None = option(None, help="its split; overrides one in --dataset")
    out: str = option("", help="output folder: OUT/scores.parquet, readable by irdistill train and run")
    teacher: str = option("imported", help="the teacher's name in the store")
    overwrite: bool = option(False, help="replace an existing OUT/scores.parquet")

    def validate(self) -> None:
        for key in ("tsv", "out"):
            if not getattr(self, key):
                raise InputError(f"import-scores: --{key} is required")
        if not Path(self.tsv).is_file():
            raise InputError(f"import-scores: --tsv {self.tsv}: no such file")
        if self.layout not in ("ids", "text"):
            raise InputError(f"import-scores: --layout must be ids or text, got {self.layout!r}")
        if self.layout == "text" and not self.dataset:
            raise InputError("import-scores: --layout text needs --dataset, the collection whose texts the TSV holds")
        if (Path(self.out) / "scores.parquet").exists() and not self.overwrite:
            raise InputError(f"import-scores: {self.out}/scores.parquet exists; --overwrite replaces it")


@dataclass
class TrainTeacherConfig:
    """``irdistill train-teacher``: fine-tune a cross-encoder teacher on training qrels."""

    backbone: str = option("", help="model folder, $IRDISTILL_MODELS name or hub id")
    dataset: str = option("", help="training collection, e.g. beir/scifact/train")
    split: str | None = option(None, help="split (test, train, dev ...); overrides one in --dataset")
    out: str = option("", help="output model folder")
    negatives: str = option("bm25", help="'bm25' or a dense model to mine negatives")
    num_negatives: int = option(4, help="negatives per positive")
    depth: int = option(30, help="sample negatives from this many top candidates")
    loss: str = option("bce", choices=("bce", "mnrl"), help="bce or mnrl")
    epochs: float = option(1.0, help="training epochs")
    batch_size: int = option(16, help="batch size")
    learning_rate: float = option(2e-5, help="peak learning rate")
    warmup_ratio: float = option(0.1, help="share of steps for warm-up")
    max_length: int = option(256, help="pair truncation length")
    seed: int = option(42, help="random seed")

    def validate(self) -> None:
        for key in ("backbone", "dataset", "out"):
            if not getattr(self, key):
                raise InputError(f"train-teacher: --{key} is required")


@dataclass
class StaticStudentConfig:
    """``irdistill static-student``: a static-embedding student distilled from a transformer's vocabulary."""

    model: str = option("", help="transformer to distil from: model folder, $IRDISTILL_MODELS name or hub id")
    out: str = option("", help="output model folder (a sentence-transformers folder)")
    dims: int | None = option(256, help="PCA dimensions of the token vectors (0: the model's own, not reduced)")
    dataset: str | None = option(
        None, help="collection whose corpus the token frequencies are counted on (default: the vocabulary's order)"
    )
    split: str | None = option(None, help="its split (the corpus is the same in every split of a BEIR folder)")
    sif_coefficient: float = option(1e-4, help="a of the token weight a / (a + p(token)); 0 turns weighting off")

    def validate(self) -> None:
        for key in ("model", "out"):
            if not getattr(self, key):
                raise InputError(f"static-student: --{key} is required")
        if self.dims is not None and self.dims < 0:
            raise InputError(f"static-student: --dims must be >= 0, got {self.dims}")
        if self.sif_coefficient < 0:
            raise InputError(f"static-student: --sif-coefficient must be >= 0, got {self.sif_coefficient}")


Q, D, SPARSE, ENC = ("quantizer (distill-vq, ivfpq, pq)", "Distill-VQ training", "sparse", "encoding and evaluation")


@dataclass
class IndexConfig:
    """``irdistill index``: a compressed index of a collection's corpus (Distill-VQ, IVF-PQ, PQ, sparse).

    The kind's options (``m`` .. ``max_active_dims``) are ``None`` unless given, so the index kind's
    own defaults apply and an option the kind does not take is an error
    (:func:`irdistill.workflows.indexing.check_build_options`).
    """

    kind: str = option("", help="distill-vq, ivfpq, pq or sparse")
    dataset: str = option("", help="collection whose corpus is indexed, e.g. beir/scifact/test or a folder")
    split: str | None = option(None, help="split (test, train, dev ...); overrides one in --dataset")
    model: str = option(
        "", help="dense sentence-transformers model (distill-vq, ivfpq, pq) or sparse student / masked LM (sparse)"
    )
    out: str = option("", help="output folder")
    m: int | None = option(
        None, group=Q, help="PQ sub-quantizers, bytes per vector at 8 bits; divides the dimension (default dim / 8)"
    )
    nbits: int | None = option(None, group=Q, help="bits per PQ code (default 8)")
    nlist: int | None = option(
        None, group=Q, help="inverted lists, distill-vq / ivfpq (default min(4 sqrt(n), n / 39))"
    )
    nprobe: int | None = option(None, group=Q, help="lists visited per query, saved in the file (default 16)")
    use_ivf: bool | None = option(
        None, group=D, negate="--no-ivf", help="PQ codebooks only, exported as a faiss IndexPQ"
    )
    train_queries: str | None = option(
        None,
        group=D,
        help="queries that drive the distillation: a split of "
        "--dataset (default train) or another collection (beir/scifact/train, a folder)",
    )
    epochs: int | None = option(
        None, group=D, help="passes over the training queries (default 3; 0: faiss k-means only)"
    )
    learning_rate: float | None = option(None, group=D, help="Adam learning rate (default 1e-3)")
    distill_batch_size: int | None = option(None, group=D, help="queries per step (default 64)")
    top_k: int | None = option(None, group=D, help="teacher top-k documents per query (default 50)")
    temperature: float | None = option(None, group=D, help="ListNet softmax temperature (default 0.05)")
    ivf_weight: float | None = option(None, group=D, help="weight of the coarse (centroid) ListNet term (default 0)")
    reassign_every: int | None = option(None, group=D, help="re-assign codes every N steps (default: each epoch)")
    pseudo_queries: bool | None = option(None, group=D, help="also use every document embedding as a training query")
    max_queries: int | None = option(
        None, group=D, help="distil on a seeded sample of this many training queries (default: all)"
    )
    seed: int | None = option(None, group=D, help="seed of k-means and shuffling (default 1234)")
    train_device: str | None = option(
        None, group=D, choices=("auto", "cpu", "cuda"), help="torch device for training (default cpu)"
    )
    max_active_dims: int | None = option(None, group=SPARSE, help="keep the largest N weights per text")
    batch_size: int = option(64, group=ENC, help="encoding batch size")
    max_seq_length: int | None = option(
        None, group=ENC, help="truncate texts to this many tokens (default: the model's own)"
    )
    model_device: str | None = option(
        None, group=ENC, help="torch device for encoding (default: sentence-transformers picks)"
    )
    backend: str = option("torch", group=ENC, choices=BACKEND_CHOICES, help=BACKEND_HELP)
    cache: bool = option(True, group=ENC, negate="--no-cache", help="neither read nor write the embedding cache")
    cache_dir: str | None = option(None, group=ENC, help="embedding cache folder (default $IRDISTILL_CACHE)")
    evaluate: bool = option(
        False, group=ENC, help="search the collection's queries with the saved index and write metrics.json"
    )
    metrics: list[str] = option(
        default_factory=lambda: ["ndcg@10", "recall@10", "recall@100"],
        group=ENC,
        parse="comma",
        help="comma-separated ranx metrics for --evaluate",
    )
    k: int | None = option(
        None, group=ENC, short="-k", help="documents retrieved per query (default: largest metric cutoff)"
    )
    index_options: dict[str, Any] = option(
        default_factory=dict,
        flag="--index-option",
        parse="key=value",
        help="an option of the index kind without a flag of its own (a plug-in builder's), repeatable",
    )

    def options(self) -> dict[str, Any]:
        """The index kind's options that were given: the flags of the built-in kinds' options, then
        ``index_options`` (a plug-in builder's own keywords, which have no flag here). A key given
        both ways is refused."""
        from irdistill.workflows.indexing import all_build_options

        given = {key: value for key in all_build_options() if (value := getattr(self, key, None)) is not None}
        both = sorted(set(given) & set(self.index_options))
        if both:
            raise InputError(f"index: {both[0]!r} is given as --{both[0].replace('_', '-')} and in --index-option")
        return {**given, **self.index_options}

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
        check_backend(self.backend, what="index: --backend")


@dataclass
class GenerateQueriesConfig:
    """``irdistill generate-queries``: synthetic queries for a corpus, round-trip filtered."""

    dataset: str = option("", help="ir_datasets id, beir/<name>[/<split>], or a BEIR / MS MARCO folder (its corpus)")
    split: str | None = option(None, help="the split whose corpus to read; no judgement is read")
    generator: str = option(
        "llm", help="title | sentence | span (no model), or llm (a causal LM: --model) or a YAML file of its options"
    )
    model: str | None = option(None, help="llm: the causal LM (folder, .gguf, $IRDISTILL_MODELS name or hub id)")
    examples: str | None = option(
        None, help="llm: YAML or JSON file of few-shot examples, a list of {passage: ..., query: ...}"
    )
    generator_options: dict[str, Any] = option(
        default_factory=dict,
        flag="--generator-option",
        parse="key=value",
        help="generator option, repeatable: temperature=0.7, max_new_tokens=32, batch_size=16",
    )
    per_passage: int = option(1, help="queries asked for each passage (repeats are dropped)")
    max_passages: int | None = option(None, help="a random sample of this many passages (default: all)")
    seed: int = option(0, help="seed of the passage sample and of the generator")
    chunk_passages: int = option(256, help="passages per shard (the unit of resumption)")
    filter_retriever: str | None = option(
        None, help="round-trip filter: 'bm25' or a dense model; keep a query only if its passage is in its top k"
    )
    filter_k: int = option(1, help="round-trip filter depth")
    overwrite: bool = option(False, help="discard an earlier, different job in OUT")
    out: str = option("", help="output folder: shards, manifest, queries.parquet, generated.json")

    def validate(self) -> None:
        for key in ("dataset", "out"):
            if not getattr(self, key):
                raise InputError(f"generate-queries: --{key} is required")
        if self.generator == "llm" and not self.model:
            raise InputError("generate-queries: --generator llm needs --model (a causal LM)")
        if self.generator != "llm" and (self.model or self.examples):
            raise InputError("generate-queries: --model and --examples belong to --generator llm")
        if self.filter_k < 1:
            raise InputError(f"generate-queries: --filter-k must be >= 1, got {self.filter_k}")

    def generator_spec(self) -> dict[str, Any]:
        """The generator's options, as :func:`irdistill.generation.build_generator` takes them."""
        from irdistill.config import load_yaml

        if self.generator.endswith((".yaml", ".yml")):
            spec = load_yaml(self.generator)
        else:
            spec = {"generator": self.generator}
        if self.model:
            spec["model"] = self.model
        if self.examples:
            spec["examples"] = _read_examples(self.examples)
        return {**spec, **self.generator_options}


def _read_examples(path: str) -> list[Any]:
    import yaml

    from irdistill.data.lines import read_text

    if not Path(path).is_file():
        raise InputError(f"--examples {path}: no such file")
    try:
        data = yaml.safe_load(read_text(Path(path)))  # JSON is YAML too
    except yaml.YAMLError as err:
        raise InputError(f"--examples {path}: not valid YAML or JSON ({err})") from None
    if isinstance(data, dict) and "examples" in data:
        data = data["examples"]
    if not isinstance(data, list):
        raise InputError(f"--examples {path}: expected a list of {{passage, query}} pairs")
    return data
