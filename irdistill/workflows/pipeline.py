"""``irdistill run RECIPE.yaml``: candidates -> teacher scores -> student -> index -> evaluation.

Each stage writes plain files under ``out`` and is skipped when its output already exists,
so a re-run after an interruption continues where it stopped (teacher scoring resumes inside
its stage, training resumes from its last checkpoint)::

    out/candidates.<train split>.trec     BM25 / dense candidates of the training queries
    out/scores.<train split>/scores.parquet  teacher scores of candidates and judged positives
    out/student/                          the trained sentence-transformers model
    out/eval/                             run.trec, metrics.json, perf.json, table.md
    out/fidelity-scores.<test split>/     teacher scores of the test candidates
    out/eval/fidelity.json                student vs teacher agreement on test candidates

Recipe keys (:class:`RunConfig`)::

    dataset: beir/scifact          # the collection; train_split / test_split pick the splits
    out: runs/scifact-tasb
    candidates: {retriever: bm25, k: 100}
    teacher: teachers/ensemble_bm25_mpnet.yaml     # a name, a recipe path or a dict
    train: {student: sentence-transformers/all-MiniLM-L6-v2, loss: tas-balanced, ...}
    index: {kind: flat, params: {}}
    evaluate: {k: 1000, metrics: [ndcg@10, mrr@10, recall@100]}
    fidelity: {depth: 100}          # null to skip

**Without labels** (``generate:`` set; GPL, arXiv 2112.07577, and Promptagator, arXiv 2209.11755):
the training queries are generated from the corpus of ``test_split`` and each one's source passage
is its pseudo-positive; no judgement is read before the evaluation stage (the stages before it see
the corpus with sealed judgements, :class:`~irdistill.data.collection.SealedQrels`, and fail
loudly if they touch them). Two stages come first::

    out/queries.generated/            the generation job (:mod:`irdistill.generation.store`)
    out/queries.kept.parquet          the queries that passed the round-trip filter (all without one)
    out/queries.filter.json           the filter's counts and examples

and the train split is called ``generated``. Keys::

    generate: {generator: {generator: llm, model: SmolLM2-135M-Instruct, examples: [...]},
               per_passage: 1, max_passages: 1000, seed: 1, chunk_passages: 128,
               cloze: false}   # true: the inverse cloze task, each query cut out of its source
                               # passage for the teacher and the student (pseudo_collection)
    filter: {retriever: bm25, k: 3}   # null: keep every generated query
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irdistill.errors import InputError
from irdistill.memory import peak_rss_mb, release_memory
from irdistill.paths import write_text_atomic

logger = logging.getLogger(__name__)

GENERATE_KEYS = {"generator", "per_passage", "max_passages", "seed", "chunk_passages", "cloze"}

BUILT_KINDS = ("distill-vq", "sparse")
"""Index kinds the index stage builds with the index workflow (saved under ``eval/index``); the
others (flat, hnsw, ivfpq, pq) are built in memory by the evaluation harness."""


@dataclass
class RunConfig:
    dataset: str = ""
    out: str = ""
    train_split: str = ""
    """The judged training queries' split (default ``train``); ``generated`` in a label-free run."""
    test_split: str = "test"
    candidates: dict[str, Any] = field(default_factory=lambda: {"retriever": "bm25", "k": 100})
    teacher: Any = None
    train: dict[str, Any] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=lambda: {"params": {}})
    """``kind``: flat (default for a dense student), hnsw, ivfpq, pq, distill-vq, or sparse (a sparse
    student's, its default); ``params``: the kind's options."""
    evaluate: dict[str, Any] = field(default_factory=dict)
    fidelity: dict[str, Any] | None = field(default_factory=lambda: {"depth": 100})
    max_train_queries: int | None = None
    """Train on the first N training queries only (quick runs); ``None``: all of them."""
    generate: dict[str, Any] | None = None
    """Label-free: the query generation job (``generator`` and :func:`generate_queries` options)."""
    filter: dict[str, Any] | None = None
    """Label-free: the round-trip filter (``retriever``, ``k``); ``None`` keeps every query."""

    def __post_init__(self) -> None:
        if not self.train_split:
            self.train_split = "generated" if self.generate is not None else "train"

    @property
    def label_free(self) -> bool:
        return self.generate is not None

    def index_kind(self) -> str:
        """``index.kind``; unset, ``sparse`` for a sparse student and ``flat`` for a dense one."""
        sparse = self.train.get("student_kind", "dense") != "dense"
        return str(self.index.get("kind") or ("sparse" if sparse else "flat")).lower()

    def validate(self) -> None:
        for key in ("dataset", "out", "teacher"):
            if not getattr(self, key):
                raise InputError(f"run: {key} is required")
        if not self.train.get("student"):
            raise InputError("run: train.student is required")
        for key in ("dataset", "split", "scores", "out"):
            if key in self.train:
                raise InputError(f"run: train.{key} is set by the pipeline; remove it from the recipe")
        unknown = set(self.candidates) - {"retriever", "k", "index", "query_batch_size"}
        if unknown:
            raise InputError(
                f"run: unknown candidates key {sorted(unknown)[0]!r}; allowed: retriever, k, index, query_batch_size"
            )
        unknown = set(self.index) - {"kind", "params"}
        if unknown:
            raise InputError(f"run: unknown index key {sorted(unknown)[0]!r}; allowed: kind, params")
        kind, sparse = self.index_kind(), self.train.get("student_kind", "dense") != "dense"
        if sparse != (kind == "sparse"):
            raise InputError(
                f"run: index.kind {kind} does not fit a {self.train.get('student_kind', 'dense')} "
                "student (a sparse student takes the sparse index, a dense one any other)"
            )
        if self.evaluate.get("backend") is not None:
            from irdistill.backends import check_backend

            check_backend(self.evaluate["backend"], what="run: evaluate.backend")
        if self.max_train_queries is not None and self.max_train_queries < 1:
            raise InputError(f"run: max_train_queries must be >= 1, got {self.max_train_queries}")
        self._validate_selection()
        if self.generate is None and self.filter is not None:
            raise InputError("run: filter applies to generated queries; add a generate section or remove filter")
        if self.generate is not None:
            self._validate_generation()

    def _validate_selection(self) -> None:
        """Best-checkpoint selection (``train.eval_dataset``) reads judgements: never the split this
        recipe reports on, never inside its training split, and not at all in a label-free run."""
        from irdistill.data.holdout import check_selection_split

        judged = [k for k in ("eval_dataset", "eval_split") if self.train.get(k)]
        if not judged:
            return
        if self.generate is not None:
            raise InputError(
                f"run: train.{judged[0]} reads judgements to choose a checkpoint, which a label-free run "
                "(generate) must not do; remove it (the run keeps its last checkpoint)"
            )
        if not self.train.get("eval_dataset"):
            raise InputError("run: train.eval_split without train.eval_dataset")
        check_selection_split(
            str(self.train["eval_dataset"]),
            self.train.get("eval_split"),
            train=(self.dataset, self.train_split),
            evaluated=(self.dataset, self.test_split),
            where="run",
        )

    def _validate_generation(self) -> None:
        assert self.generate is not None
        if not isinstance(self.generate, dict) or "generator" not in self.generate:
            raise InputError("run: generate needs a generator (title, sentence, span, or {generator: llm, model: ...})")
        unknown = set(self.generate) - GENERATE_KEYS
        if unknown:
            raise InputError(
                f"run: unknown generate key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(GENERATE_KEYS))}"
            )
        if not isinstance(self.generate.get("cloze", False), bool):
            raise InputError(f"run: generate.cloze must be true or false, got {self.generate['cloze']!r}")
        if self.train_split != "generated":
            raise InputError(
                f"run: train_split {self.train_split!r} names judged training queries, which a label-free run "
                "(generate) does not read; remove train_split (the generated queries are the train split)"
            )
        if self.filter is not None:
            unknown = set(self.filter) - {"retriever", "k"}
            if unknown:
                raise InputError(f"run: unknown filter key {sorted(unknown)[0]!r}; allowed: retriever, k")
            if int(self.filter.get("k", 1)) < 1:
                raise InputError(f"run: filter.k must be >= 1, got {self.filter.get('k')}")

    def check_inputs(self) -> None:
        """Everything that can be checked before work starts: models, the teacher recipe and the
        packages the stages import. Loads no model and reads no data set."""
        from irdistill.dependencies import TRAINING, require
        from irdistill.paths import check_model
        from irdistill.retrieval.bm25 import is_bm25
        from irdistill.teachers.factory import check_teacher

        self.validate()
        require(*TRAINING, purpose="irdistill run (student training)")
        check_model(self.train["student"], what="run: train.student")
        if self.train.get("inbatch_teacher"):
            check_model(self.train["inbatch_teacher"], what="run: train.inbatch_teacher")
        retriever = self.candidates.get("retriever", "bm25")
        if not is_bm25(retriever):
            check_model(retriever, what="run: candidates.retriever")
        check_teacher(self.teacher, source="run: teacher")
        if self.generate is not None:
            from irdistill.generation import build_generator

            build_generator(self.generate["generator"])  # names, options and a local model's files
            if self.filter and not is_bm25(self.filter.get("retriever", "bm25")):
                check_model(self.filter["retriever"], what="run: filter.retriever")


