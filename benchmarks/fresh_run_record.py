"""The row of one ``benchmarks/fresh_run.sh`` run, added to eval/results/fresh_run.{json,md}.

    python benchmarks/fresh_run_record.py REPO RECIPE WORK T0 T1 T2 STATUS

``WORK`` is the run's folder (``time.txt`` from ``/usr/bin/time -v``, ``times.json`` from
``stream_times.py``, ``summary.json`` printed by ``irdistill run``); ``T0``, ``T1``, ``T2`` are the
Unix times before the install, before ``irdistill run`` and after it. ``RECIPE`` is the row's key:
the recipe's path, with `` (teacher scores reused)`` after it for a ``REUSE_TEACHER`` run. The row
names the commit the fresh clone was at and the recipe's student loss, so that a row measured before
the recipe changed says so. With ``NO_RECORD`` set the row is printed only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml


def clone_facts(work: Path, key: str) -> dict:
    """The commit of the fresh clone in ``work``, the student loss of the key's recipe there, the
    teacher's encoder backend as the score store's manifest records it (the dense members' resolved
    backends; ``torch`` when none is named) and the training precision the student records."""
    clone = work / "irdistill"
    commit = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    recipe = yaml.safe_load((clone / key.split(" (")[0]).read_text())
    out = clone / recipe["out"]
    backends = []
    for manifest in sorted(out.glob("scores.*/manifest.json")):
        config = json.loads(manifest.read_text())["teacher"]["config"]
        for member in config.get("members", [config]):
            if member.get("teacher") in ("dense", "cross-encoder", "sparse"):
                backends.append(member.get("backend", "torch"))
    record = out / "student" / "irdistill_training.json"
    precision = json.loads(record.read_text()).get("precision", "fp32") if record.is_file() else None
    return {
        "commit": commit,
        "loss": (recipe.get("train") or {}).get("loss"),
        "backend": ", ".join(dict.fromkeys(backends)) or None,
        "train_precision": precision,
    }


def cpu_model() -> str | None:
    """This machine's CPU model and its native bf16 instructions (rows measured on different
    machines are not a timing comparison)."""
    from irdistill.precision import cpu_bf16_instructions

    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return None
    names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines() if line.startswith("model name")]
    name = names[0] if names else "?"
    return f"{name} ({cpu_bf16_instructions() or 'no native bf16'})"


def row_of(work: Path, t0: float, t1: float, t2: float, status: int) -> dict:
    text = (work / "time.txt").read_text()
    rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    times = json.loads((work / "times.json").read_text()) if (work / "times.json").is_file() else {}
    # stdout: the trainer's log lines, then the summary that `irdistill run` prints last
    text = (work / "summary.json").read_text() if (work / "summary.json").is_file() else ""
    start = text.rfind("\n{\n") + 1 if not text.startswith("{\n") else 0
    try:
        summary = json.loads(text[start:])
    except ValueError:
        summary = {}
    return {
        "exit_status": status,
        "install_s": round(t1 - t0, 1),
        "first_output_s": times.get("first_output_s"),
        "first_progress_bar_s": times.get("first_progress_bar_s"),
        "wall_s": round(t2 - t1, 1),
        "peak_rss_gib": round(rss_kib / 2**20, 2),
        "stages": times.get("stages", {}),
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "metrics": summary.get("metrics", {}),
        "fidelity": summary.get("fidelity"),
    }


def write_markdown(table: dict, path: Path) -> None:
    def fmt(value: object) -> str:
        return f"{value:.4f}" if isinstance(value, float) else "-"

    lines = [
        "# The README's first command on a fresh clone",
        "",
        "`bash benchmarks/fresh_run.sh RECIPE`: fresh clone, own virtualenv, `pip install torch==2.13.0 && "
        "pip install -e .`, empty embedding cache, then `irdistill run RECIPE`. Times in seconds from the "
        "start of `irdistill run`; peak RSS of the `irdistill run` process.",
        "",
        "| recipe | commit | loss | teacher backend | train precision | cores | CPU | exit | install s "
        "| first output s | first progress bar s | wall s | peak RSS GiB | nDCG@10 | recall@100 "
        "| Kendall τ with teacher |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in table.items():
        m, f = r.get("metrics") or {}, r.get("fidelity") or {}
        lines.append(
            f"| {name} | {r.get('commit', '-')} | {r.get('loss', '-')} | {r.get('backend') or '-'} | "
            f"{r.get('train_precision') or '-'} | {r['cores']} | {r.get('cpu') or '-'} | {r['exit_status']} | "
            f"{r['install_s']} | {r['first_output_s']} | "
            f"{r['first_progress_bar_s']} | {r['wall_s']} | {r['peak_rss_gib']} | {fmt(m.get('ndcg@10'))} | "
            f"{fmt(m.get('recall@100'))} | {fmt(f.get('kendall_tau'))} |"
        )
    lines += ["", "Stages (wall time each):", ""]
    for name, r in table.items():
        stages = ", ".join(
            f"{s} {v.get('took', 'skipped' if 'skipped' in v else '?')}"
            + (f" (peak RSS so far {v['peak_rss_gib']} GiB)" if "peak_rss_gib" in v else "")
            for s, v in r["stages"].items()
        )
        lines.append(f"- {name}: {stages}")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    repo, recipe, work, t0, t1, t2, status = sys.argv[1:]
    sys.path.insert(0, repo)
    row = {**clone_facts(Path(work), recipe), **row_of(Path(work), float(t0), float(t1), float(t2), int(status))}
    print(json.dumps(row, indent=1))
    if os.environ.get("NO_RECORD"):
        return
    from irdistill.paths import update_json_table

    table = update_json_table(Path(repo) / "eval/results/fresh_run.json", recipe, row)
    write_markdown(table, Path(repo) / "eval/results/fresh_run.md")


if __name__ == "__main__":
    main()
