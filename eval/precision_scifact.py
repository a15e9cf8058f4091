"""bf16 against fp32 training on SciFact test: the same students-table cells, paired by seed.

Reads the cells ``eval/students_scifact.py`` recorded (``--precision fp32`` cells keyed
``<method>|<budget>|seed<S>``, ``--precision bf16`` cells ``<method>|<budget>-bf16|seed<S>``) and,
per method measured both ways on the same seeds:

- nDCG@10 per seed in each precision, the fp32 seed mean ± sd and range;
- the difference bf16 - fp32 (mean over seeds and queries) with a 95 % CI from a two-level
  bootstrap (seeds resampled in pairs, then the 300 test queries; ``--resamples``), and its
  two-sided p (the share of resampled differences on the other side of 0, doubled);
- an equivalence test (TOST through the bootstrap): bf16 is called level with fp32 when the 90 % CI
  of the difference lies inside ±``--margin`` nDCG@10 (0.01 by default, chosen before looking:
  about one fp32 seed sd of hybrid-kl, 0.0078);
- whether the bf16 seed mean lies inside the fp32 seeds' range (the issue's "within the seed spread").

Holm's correction runs over the family of methods compared. Writes
``eval/results/precision_scifact.{md,json}`` and the ``fp32`` / ``bf16`` / ``ndcg@10_*`` keys of
``eval/results/bench_training.json`` (examples/s from ``eval/results/precision_steps.json``, the
fresh-process step benchmark, at each precision's fastest setting within the memory limit).

    python eval/precision_scifact.py [--methods hybrid-kl] [--budget e3-len128-eval256]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from irdistill.evaluation.seeds import holm
from irdistill.paths import write_text_atomic

HERE = Path(__file__).parent
RESULTS = HERE / "results"
MEMORY_LIMIT_GIB = 6.0
"""The issue's peak-RSS limit for the main job: the fastest step setting under it is each precision's."""


def bootstrap(fp32: list[dict[str, float]], bf16: list[dict[str, float]], resamples: int, seed: int) -> np.ndarray:
    """Resampled mean differences bf16 - fp32: seeds drawn with replacement (pairs kept), then
    queries drawn with replacement, the same queries for every seed of a resample."""
    queries = sorted(fp32[0])
    if any(sorted(cell) != queries for cell in [*fp32, *bf16]):
        raise SystemExit("the cells score different test queries: not comparable query by query")
    a = np.array([[cell[q] for q in queries] for cell in fp32])
    b = np.array([[cell[q] for q in queries] for cell in bf16])
    difference = b - a  # seeds x queries
    rng = np.random.default_rng(seed)
    seeds, n = difference.shape
    out = np.empty(resamples)
    for i in range(resamples):
        rows = difference[rng.integers(0, seeds, seeds)]
        out[i] = rows[:, rng.integers(0, n, n)].mean()
    return out


def compare(cells: dict[str, Any], method: str, budget: str, resamples: int, margin: float) -> dict[str, Any] | None:
    seeds = sorted(
        int(key.rsplit("seed", 1)[1])
        for key in cells
        if key.startswith(f"{method}|{budget}|seed")
        and f"{method}|{budget}-bf16|seed{key.rsplit('seed', 1)[1]}" in cells
    )
    if not seeds:
        return None
    fp32 = [cells[f"{method}|{budget}|seed{s}"] for s in seeds]
    bf16 = [cells[f"{method}|{budget}-bf16|seed{s}"] for s in seeds]
    fp32_all = [v["ndcg@10"] for k, v in cells.items() if k.startswith(f"{method}|{budget}|seed")]
    draws = bootstrap([c["per_query_ndcg@10"] for c in fp32], [c["per_query_ndcg@10"] for c in bf16], resamples, 0)
    per_seed = [b["ndcg@10"] - a["ndcg@10"] for a, b in zip(fp32, bf16, strict=True)]
    difference = statistics.fmean(per_seed)
    # with the +1 of a resampling test, so that no p is reported as exactly 0
    p = min(1.0, 2 * (1 + min(int(np.sum(draws <= 0)), int(np.sum(draws >= 0)))) / (1 + resamples))
    low90, high90 = (float(x) for x in np.quantile(draws, [0.05, 0.95]))
    bf16_mean = statistics.fmean(c["ndcg@10"] for c in bf16)
    # With 2-3 seeds the bootstrap's seed level is coarse (resampling S seeds keeps (S-1)/S of their
    # variance), so its intervals run narrow: a t-interval over the per-seed differences is reported
    # beside it, and "level" needs both inside the margin.
    t95 = t90 = None
    if len(per_seed) >= 2:
        from scipy.stats import t

        half = statistics.stdev(per_seed) / len(per_seed) ** 0.5
        q95, q90 = (float(t.ppf(level, len(per_seed) - 1)) for level in (0.975, 0.95))
        t95 = [difference - q95 * half, difference + q95 * half]
        t90 = [difference - q90 * half, difference + q90 * half]
    return {
        "method": method,
        "seeds": seeds,
        "ndcg@10_fp32": [round(c["ndcg@10"], 4) for c in fp32],
        "ndcg@10_bf16": [round(c["ndcg@10"], 4) for c in bf16],
        "fp32_mean": statistics.fmean(c["ndcg@10"] for c in fp32),  # over the paired seeds
        "fp32_sd": statistics.stdev(fp32_all) if len(fp32_all) > 1 else None,
        "fp32_range": [min(fp32_all), max(fp32_all)],
        "fp32_seeds_all": len(fp32_all),
        "bf16_mean": bf16_mean,
        "difference": difference,
        "ci95": [float(x) for x in np.quantile(draws, [0.025, 0.975])],
        "ci90": [low90, high90],
        "ci95_t_seeds": t95,
        "ci90_t_seeds": t90,
        "p": p,
        "resamples": resamples,
        "margin": margin,
        "equivalent": -margin < low90 and high90 < margin and t90 is not None and -margin < t90[0] and t90[1] < margin,
        "warning": "fewer than 3 paired seeds" if len(seeds) < 3 else None,
        "within_fp32_range": min(fp32_all) <= bf16_mean <= max(fp32_all),
        "kendall_tau_with_teacher": {
            "fp32": statistics.fmean(c["kendall_tau"] for c in fp32),
            "bf16": statistics.fmean(c["kendall_tau"] for c in bf16),
        },
        "train_seconds": {
            "fp32": [c.get("train_seconds") for c in fp32],
            "bf16": [c.get("train_seconds") for c in bf16],
        },
    }


def fastest_settings(path: Path) -> dict[str, dict[str, Any]]:
    """Per precision, the fastest setting of the step benchmark whose median peak stays under
    :data:`MEMORY_LIMIT_GIB`: its median seconds per step, and as training rows (32 lists a step) per second."""
    rows = json.loads(path.read_text())["rows"] if path.is_file() else []
    by_setting: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_setting.setdefault(row["setting"], []).append(row)
    best: dict[str, dict[str, Any]] = {}
    for setting, got in by_setting.items():
        seconds = statistics.median(r["s_per_step"] for r in got)
        peak = max(r["peak_rss_gib"] for r in got)  # a limit is judged on the worst run
        precision = setting.split()[0]
        if peak <= MEMORY_LIMIT_GIB and (precision not in best or seconds < best[precision]["s_per_step"]):
            best[precision] = {
                "setting": setting,
                "runs": len(got),
                "s_per_step": round(seconds, 2),
                # bench_precision.py's step: 32 hybrid-kl rows (a query and its list of 8 passages)
                "examples_per_s": round(32 / seconds, 3),
                "peak_rss_gib": round(peak, 2),
            }
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["hybrid-kl"])
    parser.add_argument("--budget", default="e3-len128-eval256", help="the fp32 cells' budget tag")
    parser.add_argument("--resamples", type=int, default=10000)
    parser.add_argument("--margin", type=float, default=0.01, help="equivalence margin in nDCG@10")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    results = Path(args.results)
    cells = json.loads((results / "students_scifact_cells.json").read_text())
    rows = [r for m in args.methods if (r := compare(cells, m, args.budget, args.resamples, args.margin))]
    if not rows:
        raise SystemExit(f"no method of {args.methods} has fp32 and bf16 cells at the same seeds of {args.budget}")
    adjusted = holm({r["method"]: r["p"] for r in rows})
    for r in rows:
        r["p_holm"] = adjusted[r["method"]]
    rates = fastest_settings(results / "precision_steps.json")
    write_text_atomic(
        results / "precision_scifact.json", json.dumps({"rows": rows, "step_rates": rates}, indent=2) + "\n"
    )
    lines = [
        "# bf16 against fp32 training: SciFact test, the same cells paired by seed",
        "",
        f"`python eval/precision_scifact.py --methods {' '.join(args.methods)}`, from the cells of "
        f"`python eval/students_scifact.py --precision fp32|bf16` at budget `{args.budget}` (the committed fp32 "
        "teacher stores, the same recipe, seeds and evaluation; only the training precision differs). "
        f"Difference: bf16 - fp32 nDCG@10; 95 % CI and p from a two-level bootstrap ({args.resamples} resamples: "
        "seeds in pairs, then queries), Holm-corrected over the methods; level: the 90 % CI inside "
        f"±{args.margin} (TOST).",
        "",
        "| method | seeds | fp32 nDCG@10 per seed | bf16 per seed | fp32 mean (paired seeds) | fp32 sd, range "
        "(all its seeds) | bf16 mean | difference | 95 % CI bootstrap | 95 % CI t over seeds | p (Holm) | "
        "level within ±margin | bf16 inside fp32 range | τ with teacher fp32 / bf16 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def interval(pair: list[float] | None) -> str:
        return f"[{pair[0]:+.4f}, {pair[1]:+.4f}]" if pair else "-"

    def p_text(value: float, resamples: int) -> str:
        return f"< {2 / (1 + resamples):.4f}" if value <= 2 / (1 + resamples) else f"{value:.4f}"

    for r in rows:
        sd = f"{r['fp32_sd']:.4f}, " if r["fp32_sd"] is not None else ""
        lines.append(
            f"| {r['method']} | {', '.join(map(str, r['seeds']))} | {', '.join(f'{x:.4f}' for x in r['ndcg@10_fp32'])} "
            f"| {', '.join(f'{x:.4f}' for x in r['ndcg@10_bf16'])} | {r['fp32_mean']:.4f} | {sd}"
            f"[{r['fp32_range'][0]:.4f}, {r['fp32_range'][1]:.4f}] ({r['fp32_seeds_all']} seeds) | "
            f"{r['bf16_mean']:.4f} | {r['difference']:+.4f} | {interval(r['ci95'])} | {interval(r['ci95_t_seeds'])} | "
            f"{p_text(r['p'], r['resamples'])} ({p_text(r['p_holm'], r['resamples'])}) | "
            f"{'yes' if r['equivalent'] else 'no'} (90 %: bootstrap {interval(r['ci90'])}, "
            f"t {interval(r['ci90_t_seeds'])}) | "
            f"{'yes' if r['within_fp32_range'] else 'no'} | {r['kendall_tau_with_teacher']['fp32']:.4f} / "
            f"{r['kendall_tau_with_teacher']['bf16']:.4f} |"
        )
    for r in rows:
        if r["warning"]:
            lines += ["", f"{r['method']}: {r['warning']}: the seed level of every interval is coarse."]
    if rates:
        lines += [
            "",
            f"Training speed (`eval/results/precision_steps.md`, fresh processes side by side): the fastest setting "
            f"of each precision under {MEMORY_LIMIT_GIB:g} GiB peak RSS, "
            + "; ".join(
                f"{p}: `{v['setting']}` {v['s_per_step']} s a step, {v['examples_per_s']} rows/s, "
                f"{v['peak_rss_gib']} GiB"
                for p, v in sorted(rates.items())
            )
            + ".",
        ]
    write_text_atomic(results / "precision_scifact.md", "\n".join(lines) + "\n")
    bench = results / "bench_training.json"
    data = json.loads(bench.read_text()) if bench.is_file() else {}
    main_row = rows[0]
    for precision in ("fp32", "bf16"):
        if precision in rates:
            data[precision] = {
                "examples_per_s": rates[precision]["examples_per_s"],
                "setting": rates[precision]["setting"],
            }
        data[f"ndcg@10_{precision}"] = round(main_row[f"{precision}_mean"], 4)
    data["precision_source"] = (
        f"{main_row['method']} cells at seeds {main_row['seeds']} (eval/results/precision_scifact.md); examples/s: "
        "eval/results/precision_steps.json"
    )
    write_text_atomic(bench, json.dumps(data, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
