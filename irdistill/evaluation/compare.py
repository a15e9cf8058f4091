"""Compare several runs on one collection: metrics, paired significance tests, a plot; or
several methods given as several runs (seeds) each, compared over queries and seeds.

Reused: ``ranx.compare`` (paired Student's t-test, Fisher's randomisation test or Tukey's
HSD, with per-metric p-values). A run is a TREC run file, or a folder written by
``irdistill evaluate`` (``run.trec`` plus ``perf.json``, whose latency feeds the plot).
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irdistill.data.collection import Collection, Run
from irdistill.data.trec import read_run
from irdistill.errors import InputError
from irdistill.evaluation.metrics import DEFAULT_METRICS, _ranx_inputs, parse_metrics
from irdistill.paths import atomic_path, write_text_atomic

logger = logging.getLogger(__name__)

STAT_TESTS = ("student", "fisher", "tukey")


@dataclass
class RunEntry:
    name: str
    run: Run
    latency_ms: float | None = None


def load_run_entry(path: str | os.PathLike[str], name: str | None = None) -> RunEntry:
    """Read a run file, or an ``irdistill evaluate`` output folder (run + latency)."""
    p = Path(path)
    latency = None
    if p.is_dir():
        if not (p / "run.trec").is_file():
            raise InputError(f"{p}: folder has no run.trec (expected an `irdistill evaluate --out` folder)")
        perf = p / "perf.json"
        if perf.is_file():
            try:
                latency = float(json.loads(perf.read_text())["latency_ms_per_query"])
            except (KeyError, ValueError, json.JSONDecodeError) as err:
                raise InputError(f"{perf}: expected a JSON object with latency_ms_per_query ({err})") from None
        run_path = p / "run.trec"
    else:
        run_path = p
    return RunEntry(name=name or (p.name if p.is_dir() else p.stem), run=read_run(run_path), latency_ms=latency)


@dataclass
class Comparison:
    metrics: list[str]
    stat_test: str
    max_p: float
    scores: dict[str, dict[str, float]]
    """run -> metric -> mean."""
    p_values: dict[str, dict[str, dict[str, float]]]
    """run -> other run -> metric -> p-value of the paired test."""
    latency_ms: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "stat_test": self.stat_test,
            "max_p": self.max_p,
            "scores": self.scores,
            "p_values": self.p_values,
            "latency_ms": self.latency_ms,
        }

    def to_markdown(self) -> str:
        """A table; superscript letters name the runs a score is significantly better than."""
        names = list(self.scores)
        letters = {n: chr(ord("a") + i) for i, n in enumerate(names)}
        header = "| | run | " + " | ".join(self.metrics) + " | latency ms/query |"
        lines = [header, "|---|---|" + "---|" * (len(self.metrics) + 1)]
        for name in names:
            cells = []
            for metric in self.metrics:
                better = [
                    letters[o]
                    for o in names
                    if o != name
                    and self.p_values[name][o][metric] < self.max_p
                    and self.scores[name][metric] > self.scores[o][metric]
                ]
                cells.append(f"{self.scores[name][metric]:.4f}" + (f" ({','.join(better)})" if better else ""))
            lat = self.latency_ms.get(name)
            lines.append(
                f"| {letters[name]} | {name} | " + " | ".join(cells) + f" | {'' if lat is None else f'{lat:.2f}'} |"
            )
        lines.append("")
        lines.append(
            f"Letters in parentheses: runs this one beats with p < {self.max_p} ({self.stat_test} paired test, ranx)."
        )
        return "\n".join(lines) + "\n"


def compare_runs(
    collection: Collection,
    entries: list[RunEntry],
    metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS,
    stat_test: str = "student",
    max_p: float = 0.05,
) -> Comparison:
    """Evaluate every run and test every pair of runs for each metric."""
    from ranx import compare

    if len(entries) < 2:
        raise InputError("compare needs at least two runs")
    if stat_test not in STAT_TESTS:
        raise InputError(f"unknown stat_test {stat_test!r}; known: {', '.join(STAT_TESTS)}")
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise InputError(f"run names must differ, got {names}; rename files or pass --names")
    judged = set(collection.qrels)
    for entry in entries:
        unknown = set(entry.run) - set(collection.queries)
        if unknown:
            raise InputError(
                f"run {entry.name}: query id {sorted(unknown)[0]!r} is not in {collection.name}/{collection.split}"
            )
        if not any(entry.run.get(q) for q in judged):
            raise InputError(
                f"run {entry.name} has no result for any judged query of {collection.name}/{collection.split}"
            )
    names_m = parse_metrics(metrics)
    ranx_qrels = None
    ranx_runs = []
    for entry in entries:
        ranx_qrels, ranx_run = _ranx_inputs(collection.qrels, entry.run, name=entry.name)
        ranx_runs.append(ranx_run)
    report = compare(ranx_qrels, ranx_runs, names_m, stat_test=stat_test, max_p=max_p, make_comparable=True)
    data = report.to_dict()
    scores = {n: {m: float(data[n]["scores"][m]) for m in names_m} for n in names}
    p_values = {
        n: {o: {m: float(data[n]["comparisons"][o][m]) for m in names_m} for o in names if o != n} for n in names
    }
    return Comparison(
        metrics=names_m,
        stat_test=stat_test,
        max_p=max_p,
        scores=scores,
        p_values=p_values,
        latency_ms={e.name: e.latency_ms for e in entries},
    )


def plot_comparison(comparison: Comparison, path: str | os.PathLike[str], metric: str | None = None) -> None:
    """Quality against latency (one point a run); a bar chart when no run has a latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = metric or comparison.metrics[0]
    names = list(comparison.scores)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    with_latency = [n for n in names if comparison.latency_ms.get(n) is not None]
    if with_latency:
        for n in with_latency:
            x, y = comparison.latency_ms[n], comparison.scores[n][metric]
            ax.scatter([x], [y], s=40)
            ax.annotate(n, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel("latency per query (ms, query encoding + search)")
        positive = [comparison.latency_ms[n] or 0 for n in with_latency]
        if min(positive) > 0 and max(positive) / min(positive) > 20:
            ax.set_xscale("log")
        missing = [n for n in names if n not in with_latency]
        if missing:
            logger.info("no latency for %s: left out of the plot", ", ".join(missing))
    else:
        ax.bar(names, [comparison.scores[n][metric] for n in names])
        ax.tick_params(axis="x", rotation=30)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs latency" if with_latency else metric)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _finite_or_none(value: Any) -> Any:
    """Strict JSON: NaN and infinities (a p-value of identical runs, a missing latency) become null."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_comparison(comparison: Comparison, out: str | os.PathLike[str]) -> None:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    clean = _finite_or_none(comparison.to_dict())
    write_text_atomic(folder / "compare.json", json.dumps(clean, indent=2) + "\n")
    write_text_atomic(folder / "compare.md", comparison.to_markdown())
    plot_comparison(comparison, folder / "compare.png")


@dataclass
class SeededComparison:
    """Methods with several runs (seeds) each, compared over queries and seeds."""

    metrics: list[str]
    seeds: dict[str, int]
    """method -> runs (seeds) given."""
    means: dict[str, dict[str, list[float]]]
    """method -> metric -> per-seed means."""
    pairs: dict[str, dict[str, dict[str, Any]]]
    """``"a vs b"`` -> metric -> :meth:`SeedComparison.brief` plus ``p_holm``."""
    margin: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "seeds": self.seeds, "means": self.means, "pairs": self.pairs}

    def to_markdown(self) -> str:
        lines = ["| method | seeds | " + " | ".join(f"{m} (mean ± sd)" for m in self.metrics) + " |"]
        lines.append("|---|---|" + "---|" * len(self.metrics))
        for name, per_metric in self.means.items():
            cells = []
            for metric in self.metrics:
                values = per_metric[metric]
                sd = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.fmean(values):.4f} ± {sd:.4f}")
            lines.append(f"| {name} | {self.seeds[name]} | " + " | ".join(cells) + " |")
        lines += ["", "| comparison | " + " | ".join(f"{m}: Δ [95 % CI] p (Holm)" for m in self.metrics) + " |"]
        lines.append("|---|" + "---|" * len(self.metrics))
        for pair, per_metric in self.pairs.items():
            cells = []
            for metric in self.metrics:
                r = per_metric[metric]
                level = " level" if r.get("equivalent") else ""
                low, high = r["ci95"]
                cells.append(f"{r['diff']:+.4f} [{low:+.4f}, {high:+.4f}] {r['p']:.3g} ({r['p_holm']:.3g}){level}")
            lines.append(f"| {pair} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Runs of one method are its seeds, paired with the other method's by position (the i-th run of each). "
            "Δ: mean difference over seeds and queries; 95 % CI and p over queries and seeds "
            "(irdistill.evaluation.seeds: two-level bootstrap and a t-interval over seeds, the wider); "
            "Holm over each metric's comparisons"
            + (f"; 'level': both 90 % intervals inside ±{self.margin}." if self.margin else "."),
        ]
        return "\n".join(lines) + "\n"


def compare_seeded(
    collection: Collection,
    groups: dict[str, list[RunEntry]],
    metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS,
    *,
    margin: float | None = None,
    resamples: int = 10_000,
) -> SeededComparison:
    """Every pair of methods, each given as several runs (its seeds, paired by position), compared
    per metric over queries and seeds (:func:`irdistill.evaluation.seeds.compare_over_seeds`), with
    Holm's correction over each metric's pairs."""
    from irdistill.evaluation.metrics import per_query_scores
    from irdistill.evaluation.seeds import compare_over_seeds, holm

    if len(groups) < 2:
        raise InputError("compare needs at least two methods")
    short = [name for name, runs in groups.items() if len(runs) < 2]
    if short:
        raise InputError(
            f"compare over seeds: method {short[0]!r} has one run; give each method at least two "
            "(repeat its name in --names once per seed)"
        )
    names_m = parse_metrics(metrics)
    per_query = {
        name: {m: {i: per_query_scores(collection.qrels, e.run, m) for i, e in enumerate(runs)} for m in names_m}
        for name, runs in groups.items()
    }
    methods = list(groups)
    pairs: dict[str, dict[str, dict[str, Any]]] = {}
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            pairs[f"{a} vs {b}"] = {
                m: compare_over_seeds(per_query[a][m], per_query[b][m], margin=margin, resamples=resamples).brief()
                for m in names_m
            }
    for m in names_m:
        for pair, adjusted in holm({p: v[m]["p"] for p, v in pairs.items()}).items():
            pairs[pair][m]["p_holm"] = float(f"{adjusted:.3g}")
    means = {
        name: {m: [statistics.fmean(v.values()) for v in per_query[name][m].values()] for m in names_m}
        for name in methods
    }
    return SeededComparison(
        metrics=names_m,
        seeds={name: len(runs) for name, runs in groups.items()},
        means=means,
        pairs=pairs,
        margin=margin,
    )


def write_seeded_comparison(comparison: SeededComparison, out: str | os.PathLike[str]) -> None:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "compare.json", json.dumps(_finite_or_none(comparison.to_dict()), indent=2) + "\n")
    write_text_atomic(folder / "compare.md", comparison.to_markdown())
