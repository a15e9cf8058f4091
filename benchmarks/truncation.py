"""How much of each passage a student sees at a training length, and whether the teacher's margins
depend on the part it does not see.

The SciFact teacher (BM25 on the whole abstract, all-mpnet-base-v2 at 384 tokens) scores whole
abstracts, while ``eval/students_scifact.py`` trains the student at 128 tokens: a pair whose
margin comes from text past the cut asks the student to fit what it cannot read. Two measurements:

1. Token lengths of the corpus (title and text, as the student encodes it, with the student's
   tokenizer, special tokens included): median, p90, the share of passages longer than each
   length, and the share of all tokens kept at each length.
2. On random candidate pairs of sampled training queries (the pairs the ``random`` sampler
   draws), the untrained student's cosine margin at each length against the teacher's margin:
   Pearson and Spearman correlation and the share of pairs ordered alike. If the student's margins
   agree with the teacher's more when it reads more, the teacher's margins depend on text a
   128-token student never sees.

    python benchmarks/truncation.py [--dataset beir/scifact] [--lengths 128 256 512] [--queries 150]

Writes ``eval/results/truncation_<dataset>.{json,md}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "eval" / "results"
DEFAULT_SCORES = ROOT / "eval" / "teacher_scores" / "scifact" / "train"


def token_lengths(tokenizer: Any, texts: Iterable[str], batch: int = 512) -> np.ndarray:
    """Tokens of each text, special tokens included, without a cut; ``texts`` is read a batch at a
    time, so a corpus streams through."""
    out: list[int] = []
    it = iter(texts)
    while chunk := list(itertools.islice(it, batch)):
        encoded = tokenizer(chunk, add_special_tokens=True, truncation=False)["input_ids"]
        out.extend(len(ids) for ids in encoded)
    return np.asarray(out, dtype=np.int32)


def length_profile(lengths: np.ndarray, cuts: list[int]) -> dict[str, Any]:
    """Median and p90 length, and per cut the share of passages longer and of all tokens kept."""
    total = float(lengths.sum())
    return {
        "passages": int(lengths.size),
        "median_tokens": float(np.median(lengths)),
        "p90_tokens": float(np.percentile(lengths, 90)),
        "longer_than": {str(c): round(float((lengths > c).mean()), 4) for c in cuts},
        "tokens_kept": {str(c): round(float(np.minimum(lengths, c).sum()) / total, 4) for c in cuts},
    }


def sample_pairs(
    run: dict[str, dict[str, float]], queries: list[str], per_query: int, rng: random.Random
) -> list[tuple[str, str, str, float]]:
    """``per_query`` random (query, a, b, t(q,a) - t(q,b)) pairs from each query's candidates,
    ``a`` and ``b`` distinct and their teacher scores unequal."""
    pairs = []
    for qid in queries:
        scored = list(run[qid].items())
        if len(scored) < 2:
            continue
        for _ in range(per_query):
            (a, ta), (b, tb) = rng.sample(scored, 2)
            if ta != tb:
                pairs.append((qid, a, b, ta - tb))
    return pairs


def agreement(student: np.ndarray, teacher: np.ndarray) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr

    return {
        "pearson": round(float(pearsonr(student, teacher)[0]), 4),
        "spearman": round(float(spearmanr(student, teacher)[0]), 4),
        "same_order": round(float((np.sign(student) == np.sign(teacher)).mean()), 4),
    }


def bootstrap_gain(
    margins: dict[int, np.ndarray], teacher: np.ndarray, groups: np.ndarray, rounds: int, seed: int
) -> dict[str, list[float] | None]:
    """95 % interval of each length's Spearman minus the shortest length's, resampling queries
    (a query's pairs share its passages, so they are not independent)."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    cuts = sorted(margins)
    gains: dict[int, list[float]] = {c: [] for c in cuts[1:]}
    for _ in range(rounds):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        base = spearmanr(margins[cuts[0]][rows], teacher[rows])[0]
        for c in cuts[1:]:
            gains[c].append(spearmanr(margins[c][rows], teacher[rows])[0] - base)
    out: dict[str, list[float] | None] = {}
    for c, values in gains.items():
        finite = np.asarray(values)[np.isfinite(values)]  # a resample with constant margins has none
        out[str(c)] = [round(float(np.percentile(finite, q)), 4) for q in (2.5, 97.5)] if finite.size else None
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="beir/scifact")
    parser.add_argument("--split", default="train", help="the split whose queries the pairs come from")
    parser.add_argument("--scores", default=str(DEFAULT_SCORES), help="the teacher's store for that split")
    parser.add_argument("--student", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--queries", type=int, default=150, help="training queries the pairs are drawn for")
    parser.add_argument("--pairs-per-query", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples of the queries for the intervals")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)
    if any(n < 8 for n in args.lengths) or args.queries < 2 or args.pairs_per_query < 1:
        parser.error("--lengths must be >= 8, --queries >= 2 and --pairs-per-query >= 1")

    import pyarrow as pa
    import pyarrow.compute as pc
    from sentence_transformers import SentenceTransformer

    from irdistill.data import load_collection
    from irdistill.paths import resolve_model, write_text_atomic
    from irdistill.scores.table import scores_by_query, scores_table, select_teacher

    collection = load_collection(args.dataset, split=args.split)
    model = SentenceTransformer(resolve_model(args.student), device="cpu")
    cuts = sorted(set(args.lengths))
    # only the sampled queries' rows leave Arrow: a store of MS MARCO's size stays a table
    table, _ = select_teacher(scores_table(args.scores), None)
    rng = random.Random(args.seed)
    queries = sorted(set(pc.unique(table.column("qid")).to_pylist()) & set(collection.queries))
    chosen = rng.sample(queries, min(args.queries, len(queries)))
    pairs = []
    if chosen:
        run = scores_by_query(table.filter(pc.is_in(table.column("qid"), value_set=pa.array(chosen, pa.string()))))
        pairs = sample_pairs(run, chosen, args.pairs_per_query, rng)
    if not pairs:
        raise SystemExit(
            f"truncation: no candidate pair to compare: {args.scores} holds no query of {args.dataset} "
            f"{args.split} with two differently scored candidates"
        )
    profile = length_profile(token_lengths(model.tokenizer, (d.full_text() for d in collection.corpus.values())), cuts)
    pids = sorted({p for _, a, b, _ in pairs for p in (a, b)})
    qids = sorted({q for q, *_ in pairs})
    teacher = np.asarray([m for *_, m in pairs])
    rows: dict[str, Any] = {}
    margins: dict[int, np.ndarray] = {}
    for cut in cuts:
        start = time.perf_counter()
        model.max_seq_length = cut
        qv = model.encode_query([collection.queries[x] for x in qids], normalize_embeddings=True)
        dv = model.encode_document([collection.corpus[x].full_text() for x in pids], normalize_embeddings=True)
        q, d = dict(zip(qids, qv, strict=True)), dict(zip(pids, dv, strict=True))
        student = margins[cut] = np.asarray([float(q[x] @ d[a] - q[x] @ d[b]) for x, a, b, _ in pairs])
        rows[str(cut)] = {**agreement(student, teacher), "seconds": round(time.perf_counter() - start, 1)}
        print(f"{cut} tokens: {rows[str(cut)]}", flush=True)

    position = {x: i for i, x in enumerate(qids)}
    groups = np.asarray([position[x] for x, *_ in pairs])
    intervals = bootstrap_gain(margins, teacher, groups, args.bootstrap, args.seed) if len(cuts) > 1 else {}
    for cut, interval in intervals.items():
        rows[cut]["spearman_gain_ci95"] = interval
    name = args.dataset.rstrip("/").split("/")[-1]
    out = {
        "dataset": args.dataset,
        "student": args.student,
        "teacher_scores": str(Path(args.scores).resolve().relative_to(ROOT))
        if Path(args.scores).resolve().is_relative_to(ROOT)
        else args.scores,
        "corpus": profile,
        "pairs": {"queries": len(qids), "pairs": len(pairs), "passages": len(pids), "seed": args.seed},
        "untrained_student_vs_teacher_margins": rows,
    }
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    write_text_atomic(results / f"truncation_{name}.json", json.dumps(out, indent=2) + "\n")
    lines = [
        f"# What a student sees of {name} at each training length",
        "",
        f"Produced by `python benchmarks/truncation.py --dataset {args.dataset}`. Tokenizer and student: "
        f"{args.student}; passages are title and text as the student encodes them, special tokens included.",
        "",
        f"Corpus: {profile['passages']} passages, median {profile['median_tokens']:.0f} tokens, "
        f"p90 {profile['p90_tokens']:.0f}.",
        "",
        "| length | passages longer | share of all tokens kept |",
        "|---|---|---|",
    ]
    for cut in cuts:
        longer, kept = profile["longer_than"][str(cut)], profile["tokens_kept"][str(cut)]
        lines.append(f"| {cut} | {100 * longer:.1f} % | {100 * kept:.1f} % |")
    lines += [
        "",
        f"The untrained student's cosine margin against the teacher's margin (`{out['teacher_scores']}`) on "
        f"{len(pairs)} random candidate pairs of {len(qids)} {args.split} queries (seed {args.seed}), the "
        "student reading each passage up to the length:",
        "",
        f"| length | Pearson | Spearman | Spearman gain over {cuts[0]} (95 % interval, queries resampled "
        f"{args.bootstrap}x) | pairs ordered alike | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for cut in cuts:
        r = rows[str(cut)]
        gain = r["spearman"] - rows[str(cuts[0])]["spearman"]
        ci = r.get("spearman_gain_ci95")
        interval = "-" if ci is None else f"{gain:+.4f} ({ci[0]:+.4f} to {ci[1]:+.4f})"
        lines.append(
            f"| {cut} | {r['pearson']:.4f} | {r['spearman']:.4f} | {interval} | {100 * r['same_order']:.1f} % | "
            f"{r['seconds']} |"
        )
    write_text_atomic(results / f"truncation_{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
