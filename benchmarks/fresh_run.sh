#!/usr/bin/env bash
# The README's first command as a newcomer runs it: a fresh clone of HEAD, a virtualenv of its
# own, `pip install torch==2.13.0 && pip install -e .` (no extras), an empty embedding cache,
# then `irdistill run RECIPE`. Records the wall time until the first output and the first
# progress bar, the time of each stage, the total wall time and the peak RSS, and the metrics,
# as one row of eval/results/fresh_run.{md,json} (keyed by recipe).
#
#   bash benchmarks/fresh_run.sh eval/recipes/scifact_quick.yaml    # ~10 min on 2 cores
#   bash benchmarks/fresh_run.sh eval/recipes/scifact_distill.yaml  # the main job, ~1 h
#
# Offline machines: IRDISTILL_DATA and IRDISTILL_MODELS must be set (absolute paths).
# Set NO_RECORD=1 to leave eval/results alone (CI). Exits with irdistill's status.
set -euo pipefail
recipe="${1:?usage: fresh_run.sh RECIPE}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${FRESH_RUN_DIR:-$(mktemp -d /tmp/irdistill-fresh.XXXXXX)}"
py="${PYTHON:-python3}"
echo "fresh run of $recipe in $work" >&2
rm -rf "$work/irdistill" "$work/venv" "$work/cache"
git clone -q "$repo" "$work/irdistill"
"$py" -m venv "$work/venv"
# shellcheck disable=SC1091
source "$work/venv/bin/activate"
cd "$work/irdistill"
export IRDISTILL_CACHE="$work/cache" PIP_DISABLE_PIP_VERSION_CHECK=1
t0=$(date +%s.%N)
pip install -q torch==2.13.0 && pip install -q -e .
t1=$(date +%s.%N)
set +e
/usr/bin/time -v -o "$work/time.txt" irdistill run "$recipe" 2>&1 >"$work/summary.json" \
  | python "$repo/benchmarks/stream_times.py" "$t1" "$work/run.log" "$work/times.json"
status=${PIPESTATUS[0]}
set -e
t2=$(date +%s.%N)
tail -n 5 "$work/run.log" >&2 || true
python - "$repo" "$recipe" "$work" "$t0" "$t1" "$t2" "$status" <<'PY'
import json, os, re, sys
from pathlib import Path
repo, recipe, work, t0, t1, t2, status = sys.argv[1:]
work = Path(work)
text = (work / "time.txt").read_text()
rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
times = json.loads((work / "times.json").read_text()) if (work / "times.json").is_file() else {}
try:
    summary = json.loads((work / "summary.json").read_text())
except ValueError:
    summary = {}
row = {
    "exit_status": int(status), "install_s": round(float(t1) - float(t0), 1),
    "first_output_s": times.get("first_output_s"), "first_progress_bar_s": times.get("first_progress_bar_s"),
    "wall_s": round(float(t2) - float(t1), 1), "peak_rss_gib": round(rss_kib / 2**20, 2),
    "stages": times.get("stages", {}), "cores": os.cpu_count(),
    "metrics": {k: v for k, v in summary.items() if isinstance(v, (int, float))},
    "fidelity": summary.get("fidelity"),
}
print(json.dumps(row, indent=1))
if os.environ.get("NO_RECORD"):
    sys.exit(0)
sys.path.insert(0, repo)
from irdistill.paths import update_json_table
table = update_json_table(Path(repo) / "eval/results/fresh_run.json", recipe, row)
lines = ["# The README's first command on a fresh clone", "",
         "`bash benchmarks/fresh_run.sh RECIPE`: fresh clone, own virtualenv, `pip install torch==2.13.0 && "
         "pip install -e .`, empty embedding cache, then `irdistill run RECIPE` "
         f"({row['cores']} cores). Times in seconds from the start of `irdistill run`.", "",
         "| recipe | exit | install s | first output s | first progress bar s | wall s | peak RSS GiB | nDCG@10 | recall@100 |",
         "|---|---|---|---|---|---|---|---|---|"]
for name, r in table.items():
    m = r.get("metrics", {})
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else "-"
    lines.append(f"| {name} | {r['exit_status']} | {r['install_s']} | {r['first_output_s']} | "
                 f"{r['first_progress_bar_s']} | {r['wall_s']} | {r['peak_rss_gib']} | "
                 f"{fmt(m.get('ndcg@10'))} | {fmt(m.get('recall@100'))} |")
lines += ["", "Stages (wall time each):", ""]
for name, r in table.items():
    stages = ", ".join(f"{s} {v.get('took', 'skipped' if 'skipped' in v else '?')}" for s, v in r["stages"].items())
    lines.append(f"- {name}: {stages}")
(Path(repo) / "eval/results/fresh_run.md").write_text("\n".join(lines) + "\n")
PY
exit "$status"
