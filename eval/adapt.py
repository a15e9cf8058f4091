"""Distillation without labels: generated queries, the BM25 + mpnet teacher, a MiniLM student.

One command per collection writes ``eval/results/adapt_<name>.{md,json}`` (``--on dev``: measured on
SciFact's fixed dev split ``train:dev`` instead, ``adapt_<name>-dev.*``, where label-free settings
are chosen)::

    IRDISTILL_DATA=../shared/data HF_HUB_OFFLINE=1 python eval/adapt.py --dataset beir/scifact
    IRDISTILL_DATA=../shared/data HF_HUB_OFFLINE=1 python eval/adapt.py --dataset beir/cisi

Every row but ``untrained`` is one label-free ``irdistill run`` recipe (a fresh process each), built
from ``eval/recipes/adapt/base.yaml``: queries generated for the same ``--max-passages`` passages
(sampled with ``--seed``) by one generator, optionally round-trip filtered (``+bm25``: kept when BM25
ranks the source passage in its top ``--filter-k``), BM25 top-100 candidates, the BM25 +
all-mpnet-base-v2 z-score ensemble's scores (the source passage as pseudo-positive), the student
trained at one budget for every row, and the evaluation on the collection's judged test queries,
the only stage that reads judgements. A row whose run folder is complete is not run again, so the
table fills over several sittings. A generator's queries are kept in ``runs/adapt/<name>/queries/`` and
copied into every row that uses them (``--generate-only`` makes them alone, e.g. beside other work).
The budget tag (``p<passages>-k<filter k>-<loss>[-b<beta>]-e<epochs>-s<seed>``) names each run's
folder; ``--stores-from TAG`` starts a row from the queries, candidates and teacher scores of the
same row under another tag with the same passages, filter and seed, so that another training budget
(``--epochs``, ``--beta``: the hybrid's contrastive weight) costs only its training and evaluation.

Rows: ``untrained`` (all-MiniLM-L6-v2 as is), ``title``, ``sentence`` (inverse cloze), ``span``,
``smollm2`` (SmolLM2-135M-Instruct with the few-shot examples of
``eval/recipes/adapt/<name>_examples.yaml``, written for irdistill and taken from no collection),
``gemma`` (gemma-3-270m, a base model: plain few-shot text), each also with ``+bm25``; and
``title+cloze``, ``sentence+cloze``, ``span+cloze``: the inverse cloze task, each query cut out of
its source passage before the teacher scores it and the student trains on it (``cloze: true``).
JSON keys per row: ``ndcg@10``, ``recall@100``, ``mrr@10``, ``queries`` (``generated``, ``kept``),
``labels_used`` (0: the run's stages before the evaluation hold sealed judgements),
``p_vs_untrained`` (paired t-test over the test queries' nDCG@10), ``queries_per_s`` and
``generation_peak_rss_gib`` (the generating process), ``examples`` (a few kept queries).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from irdistill.data import load_collection, read_run
from irdistill.evaluation import evaluate_retrieval, paired_t_test, per_query_scores
from irdistill.paths import update_json_table, write_text_atomic
from irdistill.precision import PRECISIONS, resolve_precision

HERE = Path(__file__).parent
RESULTS = HERE / "results"
RECIPES = HERE / "recipes" / "adapt"
METRICS = ["ndcg@10", "recall@100", "mrr@10"]
LLM = {"dtype": "bfloat16", "batch_size": 16, "max_passage_tokens": 192, "max_new_tokens": 32, "temperature": 0.7}
GENERATORS: dict[str, dict[str, Any]] = {
    "title": {"generator": "title"},
    "sentence": {"generator": "sentence"},
    "span": {"generator": "span"},
    "smollm2": {"generator": "llm", "model": "SmolLM2-135M-Instruct", **LLM},
    "gemma": {"generator": "llm", "model": "gemma-3-270m", "chat": False, **LLM},
}
EXTRACTIVE = ("title", "sentence", "span")
"""Generators whose queries are text of their passage: the ones ``+cloze`` (the inverse cloze task) cuts out."""
ROWS = [
    "untrained",
    *[f"{g}{f}" for g in GENERATORS for f in ("", "+bm25")],
    *[f"{g}+cloze" for g in EXTRACTIVE],
]


def row_parts(row: str) -> tuple[str, bool, bool]:
    """``(generator row, round-trip filtered, cloze)`` of a row name such as ``sentence+bm25+cloze``."""
    name, *flags = row.split("+")
    return name, "bm25" in flags, "cloze" in flags


def short_name(dataset: str) -> str:
    return dataset.rstrip("/").split("/")[-1]


def eval_split(args: argparse.Namespace) -> str:
    """The judged queries a row is measured on: ``test``, or with ``--on dev`` the fixed dev part of
    the train split (``train:dev``, :mod:`irdistill.data.holdout`), where label-free settings are
    chosen."""
    return "train:dev" if getattr(args, "on", "test") == "dev" else "test"


def row_recipe(row: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The label-free recipe of one row."""
    base = yaml.safe_load((RECIPES / "base.yaml").read_text())
    name, filtered, cloze = row_parts(row)
    generator = dict(GENERATORS[name])
    if generator["generator"] == "llm":
        generator["examples"] = yaml.safe_load((RECIPES / f"{short_name(args.dataset)}_examples.yaml").read_text())[
            "examples"
        ]
    recipe = {
        **base,
        "dataset": args.dataset,
        "out": str(out),
        "generate": {
            "generator": generator,
            "per_passage": 1,
            "max_passages": args.max_passages,
            "seed": args.seed,
            "chunk_passages": 32,
            **({"cloze": True} if cloze else {}),
        },
        "filter": {"retriever": "bm25", "k": args.filter_k} if filtered else None,
        "test_split": eval_split(args),
    }
    recipe["train"] = {**base["train"], "loss": args.loss, "epochs": args.epochs, "seed": args.seed}
    recipe["train"]["precision"] = args.precision
    if args.precision == "bf16":  # the fast paths of the main job: bf16 training, the teacher on auto-bf16
        recipe["teacher"] = fast_teacher(HERE.parent / base["teacher"])
    if args.beta is not None:
        recipe["train"]["beta"] = args.beta
    if args.loss == "tas-balanced":  # its in-batch teacher, as in eval/students_scifact.py
        recipe["train"]["inbatch_teacher"] = "sentence-transformers/all-mpnet-base-v2"
    return recipe


