#!/usr/bin/env bash
# GPU check, ready to run on a GPU machine in under 8 minutes:
#   bash benchmarks/gpu_check.sh                 # installs the GPU extras, runs every step on the GPU
#   bash benchmarks/gpu_check.sh --cpu           # smoke mode: a small slice on the CPU (no installs)
#   GPU_CHECK_NO_INSTALL=1 bash benchmarks/gpu_check.sh   # the GPU run without installing anything
# Writes eval/results/gpu_check.{md,json}; the logic is in benchmarks/gpu_check.py (its --help lists
# the options). A step whose requirement is missing (no GPU, no vLLM) is reported as "skipped: reason".
set -uo pipefail
cd "$(dirname "$0")/.."
# tokenizers keep their threads: on the GPU machine, tokenising on one core took longer than the
# forward passes (eval/results/gpu_profile.md)
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"

install() {  # what is missing only; a failed install leaves its step to report "skipped"
    python - <<'PY' || { pip uninstall -y faiss-cpu && timeout 120 pip install -q "faiss-gpu-cu12>=1.8"; } \
        || echo "gpu_check: faiss-gpu did not install" >&2
import faiss, sys
sys.exit(0 if getattr(faiss, "get_num_gpus", lambda: 0)() > 0 else 1)
PY
    python -c "import vllm" 2>/dev/null || timeout 180 pip install -q "vllm>=0.11" \
        || echo "gpu_check: vllm did not install" >&2
}

if [[ " $* " != *" --cpu "* && -z "${GPU_CHECK_NO_INSTALL:-}" ]]; then
    install
fi
# the whole script stays under 8 minutes: the check gets what the installs left (at least 2 minutes)
left=$(( ${GPU_CHECK_BUDGET:-470} - SECONDS ))
exec timeout "$(( left > 120 ? left : 120 ))" python benchmarks/gpu_check.py "$@"