@contextmanager
def _stage(name: str, done: Path | None = None) -> Iterator[bool]:
    """Log one line per stage: skipped (``done`` exists), or finished with its wall time and the
    process's peak resident memory so far (a stage whose figure rises is the one that set it).

    Yields ``True`` when the stage has to run.
    """
    if done is not None and done.exists():
        logger.info("stage %s: skipped, %s exists", name, done)
        yield False
        return
    logger.info("stage %s: started", name)
    start = time.perf_counter()
    yield True
    took = _duration(time.perf_counter() - start)
    logger.info("stage %s: done in %s; peak RSS so far %.2f GiB", name, took, peak_rss_mb() / 1024)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{seconds:.1f} s"


def _candidates_dict(
    run: dict[str, dict[str, float]], collection: Any, depth: int | None, positives: bool
) -> dict[str, list[str]]:
    from irdistill.workflows.scoring import with_positives

    out = {qid: [d for d, _ in sorted(docs.items(), key=lambda x: (-x[1], x[0]))][:depth] for qid, docs in run.items()}
    return with_positives(out, collection) if positives else out


def run_pipeline(cfg: RunConfig, *, show_progress_bar: bool = True) -> dict[str, Any]:
    """Run (or continue) every stage of a recipe; returns the evaluation summary."""
    from irdistill.candidates import write_candidates
    from irdistill.data import judgements_loaded, load_collection, read_run
    from irdistill.evaluation import evaluate_retrieval
    from irdistill.generation import unpatched
    from irdistill.teachers.factory import build_teacher
    from irdistill.workflows.scoring import score_candidates
    from irdistill.workflows.training import TrainConfig, train_student, training_collection

    cfg.check_inputs()
    out = Path(cfg.out)
    train_cfg = TrainConfig(
        **{
            **cfg.train,
            "dataset": cfg.dataset,
            "split": cfg.train_split,
            "scores": str(out / f"scores.{cfg.train_split}"),
            "out": str(out / "student"),
            "max_queries": cfg.max_train_queries,
        }
    )
    train_cfg.validate()
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    test_c: Any = None
    judged_before = judgements_loaded()
    if cfg.label_free:
        train_c = _generated_queries(cfg, out, show_progress_bar)
    else:
        with _stage("load data"):
            train_c = training_collection(train_cfg)  # the queries training will see
            test_c = load_collection(cfg.dataset, split=cfg.test_split)
            logger.info("train: %r; test: %r", train_c, test_c)

    cand_path = out / f"candidates.{cfg.train_split}.trec"
    with _stage("candidates", cand_path) as todo:
        if todo:
            write_candidates(
                unpatched(train_c),  # the corpus's own index (a cloze run's patched passages are positives)
                cand_path,
                cfg.candidates.get("retriever", "bm25"),
                cfg.candidates.get("k", 100),
                index=cfg.candidates.get("index", "flat"),
                query_batch_size=cfg.candidates.get("query_batch_size", 256),
                show_progress_bar=show_progress_bar,
            )

    scores_dir = out / f"scores.{cfg.train_split}"
    # always entered: the score store itself resumes, and refuses a folder holding another job
    with _stage("teacher scores"):
        # built on the corpus as it is (its BM25 statistics, its cached embeddings); a cloze run's
        # patched passages are scored as passages outside it
        teacher = build_teacher(cfg.teacher, unpatched(train_c), show_progress_bar=show_progress_bar)
        patched = getattr(train_c.corpus, "patched", None)
        if patched:  # candidates of other queries too: encoded once, through the cache, not per chunk
            teacher.add_passages(patched)
        cands = _candidates_dict(read_run(cand_path), train_c, None, positives=True)
        score_candidates(teacher, train_c, cands, scores_dir, show_progress_bar=show_progress_bar)
        # the teacher's models, index and corpus embeddings are not needed again: freed before
        # training, which held them on top of its own peak (the main job: 3.80 GiB with them)
        del teacher, cands
        release_memory()

    student = out / "student"
    with _stage("train", student / "irdistill_training.json") as todo:
        if todo:
            train_student(train_cfg, collection=train_c, show_progress_bar=show_progress_bar)

    eval_dir = out / "eval"
    if test_c is None:  # label-free: the judgements are read from here on
        _add_labels_used(out, judgements_loaded() - judged_before)
        test_c = load_collection(cfg.dataset, split=cfg.test_split)
    with _stage("index + evaluate", eval_dir / "metrics.json") as todo:
        if todo and cfg.index_kind() in BUILT_KINDS:
            _build_and_evaluate(cfg, train_c, test_c, student, eval_dir, show_progress_bar)
        elif todo:
            result = evaluate_retrieval(
                str(student),
                test_c,
                index=cfg.index_kind(),
                index_params=cfg.index.get("params") or {},
                out=eval_dir,
                show_progress_bar=show_progress_bar,
                **cfg.evaluate,
            )
            logger.info("student on %s/%s: %s", cfg.dataset, cfg.test_split, result.metrics)
    summary = json.loads((eval_dir / "metrics.json").read_text())
    if cfg.label_free:
        summary.update(label_free_summary(out))

    if cfg.fidelity is not None:
        with _stage("fidelity", eval_dir / "fidelity.json") as todo:
            if todo:
                _fidelity(cfg, test_c, student, eval_dir, show_progress_bar)
    if (eval_dir / "fidelity.json").is_file():
        summary["fidelity"] = json.loads((eval_dir / "fidelity.json").read_text())
    logger.info("run %s: finished in %s", out, _duration(time.perf_counter() - started))
    return summary


