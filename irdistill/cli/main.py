"""``irdistill``: distill rankers into fast retrievers, and evaluate them.

Every command takes ``--config FILE.yaml`` with the same keys as its flags; flags win.
Errors in the input print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from irdistill import __version__
from irdistill.errors import InputError, MissingDependencyError
from irdistill.paths import check_model

logger = logging.getLogger("irdistill")

EPILOG = """environment:
  IRDISTILL_DATA    folder of data sets in BEIR layout (beir/scifact -> $IRDISTILL_DATA/scifact)
  IRDISTILL_MODELS  folder of models (sentence-transformers/all-MiniLM-L6-v2 -> $IRDISTILL_MODELS/all-MiniLM-L6-v2);
                    default ~/.cache/irdistill/models; else the Hugging Face hub
  IRDISTILL_CACHE   embedding cache (default ~/.cache/irdistill/cache)
"""


def build_parser() -> argparse.ArgumentParser:
    """Every command's flags come from its config dataclass (:func:`irdistill.config.option`), so
    a flag and its YAML key are declared once."""
    from irdistill.cli.config import (
        CandidatesConfig,
        CompareConfig,
        EvaluateConfig,
        GenerateQueriesConfig,
        ImportScoresConfig,
        IndexConfig,
        ScoreConfig,
        StaticStudentConfig,
        TrainTeacherConfig,
    )
    from irdistill.config import add_config_arguments
    from irdistill.workflows.training import TrainConfig

    parser = argparse.ArgumentParser(
        prog="irdistill",
        description="Distill strong rankers into fast first-stage retrievers and compact indexes, "
        "and evaluate them with FAISS and ranx.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"irdistill {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bars")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # command, its config dataclass (whose fields are its flags), --config help, help, description, epilog
    commands = [
        (
            "evaluate",
            EvaluateConfig,
            "YAML file with any of the keys below",
            "evaluate a model (or bm25) on a collection",
            "Encode the corpus and queries with a sentence-transformers model (cached on disk), "
            "index them with FAISS, retrieve the top k per query and score the run with ranx. Writes "
            "run.trec, metrics.json, perf.json (docs/s, queries/s, index bytes, peak memory) and "
            "table.md to --out.",
            "example: irdistill evaluate --model sentence-transformers/all-MiniLM-L6-v2 --dataset "
            "beir/scifact/test --out runs/minilm\n\n" + EPILOG,
        ),
        (
            "compare",
            CompareConfig,
            "YAML file with any of the keys below",
            "compare runs with paired significance tests and a plot",
            "Score several runs on one collection with ranx, test every pair (paired t-test by "
            "default) and plot quality against latency. A RUN is a TREC run file or an `irdistill "
            "evaluate --out` folder (whose perf.json gives the latency).",
            "example: irdistill compare runs/bm25 runs/minilm --dataset beir/scifact/test --out runs/cmp\n"
            "several seeds a method (a name repeated once per seed; tested over queries and seeds):\n"
            "  irdistill compare a/s1 a/s2 a/s3 b/s1 b/s2 b/s3 --names A A A B B B --dataset beir/scifact/train:dev",
        ),
        (
            "candidates",
            CandidatesConfig,
            "YAML file with any of the keys below",
            "mine top-k candidates per query (BM25 or a dense model)",
            "Retrieve the top k passages of every query with BM25 or a dense model (through a FAISS "
            "index), in query batches so memory stays flat, and write a TREC run. Judged positives "
            "are left out (they come from the qrels) unless --keep-positives; "
            "--false-negative-teacher drops negatives that teacher scores within a margin of the "
            "weakest positive.",
            "example: irdistill candidates --dataset beir/scifact/train --retriever bm25 -k 100 "
            "--out runs/scifact-train-bm25.trec",
        ),
        (
            "score",
            ScoreConfig,
            "YAML file with any of the keys below",
            "score candidates with a teacher into a resumable Parquet store",
            "Score every (query, candidate) pair of a run, plus each query's judged positives, with "
            "a teacher. Scores go to OUT/scores.parquet (qid, pid, score, teacher) through shards: a "
            "run that is stopped, even killed, resumes where it stopped. Under torchrun, ranks share "
            "the chunks and rank 0 merges.",
            "teachers: a registered name (bm25, dense, cross-encoder, ensemble, listwise-llm) or a "
            "YAML recipe (see teachers/).\nexample: irdistill score --teacher "
            "teachers/ensemble_bm25_mpnet.yaml --dataset beir/scifact/train --candidates "
            "runs/scifact-train-bm25.trec --out runs/scores",
        ),
        (
            "generate-queries",
            GenerateQueriesConfig,
            "YAML file with any of the keys below",
            "generate training queries for a corpus without judgements (GPL / Promptagator)",
            "Write up to --per-passage queries for each passage of a corpus (or a random sample of "
            "--max-passages) with a causal LM prompted with few-shot (passage, query) examples "
            "(Promptagator style; batched generate, sampling), or with a cheap generator: the title, "
            "a random sentence or a random span of the passage. Repeated queries are dropped. Queries "
            "go to OUT/queries.parquet (qid, pid, query, generator) through shards, so a stopped or "
            "killed job resumes; OUT/generated.json has the counts and queries/s. With "
            "--filter-retriever, OUT/kept.parquet holds the queries whose source passage that "
            "retriever ranks in its top --filter-k (round-trip consistency) and OUT/filter.json the "
            "counts and examples. No judgement is read. A recipe with a generate section runs this "
            "inside irdistill run, up to the trained and evaluated student.",
            "examples:\n  irdistill generate-queries --dataset beir/scifact/test --generator llm --model "
            "SmolLM2-135M-Instruct --examples eval/recipes/adapt/scifact_examples.yaml --max-passages 1000 "
            "--filter-retriever bm25 --filter-k 3 --out runs/gen-smollm\n  irdistill generate-queries "
            "--dataset beir/cisi/test --generator sentence --out runs/gen-cisi-sentence",
        ),
        (
            "import-scores",
            ImportScoresConfig,
            "YAML file with any of the keys below",
            "import a published MS MARCO teacher-score TSV into a score store",
            "Stream a teacher-score TSV in a layout published with Margin-MSE (--layout ids: score_pos "
            "score_neg qid pid_pos pid_neg per line; --layout text: the query and passage texts, mapped "
            "to the ids of --dataset) into OUT/scores.parquet (qid, pid, score, teacher), each (qid, pid) "
            "once; a pair given two different scores, a bad line or a non-finite score is an error naming "
            "the line. The store trains students like one irdistill score wrote.",
            "example: irdistill import-scores --tsv bert_cat_ensemble_msmarcopassage_train_scores_ids.tsv "
            "--teacher bert-cat-ensemble --out runs/scores/msmarco-ensemble",
        ),
        (
            "train-teacher",
            TrainTeacherConfig,
            "YAML file with any of the keys below",
            "fine-tune a cross-encoder teacher on training qrels",
            "Fine-tune a sentence-transformers CrossEncoder (one logit) from any backbone on the "
            "judged positives of a training split and hard negatives mined with BM25 or a dense "
            "model, with the sentence-transformers CrossEncoder trainer. The output folder is a "
            "CrossEncoder: use it as `--teacher` in a recipe with `teacher: cross-encoder`.",
            "example: irdistill train-teacher --backbone sentence-transformers/all-MiniLM-L6-v2 "
            "--dataset beir/scifact/train --out runs/teachers/ce-minilm --epochs 2",
        ),
        (
            "train",
            TrainConfig,
            "YAML recipe",
            "train a bi-encoder student from teacher scores (YAML recipe)",
            "Train a sentence-transformers bi-encoder from a teacher-score store with Margin-MSE, "
            "the TAS-Balanced dual-teacher loss, listwise KL, hybrid or InfoNCE, batches drawn by "
            "the TAS-Balanced or a random sampler, through the sentence-transformers trainer "
            "(checkpoints, resume, DDP under torchrun / accelerate launch). Every key of the recipe "
            "(irdistill.workflows.training.TrainConfig) is also a flag below; flags win over the "
            "file.",
            "example: irdistill train --config eval/recipes/scifact_student_base.yaml --scores "
            "runs/scifact-distill/scores.train --out runs/student",
        ),
        (
            "static-student",
            StaticStudentConfig,
            "YAML file with any of the keys below",
            "distil a transformer's vocabulary into a static-embedding student",
            "Pass every token of a transformer's vocabulary through it alone, reduce the vectors by PCA "
            "and weight them by smooth inverse frequency (counted on --dataset's corpus), as model2vec "
            "does: a sentence-transformers folder whose text vector is the mean of its tokens' "
            "(irdistill.students.static), tens of times faster than the transformer on a CPU. Train it "
            "with `irdistill train --student OUT` and a learning rate near 1e-2.",
            "example: irdistill static-student --model sentence-transformers/all-MiniLM-L6-v2 --dataset "
            "beir/scifact --out runs/static-minilm",
        ),
        (
            "index",
            IndexConfig,
            "YAML recipe with any of the keys below (see indexes/)",
            "build a compressed index of a corpus: distill-vq, ivfpq, pq or sparse",
            "Encode the corpus of --dataset with --model and build a compressed index: distill-vq "
            "(IVF centroids and PQ codebooks learned by ListNet distillation of the dense model's "
            "own query-document scores on --train-queries, arXiv 2204.00185; no labels needed), "
            "ivfpq or pq (faiss k-means), or sparse (the inverted index of a sparse student). Writes "
            "OUT/index.faiss (a plain faiss file) or OUT/index.npz (sparse), OUT/doc_ids.txt and "
            "OUT/index.json (kind, options, model, data set, ntotal, bytes per vector); with "
            "--evaluate also run.trec, metrics.json and perf.json from searching the collection's "
            "queries.",
            "examples:\n  irdistill index --config indexes/distill_vq_minilm_48x8.yaml --out runs/dvq "
            "--evaluate\n  irdistill index --kind ivfpq --model "
            "sentence-transformers/all-MiniLM-L6-v2 --dataset beir/scifact/test --m 48 --out "
            "runs/ivfpq\n  irdistill index --kind sparse --model splade-tiny --dataset "
            "beir/scifact/test --out runs/splade\n\n" + EPILOG,
        ),
    ]
    for name, config, config_help, summary, description, epilog in commands:
        command = sub.add_parser(
            name,
            help=summary,
            description=description,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == "compare":
            command.add_argument("runs", nargs="*", metavar="RUN", help="TREC run files or evaluate --out folders")
        command.add_argument("--config", help=config_help)
        add_config_arguments(command, config)

    rn = sub.add_parser(
        "run",
        help="run a whole recipe: candidates -> teacher scores -> student -> index -> evaluation",
        description="Chain every stage of a distillation recipe (see irdistill.workflows.pipeline.RunConfig): "
        "mine training candidates, score them with the teacher, train the student, index the test "
        "corpus with it and evaluate, plus teacher fidelity. A stage whose output exists is skipped, "
        "so an interrupted run continues where it stopped.",
        epilog="examples:\n  irdistill run eval/recipes/scifact_quick.yaml     # every stage in ~10 min on 2 "
        "cores\n  irdistill run eval/recipes/scifact_distill.yaml   # the main job, ~63 min on 2 cores with bf16\n\n"
        "Each stage logs one line when it starts and when it is done (with its wall time); -q keeps "
        "only warnings. Models, the teacher recipe and the packages training needs are checked "
        "before any work.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rn.add_argument("recipe", nargs="?", help="YAML recipe")
    rn.add_argument("--out", help="override the recipe's output folder")
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    if quiet:  # read by tqdm, huggingface_hub and transformers when they are imported later
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        # ... and told directly when already imported (main() called from a program)
        if "huggingface_hub" in sys.modules:
            sys.modules["huggingface_hub"].utils.disable_progress_bars()
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("faiss.loader", "bm25s", "httpx", "urllib3", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose < 2 else logging.DEBUG)


def _overrides(args: argparse.Namespace, skip: set[str]) -> dict[str, Any]:
    values = {k: v for k, v in vars(args).items() if k not in skip}
    for key, value in values.items():  # repeated KEY=VALUE flags build a mapping
        if isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
            values[key] = dict(value)
    return values


GLOBAL = {"command", "config", "verbose", "quiet", "debug"}


def cmd_evaluate(args: argparse.Namespace) -> int:
    from irdistill.cli.config import EvaluateConfig
    from irdistill.config import config_from
    from irdistill.retrieval.bm25 import is_bm25

    cfg = config_from(EvaluateConfig, args.config, _overrides(args, GLOBAL))
    cfg.validate()
    if not is_bm25(cfg.model):
        check_model(cfg.model, what="--model")
    _check_faiss_device(cfg.device)
    from irdistill.data import load_collection
    from irdistill.evaluation import evaluate_retrieval

    collection = load_collection(cfg.dataset, split=cfg.split)
    logger.info("%r", collection)
    result = evaluate_retrieval(
        cfg.model,
        collection,
        index=cfg.index,
        index_params=cfg.index_params,
        k=cfg.k,
        metrics=cfg.metrics,
        batch_size=cfg.batch_size,
        max_seq_length=cfg.max_seq_length,
        device=cfg.device,
        model_device=cfg.model_device,
        backend=cfg.backend,
        cache=cfg.cache,
        cache_dir=cfg.cache_dir,
        out=cfg.out,
        show_progress_bar=not args.quiet,
    )
    if cfg.save_index:
        if not cfg.out:
            raise InputError("--save-index needs --out")
        if is_bm25(cfg.model):
            raise InputError("--save-index: bm25 has no FAISS index")
        _save_index(cfg, collection, os.path.join(cfg.out, "index.faiss"))
    print(result.table_header())
    print(result.table_row())
    return 0


def _check_faiss_device(device: str | None) -> None:
    """``--device cuda`` needs GPU faiss and a GPU: say so before any work."""
    if device == "cuda":
        from irdistill.indexes.faiss_indexes import resolve_device

        resolve_device("cuda")


def _save_index(cfg: Any, collection: Any, path: str) -> None:
    from irdistill.encoding import DenseEncoder
    from irdistill.indexes import make_index

    encoder = DenseEncoder(
        cfg.model,
        batch_size=cfg.batch_size,
        max_seq_length=cfg.max_seq_length,
        backend=cfg.backend,
        cache=cfg.cache,
        cache_root=cfg.cache_dir,
        show_progress_bar=False,
    )
    docs = encoder.encode_corpus(collection)
    index = make_index(cfg.index, docs.embeddings.shape[1], device="cpu", **cfg.index_params)
    index.add(docs.embeddings)
    index.save(path)
    logger.info("index written to %s (%d bytes)", path, index.nbytes)


def cmd_compare(args: argparse.Namespace) -> int:
    from irdistill.cli.config import CompareConfig
    from irdistill.config import config_from

    overrides = _overrides(args, GLOBAL)
    if not overrides.get("runs"):
        overrides.pop("runs", None)
    cfg = config_from(CompareConfig, args.config, overrides)
    cfg.validate()
    from irdistill.data import load_collection
    from irdistill.evaluation import compare_runs, load_run_entry, write_comparison

    collection = load_collection(cfg.dataset, split=cfg.split)
    names = cfg.names or [None] * len(cfg.runs)
    entries = [load_run_entry(path, name) for path, name in zip(cfg.runs, names, strict=True)]
    if cfg.names and len(set(cfg.names)) < len(cfg.names):  # a repeated name: that method's seeds
        from irdistill.evaluation import compare_seeded, write_seeded_comparison

        groups: dict[str, list] = {}
        for entry in entries:
            groups.setdefault(entry.name, []).append(entry)
        seeded = compare_seeded(collection, groups, cfg.metrics, margin=cfg.margin)
        if cfg.out:
            write_seeded_comparison(seeded, cfg.out)
        print(seeded.to_markdown())
        return 0
    comparison = compare_runs(collection, entries, cfg.metrics, cfg.stat_test, cfg.max_p)
    if cfg.out:
        write_comparison(comparison, cfg.out)
    print(comparison.to_markdown())
    return 0


def cmd_candidates(args: argparse.Namespace) -> int:
    from irdistill.cli.config import CandidatesConfig
    from irdistill.config import config_from
    from irdistill.retrieval.bm25 import is_bm25

    cfg = config_from(CandidatesConfig, args.config, _overrides(args, GLOBAL))
    cfg.validate()
    if not is_bm25(cfg.retriever):
        check_model(cfg.retriever, what="--retriever")
    if cfg.false_negative_teacher:
        from irdistill.teachers.factory import check_teacher

        check_teacher(cfg.false_negative_teacher, source="--false-negative-teacher")
    from irdistill.candidates import FalseNegativeFilter, write_candidates
    from irdistill.data import load_collection

    collection = load_collection(cfg.dataset, split=cfg.split)
    logger.info("%r", collection)
    flt = None
    if cfg.false_negative_teacher:
        from irdistill.teachers.factory import build_teacher

        flt = FalseNegativeFilter(build_teacher(cfg.false_negative_teacher, collection), cfg.false_negative_margin)
    count = write_candidates(
        collection,
        cfg.out,
        cfg.retriever,
        cfg.k,
        exclude_positives=not cfg.keep_positives,
        false_negatives=flt,
        query_batch_size=cfg.query_batch_size,
        index=cfg.index,
        batch_size=cfg.batch_size,
        backend=cfg.backend,
        show_progress_bar=not args.quiet,
    )
    print(f"{count} queries, up to {cfg.k} candidates each: {cfg.out}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from irdistill.cli.config import ScoreConfig
    from irdistill.config import config_from

    cfg = config_from(ScoreConfig, args.config, _overrides(args, GLOBAL))
    cfg.validate()
    from irdistill.teachers.factory import build_teacher, check_teacher

    check_teacher(cfg.teacher_spec(), source="--teacher")
    if not os.path.isfile(cfg.candidates):
        raise InputError(f"--candidates {cfg.candidates}: no such file")
    from irdistill.data import load_collection, read_run
    from irdistill.scores.msmarco import export_msmarco_tsv
    from irdistill.scores.table import read_scores
    from irdistill.workflows.scoring import score_candidates

    collection = load_collection(cfg.dataset, split=cfg.split)
    run = read_run(cfg.candidates)
    candidates: dict[str, list[str]] = {}
    for qid, docs in run.items():
        if qid not in collection.queries:
            raise InputError(f"{cfg.candidates}: query id {qid!r} is not in {collection.name}/{collection.split}")
        candidates[qid] = [d for d, _ in sorted(docs.items(), key=lambda x: (-x[1], x[0]))][: cfg.depth]
    if cfg.include_positives:  # every list positives first, the order the stores were always written in
        from irdistill.workflows.scoring import with_positives

        candidates = with_positives(candidates, collection)
    teacher = build_teacher(cfg.teacher_spec(), collection, show_progress_bar=not args.quiet)
    path = score_candidates(
        teacher,
        collection,
        candidates,
        cfg.out,
        include_positives=cfg.include_positives,
        chunk_queries=cfg.chunk_queries,
        overwrite=cfg.overwrite,
        show_progress_bar=not args.quiet,
    )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: wait for every rank, rank 0 merges
        import torch.distributed as dist

        from irdistill.workflows.scoring import merge_shards

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        dist.barrier()
        if dist.get_rank() == 0:
            path = merge_shards(cfg.out)
        dist.barrier()
        dist.destroy_process_group()
        if int(os.environ.get("RANK", "0")) != 0:
            return 0
    if cfg.export_tsv and path.name == "scores.parquet" and path.is_file():
        export_msmarco_tsv(path, collection.qrels, cfg.export_tsv)
    rows = read_scores(path).num_rows if path.is_file() else 0
    print(f"{rows} scores from {teacher.name} ({teacher.scale.value}): {path}")
    return 0


def cmd_train_teacher(args: argparse.Namespace) -> int:
    from irdistill.cli.config import TrainTeacherConfig
    from irdistill.config import config_from

    cfg = config_from(TrainTeacherConfig, args.config, _overrides(args, GLOBAL))
    cfg.validate()
    from irdistill.dependencies import TRAINING, require

    require(*TRAINING, purpose="irdistill train-teacher")
    check_model(cfg.backbone, what="--backbone")
    from irdistill.data import load_collection
    from irdistill.workflows.teacher_training import train_cross_encoder

    collection = load_collection(cfg.dataset, split=cfg.split or "train")
    logger.info("%r", collection)
    result = train_cross_encoder(
        cfg.backbone,
        collection,
        cfg.out,
        negatives=cfg.negatives,
        num_negatives=cfg.num_negatives,
        depth=cfg.depth,
        loss=cfg.loss,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        warmup_ratio=cfg.warmup_ratio,
        max_length=cfg.max_length,
        seed=cfg.seed,
        show_progress_bar=not args.quiet,
    )
    print(
        f"cross-encoder teacher: {result.path} ({result.examples} examples, {result.seconds:.0f} s, "
        f"train loss {result.train_loss:.4f})"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from irdistill.config import config_from
    from irdistill.workflows.training import TrainConfig, train_student

    cfg = config_from(TrainConfig, args.config, _overrides(args, GLOBAL))
    cfg.validate()
    result = train_student(cfg, show_progress_bar=not args.quiet)
    print(
        f"student: {result.path} ({result.examples} examples, {result.seconds:.0f} s, "
        f"{result.examples_per_second:.1f} examples/s, train loss {result.train_loss:.4f})"
    )
    return 0


def cmd_static_student(args: argparse.Namespace) -> int:
    from irdistill.cli.config import StaticStudentConfig
    from irdistill.config import config_from

    cfg = config_from(StaticStudentConfig, args.config, _overrides(args, GLOBAL))
    cfg.validate()
    check_model(cfg.model, what="--model")
    from irdistill.students.static import distill_static_embeddings

    texts = None
    if cfg.dataset:
        from irdistill.data import load_corpus

        texts = (doc.full_text() for doc in load_corpus(cfg.dataset, split=cfg.split).corpus.values())
    out = distill_static_embeddings(
        cfg.model,
        cfg.out,
        dims=cfg.dims or None,
        texts=texts,
        sif_coefficient=cfg.sif_coefficient,
        show_progress_bar=not args.quiet,
    )
    print(f"static student: {out}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from irdistill.cli.config import IndexConfig
    from irdistill.config import config_from

    cfg = config_from(IndexConfig, args.config, _overrides(args, GLOBAL))
    cfg.validate()
    check_model(cfg.model, what="--model")
    from irdistill.data import load_collection
    from irdistill.workflows.indexing import build_index

    collection = load_collection(cfg.dataset, split=cfg.split)
    logger.info("%r", collection)
    train = _train_queries(cfg.dataset, cfg.train_queries or "train") if cfg.kind == "distill-vq" else None
    result = build_index(
        cfg.kind,
        collection,
        cfg.model,
        cfg.out,
        options=cfg.options(),
        train_queries=train,
        batch_size=cfg.batch_size,
        max_seq_length=cfg.max_seq_length,
        model_device=cfg.model_device,
        backend=cfg.backend,
        cache=cfg.cache,
        cache_dir=cfg.cache_dir,
        evaluate=cfg.evaluate,
        metrics=cfg.metrics,
        k=cfg.k,
        show_progress_bar=not args.quiet,
    )
    print(result.summary())
    return 0


def _train_queries(dataset: str, spec: str) -> Any:
    """``train`` (a split of ``dataset``), or a collection of its own: ``beir/scifact/train``, a folder."""
    from irdistill.data import load_collection

    if "/" not in spec and not os.path.exists(spec):
        return load_collection(dataset, split=spec)
    return load_collection(spec)


def cmd_run(args: argparse.Namespace) -> int:
    from irdistill.config import build_config, load_yaml
    from irdistill.workflows.pipeline import RunConfig, run_pipeline

    if not args.recipe:
        raise InputError("run: give a recipe file, e.g. irdistill run eval/recipes/scifact_quick.yaml")
    values = load_yaml(args.recipe)
    if args.out:
        values["out"] = args.out
    cfg = build_config(RunConfig, values, source=args.recipe)
    summary = run_pipeline(cfg, show_progress_bar=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_import_scores(args: argparse.Namespace) -> int:
    from irdistill.cli.config import ImportScoresConfig
    from irdistill.config import config_from

    cfg = config_from(ImportScoresConfig, args.config, _overrides(args, GLOBAL))
    cfg.validate()
    from irdistill.scores.msmarco import import_msmarco_scores

    collection = None
    if cfg.layout == "text":
        from irdistill.data import load_collection

        collection = load_collection(cfg.dataset, split=cfg.split)
    done = import_msmarco_scores(
        cfg.tsv, Path(cfg.out) / "scores.parquet", cfg.teacher, layout=cfg.layout, collection=collection
    )
    print(f"{done.out}: {done.rows} scores of teacher {cfg.teacher} for {done.queries} queries ({done.lines} lines)")
    return 0


def cmd_generate_queries(args: argparse.Namespace) -> int:
    from irdistill.cli.config import GenerateQueriesConfig
    from irdistill.config import config_from

    cfg = config_from(GenerateQueriesConfig, args.config, _overrides(args, GLOBAL))
    cfg.validate()
    from irdistill.data import load_collection
    from irdistill.data.collection import without_judgements
    from irdistill.generation import build_generator, filter_queries, generate_queries, read_queries, sample_passages
    from irdistill.retrieval.bm25 import is_bm25

    if cfg.filter_retriever and not is_bm25(cfg.filter_retriever):
        check_model(cfg.filter_retriever, what="--filter-retriever")
    generator = build_generator(cfg.generator_spec())
    corpus = without_judgements(load_collection(cfg.dataset, split=cfg.split), where="generate-queries")
    path = generate_queries(
        generator,
        corpus,
        cfg.out,
        passages=sample_passages(corpus, cfg.max_passages, cfg.seed),
        per_passage=cfg.per_passage,
        seed=cfg.seed,
        chunk_passages=cfg.chunk_passages,
        overwrite=cfg.overwrite,
        show_progress_bar=not args.quiet,
    )
    summary = json.loads((Path(cfg.out) / "generated.json").read_text())
    if cfg.filter_retriever:
        out = Path(cfg.out)
        summary["filter"] = filter_queries(
            read_queries(path),
            corpus,
            out / "kept.parquet",
            out / "filter.json",
            retriever=cfg.filter_retriever,
            k=cfg.filter_k,
            show_progress_bar=not args.quiet,
        )
    print(json.dumps(summary, indent=2))
    return 0


COMMANDS = {
    "generate-queries": cmd_generate_queries,
    "import-scores": cmd_import_scores,
    "index": cmd_index,
    "run": cmd_run,
    "train": cmd_train,
    "train-teacher": cmd_train_teacher,
    "evaluate": cmd_evaluate,
    "compare": cmd_compare,
    "candidates": cmd_candidates,
    "score": cmd_score,
    "static-student": cmd_static_student,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # flags left out must not override a YAML config: drop argparse's defaults for subcommands
    for action in parser._subparsers._group_actions if parser._subparsers else []:  # noqa: SLF001
        for subparser in action.choices.values():
            subparser.set_defaults(**{a.dest: None for a in subparser._actions if a.dest != "help"})
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    _setup_logging(args.verbose, args.quiet)
    from tqdm.contrib.logging import logging_redirect_tqdm

    from irdistill.memory import limit_heap_growth

    try:
        limit_heap_growth()  # IRDISTILL_MMAP_THRESHOLD=on trades time for memory: see irdistill.memory
        with logging_redirect_tqdm():  # log lines print above the progress bars, not through them
            return COMMANDS[args.command](args)
    except (InputError, MissingDependencyError) as err:
        if args.debug:
            raise
        print(f"irdistill {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("irdistill: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
