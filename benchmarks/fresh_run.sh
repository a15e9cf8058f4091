#!/usr/bin/env bash
# The README's first command as a newcomer runs it: a fresh clone of HEAD, a virtualenv of its
# own, `pip install torch==2.13.0 && pip install -e .` (no extras), an empty embedding cache,
# then `irdistill run RECIPE`. Records the wall time until the first output and the first
# progress bar, the time of each stage, the total wall time and the peak RSS, and the metrics,
# as one row of eval/results/fresh_run.{md,json} (keyed by recipe).
#
#   bash benchmarks/fresh_run.sh eval/recipes/scifact_quick.yaml    # ~10 min on 2 cores
#   bash benchmarks/fresh_run.sh eval/recipes/scifact_distill.yaml  # the main job, ~63 min (bf16 CPU)
#
# Offline machines: IRDISTILL_DATA and IRDISTILL_MODELS must be set (absolute paths).
# Set NO_RECORD=1 to leave eval/results alone (CI); KEEP_FRESH=1 keeps the clone, virtualenv and cache.
# Exits with irdistill's status.
# REUSE_TEACHER=DIR copies DIR/scores.train, and DIR/candidates.train.trec and DIR/fidelity-scores.test
# where they exist (an earlier run's out folder), into the fresh run's out folder first, so the run
# measures every stage after the teacher's (the row is keyed "RECIPE (teacher scores reused)"): the
# main job's time and memory after a change to training, without its teacher stage. DIR must hold the
# same teacher's stores: an earlier run of the same recipe (the committed eval/teacher_scores are the
# fp32 torch teacher's, not the main job's auto-bf16 one, and are refused as another job).
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
key="$recipe"
if [ -n "${REUSE_TEACHER:-}" ]; then
  out="$(python -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['out'])" "$recipe")"
  mkdir -p "$out"
  cp -r "$REUSE_TEACHER/scores.train" "$out/"
  if [ -f "$REUSE_TEACHER/candidates.train.trec" ]; then cp "$REUSE_TEACHER/candidates.train.trec" "$out/"; fi
  if [ -d "$REUSE_TEACHER/fidelity-scores.test" ]; then cp -r "$REUSE_TEACHER/fidelity-scores.test" "$out/"; fi
  key="$recipe (teacher scores reused)"
fi
set +e
/usr/bin/time -v -o "$work/time.txt" irdistill run "$recipe" 2>&1 >"$work/summary.json" \
  | python "$repo/benchmarks/stream_times.py" "$t1" "$work/run.log" "$work/times.json"
status=${PIPESTATUS[0]}
set -e
t2=$(date +%s.%N)
tail -n 5 "$work/run.log" >&2 || true
python "$repo/benchmarks/fresh_run_record.py" "$repo" "$key" "$work" "$t0" "$t1" "$t2" "$status"
# the clone, virtualenv and embedding cache take ~2.2 GB a run: gone unless KEEP_FRESH=1 (the logs stay)
if [ -z "${KEEP_FRESH:-}" ]; then rm -rf "$work/irdistill" "$work/venv" "$work/cache"; fi
exit "$status"