def _generated_queries(cfg: RunConfig, out: Path, show_progress_bar: bool) -> Any:
    """The label-free stages: queries generated from the corpus, round-trip filtered, as the training
    collection (source passages as pseudo-positives). Reads no judgement: the corpus comes with
    sealed qrels."""
    from irdistill.data import load_corpus
    from irdistill.generation import (
        QUERIES_NAME,
        build_generator,
        filter_queries,
        generate_queries,
        pseudo_collection,
        read_queries,
        sample_passages,
    )

    assert cfg.generate is not None
    with _stage("load corpus"):
        corpus = load_corpus(cfg.dataset, cfg.test_split, where=f"run {cfg.out} ({cfg.dataset})")
        logger.info("corpus: %r", corpus)
    options = {k: v for k, v in cfg.generate.items() if k != "generator"}
    gen_dir = out / "queries.generated"
    with _stage("generate queries", gen_dir / QUERIES_NAME) as todo:
        if todo:
            seed = int(options.get("seed", 0))
            generate_queries(
                build_generator(cfg.generate["generator"]),
                corpus,
                gen_dir,
                passages=sample_passages(corpus, options.get("max_passages"), seed),
                per_passage=int(options.get("per_passage", 1)),
                seed=seed,
                chunk_passages=int(options.get("chunk_passages", 256)),
                show_progress_bar=show_progress_bar,
            )
    kept_path = out / "queries.kept.parquet"
    with _stage("round-trip filter", kept_path) as todo:
        if todo:
            flt = cfg.filter or {}
            filter_queries(
                read_queries(gen_dir),
                corpus,
                kept_path,
                out / "queries.filter.json",
                retriever=flt.get("retriever", "bm25") if cfg.filter is not None else None,
                k=int(flt.get("k", 1)),
                show_progress_bar=show_progress_bar,
            )
    train_c = pseudo_collection(read_queries(kept_path), corpus, cloze=bool(options.get("cloze", False)))
    if cfg.max_train_queries is not None:
        train_c = train_c.subset(query_ids=train_c.query_ids[: cfg.max_train_queries])
    logger.info("train (generated): %r", train_c)
    return train_c