def fast_teacher(path: Path) -> dict[str, Any]:
    """The teacher recipe at ``path`` with every dense member encoding on ``auto-bf16``."""
    teacher = yaml.safe_load(path.read_text())
    for member in teacher.get("members", [teacher]):
        if member.get("teacher") == "dense":
            member["backend"] = "auto-bf16"
    return teacher


def shared_queries(row: str, args: argparse.Namespace) -> Path:
    """Where a generator's queries are kept for every row and budget that uses them (they depend
    on the generator, the passages and the seed only)."""
    generator = row.partition("+")[0]
    return Path(args.runs) / short_name(args.dataset) / "queries" / f"{generator}-p{args.max_passages}-s{args.seed}"


def generate_only(row: str, args: argparse.Namespace) -> None:
    """The row's generation stage alone, into its shared folder (to run beside other work)."""
    from irdistill.data import load_collection
    from irdistill.data.collection import without_judgements
    from irdistill.generation import build_generator, generate_queries, sample_passages

    recipe = row_recipe(row, args, Path("unused"))["generate"]
    corpus = without_judgements(load_collection(args.dataset, split="test"), where="adapt.py --generate-only")
    generate_queries(
        build_generator(recipe["generator"]),
        corpus,
        shared_queries(row, args),
        passages=sample_passages(corpus, recipe["max_passages"], recipe["seed"]),
        per_passage=recipe["per_passage"],
        seed=recipe["seed"],
        chunk_passages=recipe["chunk_passages"],
    )


STORES = (
    "queries.generated",
    "queries.filter.json",
    "queries.kept.parquet",
    "candidates.generated.trec",
    "scores.generated",
)
"""A row's stages before training, in its run folder: what ``--stores-from`` copies."""


KL_LOSSES = ("listwise-kl", "hybrid-kl")
"""Losses whose KL changed (issue 37): their rows are tagged ``<loss>-v2`` now; the tags without it
hold the cells trained with the first KL (in-batch passages at the floor, a τ² factor)."""


