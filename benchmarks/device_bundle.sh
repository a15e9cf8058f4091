#!/usr/bin/env bash
# Rebuilds .devbundle/ (git-ignored through .git/info/exclude), everything benchmarks/gpu_check.py
# needs on a lent GPU machine that has NO network and no package index, only Python 3.12 with
# torch (CUDA), transformers, sentence-transformers, numpy, scipy, pandas, pyarrow, numba, ...
#
#   .devbundle/wheels/      cp312 / abi3 / py3 wheels of what irdistill imports that the remote
#                           lacks (faiss-cpu, ranx, bm25s, PyStemmer, ir_datasets, datasets and
#                           their import-time deps), pinned by version and sha256
#   .devbundle/wheels-gpu/  faiss-gpu-cu12, not carried by the command below: it needs the CUDA 12
#                           runtime and cuBLAS, and the lent H200's image is CUDA 13 (torch
#                           2.11.0+cu130), so faiss stays on the CPU there and gpu_check says so
#   .devbundle/assets/      models/all-MiniLM-L6-v2 (weights stored in fp16, loaded as fp32) and
#                           data/scifact (the BEIR folder, SHA256SUMS checked; corpus.jsonl xz-compressed)
#
# A remote call ships the work tree plus at most 8 carried ignored paths, 64 MiB in all: wheels
# (~14 MB) + assets (~48 MB) + tree (~3 MB) fit one call, whose command is written to
# .devbundle/remote_call.txt (carry [".devbundle/wheels", ".devbundle/assets"]). It installs the
# wheels into /tmp/site, unpacks the corpus, puts a `python` (exec python3) on PATH (gpu_check.sh
# calls `python`), makes a MiniLM cross-encoder whose fresh head is drawn once under a fixed seed
# (so that the fp32 / fp16 / bf16 loads of the cross_encoder step share one head), and runs
# benchmarks/gpu_check.sh with its results in $OUT. irdistill is imported from the repo root
# (PYTHONPATH), not pip-installed.
#
# Usage: bash benchmarks/device_bundle.sh     (MODEL_SRC, DATA_SRC, PYTHON override the sources;
# the local Python needs torch, safetensors and sentence-transformers for the fp16 conversion).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
py="${PYTHON:-python3}"
bundle="$repo/.devbundle"
model_src="${MODEL_SRC:-${IRDISTILL_MODELS:-$HOME/.cache/irdistill/models}/all-MiniLM-L6-v2}"
data_src="${DATA_SRC:-$repo/../shared/data/scifact}"
[[ -d $data_src ]] || data_src="${IRDISTILL_DATA:-/nonexistent}/scifact"
[[ -f $model_src/model.safetensors ]] || { echo "no model at $model_src (set MODEL_SRC)" >&2; exit 2; }
[[ -f $data_src/corpus.jsonl ]] || { echo "no SciFact folder at $data_src (set DATA_SRC)" >&2; exit 2; }

# name==version  sha256 of the wheel as downloaded  folder ("-": wheels/, gpu: wheels-gpu/)  repack with LZMA
wheels=(
    "faiss-cpu==1.15.1 f2c31b7f2f6647eb76829a5cfe3c398fb9346df9f26b1d4db35269c91eb58c33 - lzma"
    "faiss-gpu-cu12==1.14.1.post1 d997b9a4d9c7697e3ce39576edb91733c20ac2e81b455b4c08afea9d69e894cf gpu lzma"
    "ranx==0.3.21 3ee37593b6e44574b75c0076cf113c9ca515209ade4fd7e7ef97aa5962409163 - -"
    "bm25s==0.3.16 65d973bd496de883ae525955379e3e7cf90a12c3d54ed175036315ae677512c9 - -"
    "PyStemmer==3.1.0 550bd609aa8dc324033eb1c8d34bfd68649183bbdab871ff534332dcafdc5e5a - -"
    "ir_datasets==0.6.3 8188ad99408dc042b3be7493fa8a9d76cf04681ca1ea010e97a5f93a0aaf1dbd - -"
    "datasets==5.2.0 4be9e2882caaf5db13eadc39e93f3da2a995187b99acebac1595bf6c58dfa927 - -"
    "dill==0.4.1 1e1ce33e978ae97fcfcff5638477032b801c46c7c65cf717f95fbc2248f79a9d - -"
    "multiprocess==0.70.19 3a56c0e85dd5025161bac5ce138dcac1e49174c7d8e74596537e729fd5c53c28 - -"
    "orjson==3.10.18 9dca85398d6d093dd41dc0983cbf54ab8e6afd1c547b6b8a311643917fbf4e0c - -"
    "lz4==4.4.5 24092635f47538b392c4eaeff14c7270d2c8e806bf4be2a6446a378591c5e69e - -"
    "cbor2==6.3.0 4f160b662059cc30ced4436fca332f4c27d0259698a5bde8373c9c6f829aabdf - -"
)
# Left out on purpose: fastparquet and cramjam (ranx lists fastparquet, but imports it only to read or
# write parquet runs, which irdistill does not do); everything else ranx / ir_datasets / datasets
# import at import time is on the remote (numba, pandas, scipy, rich, seaborn, tabulate, lxml,
# requests, pyyaml, xxhash, fsspec, huggingface-hub, pyarrow, filelock, packaging, tqdm).