LABELS_USED = "labels_used.json"


def _add_labels_used(out: Path, count: int) -> None:
    """Add this sitting's count of judgements loaded before the evaluation to ``out/labels_used.json``
    (a resumed run adds its own sitting's)."""
    path = out / LABELS_USED
    before = json.loads(path.read_text())["judgements"] if path.is_file() else 0
    write_text_atomic(path, json.dumps({"judgements": before + count}) + "\n")


def label_free_summary(out: Path) -> dict[str, Any]:
    """What a label-free run adds to its metrics: the generation and filter counts, and
    ``labels_used``: the judgements :func:`irdistill.data.load_collection` handed out before the
    evaluation stage, over every sitting of the run (:func:`irdistill.data.judgements_loaded`). The
    corpus comes from :func:`irdistill.data.load_corpus`, which reads none, and any read of the
    sealed judgements it carries raises; a recipe option that would read some
    (``train.eval_dataset``) is refused."""
    generated = json.loads((out / "queries.generated" / "generated.json").read_text())
    filtered = json.loads((out / "queries.filter.json").read_text())
    used = out / LABELS_USED
    return {
        "labels_used": json.loads(used.read_text())["judgements"] if used.is_file() else None,
        "queries": {"generated": generated["generated"], "kept": filtered["kept"]},
        "generation": generated,
        "filter": filtered,
    }