def budget_tag(args: argparse.Namespace) -> str:
    """``p<passages>-k<filter k>-<loss>[-v2][-b<beta>]-e<epochs>[-bf16]-s<sample seed>`` (``-bf16``: bf16
    training and the teacher on ``auto-bf16``; the fp32 rows keep the tags they had before; ``-v2``:
    the listwise KL as it is now, :data:`KL_LOSSES`)."""
    beta = "" if args.beta is None else f"-b{args.beta:g}"
    fast = "-bf16" if args.precision == "bf16" else ""
    loss = f"{args.loss}-v2" if args.loss in KL_LOSSES else args.loss
    return f"p{args.max_passages}-k{args.filter_k}-{loss}{beta}-e{args.epochs}{fast}-s{args.seed}"


def copy_stores(row: str, args: argparse.Namespace, runs: Path) -> None:
    """Start ``row``'s run folder from the stores of the same row under ``--stores-from``, a tag
    with the same passages, filter and seed (they differ only after the teacher's scores)."""
    source = runs.parent / args.stores_from / row
    same = (f"p{args.max_passages}-k{args.filter_k}-", f"-s{args.seed}")
    if not (args.stores_from.startswith(same[0]) and args.stores_from.endswith(same[1])):
        raise SystemExit(f"--stores-from {args.stores_from}: not the passages, filter and seed of {budget_tag(args)}")
    if not (source / "scores.generated").is_dir():
        raise SystemExit(f"--stores-from: {source} holds no teacher scores")
    out = runs / row
    out.mkdir(parents=True, exist_ok=True)
    for name in STORES:
        if (source / name).is_dir():
            shutil.copytree(source / name, out / name, dirs_exist_ok=True)
        elif (source / name).is_file():
            shutil.copy2(source / name, out / name)