rm -rf "$bundle"
mkdir -p "$bundle/wheels" "$bundle/wheels-gpu" "$bundle/assets/models" "$bundle/assets/data"
download="$(mktemp -d)"
trap 'rm -rf "$download"' EXIT

echo "== wheels" >&2
for row in "${wheels[@]}"; do
    read -r spec sha sub repack <<<"$row"
    dir="$download/${spec%%==*}"
    python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
        -d "$dir" "$spec" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    file=$(ls "$dir"/*.whl)
    echo "$sha  $file" | sha256sum -c --quiet - || { echo "sha256 of $spec changed" >&2; exit 1; }
    target="$bundle/wheels"
    [[ $sub == - ]] || target="$bundle/wheels-$sub"
    if [[ $repack == lzma ]]; then  # same members, attributes and dates; LZMA instead of deflate
        "$py" - "$file" "$target/$(basename "$file")" <<'PY'
import sys, zipfile
src, dst = sys.argv[1:]
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_LZMA) as zout:
    for info in zin.infolist():
        new = zipfile.ZipInfo(info.filename, date_time=info.date_time)
        new.external_attr, new.compress_type = info.external_attr, zipfile.ZIP_LZMA
        zout.writestr(new, zin.read(info))
with zipfile.ZipFile(dst) as z:
    assert z.testzip() is None, f"{dst}: corrupt member"
PY
    else
        cp "$file" "$target/"
    fi
done
# every wheel installable on CPython 3.12 / manylinux x86_64, one version of each distribution
"$py" - "$bundle/wheels" <<'PY'
import sys
from pathlib import Path
from packaging.utils import parse_wheel_filename
seen = {}
for whl in sorted(Path(sys.argv[1]).rglob("*.whl")):
    name, version, _, tags = parse_wheel_filename(whl.name)
    assert name not in seen, f"two versions of {name}"
    seen[name] = version
    ok = any(
        (t.interpreter in ("py3", "py312", "cp312") or (t.abi == "abi3" and t.interpreter in ("cp310", "cp311", "cp312")))
        and t.abi in ("none", "abi3", "cp312")
        and (t.platform == "any" or (t.platform.startswith("manylinux") and t.platform.endswith("x86_64")))
        for t in tags
    )
    assert ok, f"{whl.name}: no CPython 3.12 x86_64 tag"
print("wheels:", ", ".join(f"{n} {v}" for n, v in seen.items()), file=sys.stderr)
PY

echo "== model (fp16 weights, fp32 at load)" >&2
out="$bundle/assets/models/all-MiniLM-L6-v2"
mkdir -p "$out"
( cd "$model_src" && find . -mindepth 1 -maxdepth 1 ! -name onnx ! -name openvino ! -name model.safetensors \
    -exec cp -r {} "$out/" \; )
"$py" - "$model_src" "$out" <<'PY'
import json, sys
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
src, dst = sys.argv[1:]
with safe_open(f"{src}/model.safetensors", "pt") as f:
    metadata = f.metadata()
state = {k: (v.half() if v.is_floating_point() else v).contiguous()
         for k, v in load_file(f"{src}/model.safetensors").items()}
save_file(state, f"{dst}/model.safetensors", metadata=metadata)
# transformers 5 loads with dtype="auto": without this key the fp16 file would load (and run) in fp16
config = json.load(open(f"{src}/config.json"))
config["dtype"] = "float32"
with open(f"{dst}/config.json", "w") as out:
    json.dump(config, out, indent=2)
    out.write("\n")
PY

echo "== data" >&2
cp -r "$data_src" "$bundle/assets/data/scifact"
chmod -R u+w "$bundle/assets/data"
if [[ -f $bundle/assets/data/scifact/SHA256SUMS ]]; then
    ( cd "$bundle/assets/data" && sha256sum -c --quiet scifact/SHA256SUMS )
fi
xz -k -9 -T2 "$bundle/assets/data/scifact/corpus.jsonl"  # 8.0 to 1.9 MB: what lets one call carry all

echo "== check: the fp16 folder loads in fp32 and embeds as the original does" >&2
"$py" - "$model_src" "$out" "$bundle/assets/data/scifact/corpus.jsonl" <<'PY' 2> >(grep -v "Loading weights" >&2)
import json, sys
import torch
from sentence_transformers import CrossEncoder, SentenceTransformer
src, dst, corpus = sys.argv[1:]
with open(corpus) as f:
    texts = [(d := json.loads(next(f)))["title"] + " " + d["text"] for _ in range(16)]
ref = SentenceTransformer(src, device="cpu")
new = SentenceTransformer(dst, device="cpu")
assert {p.dtype for p in new.parameters()} == {torch.float32}, "fp16 folder did not load in fp32"
a, b = ref.encode(texts, convert_to_tensor=True), new.encode(texts, convert_to_tensor=True)
cos = torch.nn.functional.cosine_similarity(a, b).min().item()
assert cos > 0.999, f"cosine {cos}"
ce = CrossEncoder(dst, device="cpu", num_labels=1)
assert {p.dtype for p in ce.model.parameters()} == {torch.float32}, "cross-encoder not fp32"
print(f"fp16 folder: loads in float32 (SentenceTransformer and CrossEncoder); min cosine to fp32 over 16 passages {cos:.6f}",
      file=sys.stderr)
PY

rm "$bundle/assets/data/scifact/corpus.jsonl"  # the remote command unpacks the .xz

# ------------------------------------------------------------------ sizes and the remote command
size() { du -sb "$1" | cut -f1; }
tree=$(cd "$repo" && { git ls-files -z; git ls-files -z -o --exclude-standard; } | xargs -0 du -cb 2>/dev/null | awk '/\ttotal$/ {s += $1} END {print s}')
wheels_b=$(size "$bundle/wheels") assets_b=$(size "$bundle/assets")
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "sizes: wheels/ $(mib "$wheels_b"), assets/ $(mib "$assets_b"), work tree $(mib "$tree");" \
    "one call $(mib $((tree + wheels_b + assets_b))) (limit 64 MiB)"
(( tree + wheels_b + assets_b <= 63 * 1048576 )) || { echo "over 63 MiB: will not travel in one call" >&2; exit 1; }

cat >"$bundle/remote_call.txt" <<'EOF'
set -o pipefail; I="python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade"; $I --target /tmp/site .devbundle/wheels/*.whl || echo "INSTALL FAILED"; xz -d .devbundle/assets/data/scifact/corpus.jsonl.xz; mkdir -p /tmp/site/bin && printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" >/tmp/site/bin/python && chmod +x /tmp/site/bin/python; export PATH=/tmp/site/bin:$PATH PYTHONPATH=/tmp/site:$PWD IRDISTILL_DATA=$PWD/.devbundle/assets/data IRDISTILL_MODELS=$PWD/.devbundle/assets/models HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 GPU_CHECK_NO_INSTALL=1 GPU_CHECK_BUDGET=420; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; python3 -c "import faiss, ranx, bm25s, Stemmer, datasets, irdistill, torch, transformers as t, sentence_transformers as st; print('imports ok | faiss', faiss.__version__, '| torch', torch.__version__, torch.version.cuda, torch.cuda.is_available(), '| transformers', t.__version__, '| st', st.__version__)"; python3 -c "import torch,shutil as s;from transformers import AutoModelForSequenceClassification as A;m='.devbundle/assets/models/all-MiniLM-L6-v2';o='/tmp/all-MiniLM-L6-v2-seed0-head';torch.manual_seed(0);A.from_pretrained(m,num_labels=1).save_pretrained(o);[s.copy(m+'/'+f,o) for f in ('tokenizer.json','tokenizer_config.json','vocab.txt','special_tokens_map.json')]" 2>&1 | tail -2; bash benchmarks/gpu_check.sh --cross-encoder /tmp/all-MiniLM-L6-v2-seed0-head --results $OUT 2>&1 | tee $OUT/gpu_check.log
EOF
chars=$(tr -d '\n' <"$bundle/remote_call.txt" | wc -c)
(( chars < 2000 )) || { echo "the remote command is $chars characters (limit 2,000)" >&2; exit 1; }
echo
echo "remote command ($chars characters; carry [\".devbundle/wheels\", \".devbundle/assets\"], timeout_s >= 480):"
cat "$bundle/remote_call.txt"