def _build_and_evaluate(
    cfg: RunConfig, train_c: Any, test_c: Any, student: Path, eval_dir: Path, show_progress_bar: bool
) -> None:
    """A Distill-VQ or sparse index of the test corpus (:func:`irdistill.workflows.indexing.build_index`,
    Distill-VQ trained on the training queries' texts), evaluated; its folder is ``eval/index`` and
    ``eval/metrics.json`` is written last."""
    import shutil

    from irdistill.workflows.indexing import EVAL_METRICS, build_index

    kind = cfg.index_kind()
    evaluate = dict(cfg.evaluate)
    built = build_index(
        kind,
        test_c,
        str(student),
        eval_dir / "index",
        options=cfg.index.get("params") or {},
        train_queries=train_c if kind == "distill-vq" else None,
        evaluate=True,
        metrics=evaluate.pop("metrics", EVAL_METRICS),
        k=evaluate.pop("k", None),
        show_progress_bar=show_progress_bar,
        **evaluate,
    )
    for name in ("run.trec", "perf.json", "table.md"):
        if (eval_dir / "index" / name).is_file():
            shutil.copyfile(eval_dir / "index" / name, eval_dir / name)
    summary = json.loads((eval_dir / "index" / "metrics.json").read_text())
    summary["index_folder"] = str(eval_dir / "index")
    summary["bytes_per_vector"] = built.info["bytes_per_vector"]
    write_text_atomic(eval_dir / "metrics.json", json.dumps(summary, indent=2) + "\n")
    logger.info("student's %s index on %s/%s: %s", kind, cfg.dataset, cfg.test_split, built.metrics)