def run_row(row: str, args: argparse.Namespace, runs: Path) -> dict[str, Any]:
    """Run (or finish) one row's recipe in a fresh process; its metrics and label-free counts."""
    out = runs / row
    metrics = out / "eval" / "metrics.json"
    shared = shared_queries(row, args)
    if not metrics.is_file():
        if args.stores_from and not out.exists():
            copy_stores(row, args, runs)
        out.mkdir(parents=True, exist_ok=True)
        if (shared / "queries.parquet").is_file() and not (out / "queries.generated").exists():
            shutil.copytree(shared, out / "queries.generated")
        recipe = out / "recipe.yaml"
        recipe.write_text(yaml.safe_dump(row_recipe(row, args, out), sort_keys=False))
        started = time.perf_counter()
        with (out / "run.log").open("a") as log:
            subprocess.run(
                [sys.executable, "-m", "irdistill.cli.main", "-q", "run", str(recipe)],
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        print(f"{row}: run in {time.perf_counter() - started:.0f} s", flush=True)
    if not (shared / "queries.parquet").is_file():
        shutil.copytree(out / "queries.generated", shared, dirs_exist_ok=True)
    from irdistill.workflows.pipeline import label_free_summary

    return {**json.loads(metrics.read_text()), **label_free_summary(out)}


def paired_p(a: dict[str, float], b: dict[str, float]) -> float | None:
    """:func:`irdistill.evaluation.paired_t_test` at 3 significant digits."""
    p = paired_t_test(a, b)
    return None if p is None else float(f"{p:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beir/scifact", help="a collection with a judged test split")
    parser.add_argument("--rows", nargs="+", default=ROWS, choices=ROWS)
    parser.add_argument("--max-passages", type=int, default=500, help="passages queries are generated for")
    parser.add_argument("--filter-k", type=int, default=3, help="depth of the round-trip filter (+bm25 rows)")
    parser.add_argument("--loss", default="hybrid", help="student loss (every row alike)")
    parser.add_argument(
        "--beta", type=float, help="hybrid: weight of the contrastive term (default: the recipe's; named in the tag)"
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto: bf16 training and the teacher on auto-bf16 where the CPU has native bf16 (rows tagged -bf16), "
        "else fp32; fp32 reproduces the rows measured before (irdistill.precision)",
    )
    parser.add_argument(
        "--on",
        default="test",
        choices=["test", "dev"],
        help="dev: measure on SciFact's fixed dev split (train:dev) instead of test, into adapt_<name>-dev* "
        "files; label-free settings are chosen there (the generated queries are shared with test rows)",
    )
    parser.add_argument("--runs", default="runs/adapt", help="folder of the rows' run folders")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument(
        "--stores-from",
        metavar="TAG",
        help="start each row from the queries, candidates and teacher scores of the same row under another "
        "tag with the same passages, filter and seed (e.g. to train the same data at another budget)",
    )
    parser.add_argument(
        "--generate-only", action="store_true", help="only generate the rows' queries (shared by their rows)"
    )
    args = parser.parse_args()
    args.precision = resolve_precision(args.precision).name
    if args.generate_only:
        for row in dict.fromkeys(r.partition("+")[0] for r in args.rows if r != "untrained"):
            generate_only(row, args)
        return

    name = short_name(args.dataset) + ("-dev" if args.on == "dev" else "")
    tag = budget_tag(args)
    runs = Path(args.runs) / name / tag
    test = load_collection(args.dataset, split=eval_split(args))
    cells_path = Path(args.results) / f"adapt_{name}_cells.json"
    cells = json.loads(cells_path.read_text()) if cells_path.is_file() else {}
    for row in args.rows:
        key = f"{row}|{tag}"
        if key in cells:
            continue
        measured = [v for k, v in cells.items() if k.startswith("untrained|")]
        if row == "untrained" and measured:  # the same model and test queries under every tag
            cells = update_json_table(cells_path, key, measured[0])
            continue
        if row == "untrained":
            result = evaluate_retrieval(
                "sentence-transformers/all-MiniLM-L6-v2",
                test,
                out=runs / "untrained",
                max_seq_length=256,
                metrics=METRICS,
                show_progress_bar=False,
            )
            cell = {**{m: result.metrics[m] for m in METRICS}, "labels_used": 0, "queries": None}
            run = result.run
        else:
            summary = run_row(row, args, runs)
            cell = {
                **{m: summary["metrics"][m] for m in METRICS},
                "labels_used": summary["labels_used"],
                "queries": summary["queries"],
                "queries_per_s": summary["generation"]["queries_per_s"],
                "generation_seconds": summary["generation"]["seconds"],
                "generation_peak_rss_gib": summary["generation"]["peak_rss_gib"],
                "filter": {k: summary["filter"][k] for k in ("retriever", "k")},
                "examples": summary["filter"].get("kept_examples")
                or _first_queries(runs / row / "queries.kept.parquet"),
                "dropped_examples": summary["filter"].get("dropped_examples", []),
            }
            run = read_run(runs / row / "eval" / "run.trec")
        cell["per_query_ndcg@10"] = per_query_scores(test.qrels, run, "ndcg@10")
        cells = update_json_table(cells_path, key, cell)
        print(f"{row}: nDCG@10 {cell['ndcg@10']:.4f}", flush=True)
    write_tables(Path(args.results), name, tag, cells, args)


def _first_queries(path: Path, n: int = 5) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(path).column("query").to_pylist()[:n]


def split_seed(tag: str) -> tuple[str, int]:
    """A budget tag and its sample seed apart: ``p500-k3-hybrid-e3-s2`` -> ``("p500-k3-hybrid-e3", 2)``."""
    budget, seed = tag.rsplit("-s", 1)
    return budget, int(seed)


def seedless(tag: str) -> str:
    """A budget tag without its sample seed: ``p500-k3-hybrid-e3-s2`` -> ``p500-k3-hybrid-e3``."""
    return split_seed(tag)[0]


def across_seeds(cells: dict[str, Any], row: str, tag: str, base: dict[str, Any] | None) -> dict[str, Any] | None:
    """``row`` at ``tag``'s budget over every sample seed measured: :func:`budget_spread`."""
    return budget_spread(cells, row, seedless(tag), base)


def budget_spread(cells: dict[str, Any], row: str, budget: str, base: dict[str, Any] | None) -> dict[str, Any] | None:
    """``row`` at a seedless ``budget`` over every sample seed measured (each seed samples other
    passages and trains from another seed): nDCG@10 mean ± sd, recall@100 mean, the seeds' own
    nDCG@10, and the difference from untrained over queries and sample seeds
    (:func:`irdistill.evaluation.seeds.compare_over_seeds`: ``vs_untrained`` with its 95 % CI;
    ``p_vs_untrained`` its p). ``None`` below two seeds."""
    import statistics

    found = {}
    for key, cell in cells.items():
        name, other = key.split("|")
        other_budget, seed = split_seed(other)
        if name == row and other_budget == budget:
            found[seed] = cell
    if len(found) < 2:
        return None
    seeds = sorted(found)
    ndcg = [found[s]["ndcg@10"] for s in seeds]
    out: dict[str, Any] = {
        "seeds": seeds,
        "ndcg@10": round(statistics.fmean(ndcg), 4),
        "ndcg@10_sd": round(statistics.stdev(ndcg), 4),
        "recall@100": round(statistics.fmean(found[s]["recall@100"] for s in seeds), 4),
        "ndcg@10_per_seed": [round(x, 4) for x in ndcg],
        "p_vs_untrained": None,
    }
    if base is not None:  # untrained does not train: the same run stands at every sample seed
        from irdistill.evaluation.seeds import compare_over_seeds

        mine = {s: found[s]["per_query_ndcg@10"] for s in seeds}
        versus = compare_over_seeds(mine, {s: base["per_query_ndcg@10"] for s in seeds}, resamples=10_000)
        out["vs_untrained"] = versus.brief()
        out["p_vs_untrained"] = out["vs_untrained"]["p"]
    return out


def other_spreads(
    cells: dict[str, Any], tag: str, base: dict[str, Any] | None
) -> list[tuple[str, str, dict[str, Any]]]:
    """``(budget, row, across_seeds)`` for every row measured at two or more sample seeds of a budget
    other than ``tag``'s, so the table shows their spread beside the current budget's."""
    found = sorted({(seedless(k.split("|")[1]), k.split("|")[0]) for k in cells})
    out = []
    for budget, row in found:
        if budget == seedless(tag) or row == "untrained":
            continue
        if spread := budget_spread(cells, row, budget, base):
            out.append((budget, row, spread))
    return out


def write_tables(folder: Path, name: str, tag: str, cells: dict[str, Any], args: argparse.Namespace) -> None:
    rows = {k.split("|")[0]: v for k, v in cells.items() if k.split("|")[1] == tag}
    base = rows.get("untrained")
    table: dict[str, Any] = {}
    beta = "" if args.beta is None else f" (contrastive weight β = {args.beta:g})"
    for row in ROWS:
        if row not in rows:
            continue
        cell = rows[row]
        out = {m: round(cell[m], 4) for m in METRICS}
        out.update(
            labels_used=cell["labels_used"],
            queries=cell["queries"],
            p_vs_untrained=None
            if base is None or row == "untrained"
            else paired_p(cell["per_query_ndcg@10"], base["per_query_ndcg@10"]),
        )
        for key in ("queries_per_s", "generation_seconds", "generation_peak_rss_gib", "filter", "examples"):
            if key in cell:
                out[key] = cell[key]
        if row != "untrained" and (seeds := across_seeds(cells, row, tag, base)):
            out["across_seeds"] = seeds
        table[row] = out
    write_text_atomic(folder / f"adapt_{name}.json", json.dumps(table, indent=2) + "\n")
    lines = [
        f"# Distillation without labels on {name}",
        "",
        f"Produced by `python eval/adapt.py --dataset {args.dataset}` (budget tag `{tag}`). Queries generated "
        f"for {args.max_passages} passages of the corpus (the same sample for every row, one query each), "
        f"`+bm25`: kept when BM25 ranks the source passage in its top {args.filter_k}; `+cloze`: the query "
        "cut out of its source passage for the teacher and the student (inverse cloze task); teacher: BM25 + "
        f"all-mpnet-base-v2 z-score ensemble on the BM25 top 100, source passage as pseudo-positive; "
        f"student: all-MiniLM-L6-v2, loss {args.loss}{beta}, {args.epochs} epochs, 128 training tokens, seed "
        f"{args.seed}; evaluation at 256 tokens on the judged {eval_split(args)} queries, the only stage that reads "
        "judgements. p: paired t-test of per-query nDCG@10 against untrained. One sample seed per row"
        + (" (rows measured at several, below)." if any("across_seeds" in r for r in table.values()) else "."),
        "",
        "| row | nDCG@10 | recall@100 | MRR@10 | queries generated / kept | labels used | p vs untrained | "
        "generation queries/s | generation peak GiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row, r in table.items():
        q = r["queries"]
        p = r["p_vs_untrained"]
        counts = "-" if q is None else f"{q['generated']} / {q['kept']}"
        lines.append(
            f"| {row} | {r['ndcg@10']:.4f} | {r['recall@100']:.4f} | {r['mrr@10']:.4f} | "
            f"{counts} | {r['labels_used']} | "
            f"{'-' if p is None else ('<0.0001' if p < 1e-4 else f'{p:.4f}')} | "
            f"{r.get('queries_per_s', '-')} | {r.get('generation_peak_rss_gib', '-')} |"
        )
    lines += ["", "Kept queries, first five per row:", ""]
    for row, r in table.items():
        if r.get("examples"):
            lines.append(f"- **{row}**: " + " · ".join(f"“{q}”" for q in r["examples"][:5]))
    spread = {row: r["across_seeds"] for row, r in table.items() if "across_seeds" in r}
    if spread:
        lines += [
            "",
            f"Across sample seeds at this budget (`{seedless(tag)}-s<seed>`, run with `--seed <seed>`: each "
            "seed samples other passages and trains from another seed): nDCG@10 mean ± sd, recall@100 mean, "
            "and the difference from untrained with its 95 % CI and p over queries and sample seeds "
            "(irdistill.evaluation.seeds):",
            "",
            "| row | seeds | nDCG@10 | recall@100 | per seed | vs untrained: Δ [95 % CI] p |",
            "|---|---|---|---|---|---|",
        ]
        for row, r in spread.items():
            v = r.get("vs_untrained")
            versus = "-" if not v else f"{v['diff']:+.4f} [{v['ci95'][0]:+.4f}, {v['ci95'][1]:+.4f}] {v['p']:.3g}"
            lines.append(
                f"| {row} | {', '.join(map(str, r['seeds']))} | {r['ndcg@10']:.4f} ± {r['ndcg@10_sd']:.4f} | "
                f"{r['recall@100']:.4f} | {', '.join(f'{x:.4f}' for x in r['ndcg@10_per_seed'])} | {versus} |"
            )
    missing = [r for r in ROWS if r not in table]
    if missing:
        lines += ["", f"Not measured yet at this budget: {', '.join(missing)}."]
    others = sorted((k.split("|")[1], k.split("|")[0]) for k in cells if k.split("|")[1] != tag)
    others = [(t, r) for t, r in others if r != "untrained"]
    if others:
        lines += [
            "",
            "Other budgets measured: the tag `p<passages>-k<filter k>-<loss>[-b<beta>]-e<epochs>-s<sample seed>` "
            "names them (`b`: the hybrid's contrastive weight, 1 when absent); tags with the same passages and "
            "seed share their queries, candidates and teacher scores. "
            "nDCG@10 / recall@100, p vs untrained:",
            "",
        ]
        for other, row in others:
            cell = cells[f"{row}|{other}"]
            p = paired_p(cell["per_query_ndcg@10"], base["per_query_ndcg@10"]) if base else None
            lines.append(f"- `{other}` {row}: {cell['ndcg@10']:.4f} / {cell['recall@100']:.4f}, p = {p}")
        for budget, row, s in other_spreads(cells, tag, base):
            lines.append(
                f"- `{budget}` {row} over seeds {', '.join(map(str, s['seeds']))}: nDCG@10 {s['ndcg@10']:.4f} ± "
                f"{s['ndcg@10_sd']:.4f}, recall@100 {s['recall@100']:.4f}, p = {s['p_vs_untrained']} (over queries "
                "and sample seeds)"
            )
    write_text_atomic(folder / f"adapt_{name}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