def _fidelity(cfg: RunConfig, test_c: Any, student: Path, eval_dir: Path, show_progress_bar: bool) -> None:
    """Teacher and student scores of the test candidates, and their agreement."""
    from irdistill.candidates import mine_candidates
    from irdistill.evaluation.fidelity import teacher_fidelity
    from irdistill.scores.table import read_scores, scores_to_run
    from irdistill.teachers.factory import build_teacher
    from irdistill.workflows.scoring import score_candidates

    depth = int(cfg.fidelity.get("depth", 100)) if cfg.fidelity else 100
    test_run = mine_candidates(
        test_c,
        cfg.candidates.get("retriever", "bm25"),
        k=depth,
        exclude_positives=False,
        show_progress_bar=show_progress_bar,
    )
    test_cands = _candidates_dict(test_run, test_c, depth, positives=False)
    path = score_candidates(
        build_teacher(cfg.teacher, test_c, show_progress_bar=show_progress_bar),
        test_c,
        test_cands,
        Path(cfg.out) / f"fidelity-scores.{cfg.test_split}",
        include_positives=False,  # the teacher's ranking of the retrieved top k, judgements unread
        show_progress_bar=show_progress_bar,
    )
    teacher_run = scores_to_run(read_scores(path))
    # the evaluation's settings, so the corpus embeddings come from the cache it filled
    student_run = student_scores(
        str(student),
        test_c,
        test_cands,
        show_progress_bar=show_progress_bar,
        max_seq_length=(cfg.evaluate or {}).get("max_seq_length"),
        backend=(cfg.evaluate or {}).get("backend"),
    )
    fidelity = teacher_fidelity(student_run, teacher_run, k=10)
    write_text_atomic(eval_dir / "fidelity.json", json.dumps(fidelity, indent=2) + "\n")
    logger.info("teacher fidelity: %s", fidelity)


def student_scores(
    model: str | os.PathLike[str],
    collection: Any,
    candidates: dict[str, list[str]],
    *,
    show_progress_bar: bool = False,
    max_seq_length: int | None = None,
    backend: str | None = None,
) -> dict[str, dict[str, float]]:
    """A student's scores of each query's candidates: a dense model (corpus embeddings through the
    cache, on inference ``backend``) or a sparse student (CSR dot products)."""
    import numpy as np

    from irdistill.encoding import DenseEncoder
    from irdistill.students.sparse import encode_sparse, is_sparse_model, load_sparse_student

    qids = list(candidates)
    query_texts = [collection.queries[q] for q in qids]
    if is_sparse_model(model):
        student = load_sparse_student(model, max_seq_length=max_seq_length)
        docs: Any = encode_sparse(
            student,
            collection.doc_texts(),
            side="document",
            ids=collection.doc_ids,
            show_progress_bar=show_progress_bar,
        ).matrix
        queries: Any = encode_sparse(student, query_texts, side="query", ids=qids, show_progress_bar=False).matrix
        docs, queries = docs.tocsr(), queries.toarray()
    else:
        encoder = DenseEncoder(
            str(model), max_seq_length=max_seq_length, show_progress_bar=show_progress_bar, backend=backend or "torch"
        )
        docs = encoder.encode_corpus(collection).embeddings
        queries = encoder.encode(qids, query_texts, side="query").embeddings
    row = {d: i for i, d in enumerate(collection.doc_ids)}
    out: dict[str, dict[str, float]] = {}
    for i, qid in enumerate(qids):
        rows = [row[d] for d in candidates[qid]]
        scores = np.asarray(docs[rows] @ queries[i]).ravel()
        out[qid] = {d: float(s) for d, s in zip(candidates[qid], np.asarray(scores), strict=True)}
    return out
