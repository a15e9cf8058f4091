"""glibc's heap under CPU training: peak RSS and time per step with glibc's own (dynamic) mmap
threshold against the 4 MiB threshold that ``irdistill.memory.limit_heap_growth`` fixes.

Each measurement is a fresh process running ``--steps`` training steps of the main job's student
shape (all-MiniLM-L6-v2, batch 32 of query + positive + negative, 128 tokens, gradient
checkpointing, AdamW; SciFact texts), the two settings alternating, ``--repeats`` times; the table
gives medians and the per-pair ratio. Resumes: every finished process is a row of the JSON.

    python benchmarks/bench_malloc.py [--steps 10] [--passages 128] [--repeats 3] [--modes train encode]
Writes eval/results/malloc_steps.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "eval" / "results"
SETTINGS = {"glibc default": "off", "fixed 4 MiB (irdistill)": "on"}


def encode_only(passages: int) -> dict[str, float]:
    """The child, inference: the main job's teacher (all-mpnet-base-v2, 384 tokens) encoding the
    ``passages`` longest SciFact passages through irdistill's encoder (CPU batch cap included)."""
    import resource
    import time

    from irdistill.data import load_collection
    from irdistill.encoding import DenseEncoder
    from irdistill.memory import limit_heap_growth

    limited = limit_heap_growth()
    texts = sorted(load_collection("beir/scifact/test").doc_texts(), key=len, reverse=True)[:passages]
    encoder = DenseEncoder("sentence-transformers/all-mpnet-base-v2", device="cpu", cache=False, max_seq_length=384)
    encoder.embed(texts[:8], "document")
    start = time.perf_counter()
    encoder.embed(texts, "document")
    return {
        "threshold": limited or 0,
        "s_per_step": (time.perf_counter() - start) / len(texts),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def train_steps(steps: int) -> dict[str, float]:
    """The child: ``steps`` training steps; the first two are warm-up, not timed."""
    import random
    import resource
    import time

    import torch

    from irdistill.data import load_collection
    from irdistill.memory import limit_heap_growth
    from irdistill.paths import resolve_model

    limited = limit_heap_growth()
    torch.manual_seed(0)
    rng = random.Random(0)
    from sentence_transformers import SentenceTransformer

    c = load_collection("beir/scifact/train")
    texts, queries = c.doc_texts(), c.query_texts()
    model = SentenceTransformer(str(resolve_model("sentence-transformers/all-MiniLM-L6-v2")), device="cpu")
    model.max_seq_length = 128
    model[0].auto_model.gradient_checkpointing_enable()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-5)

    def embed(batch: list[str]) -> torch.Tensor:
        return model(model.tokenize(batch))["sentence_embedding"]

    start = 0.0
    for step in range(steps):
        if step == 2:
            start = time.perf_counter()
        q, p, n = embed(rng.sample(queries, 32)), embed(rng.sample(texts, 32)), embed(rng.sample(texts, 32))
        contrastive = torch.nn.functional.cross_entropy(q @ torch.cat([p, n]).T * 20, torch.arange(32))
        margin = ((q * p).sum(1) - (q * n).sum(1)).pow(2).mean()
        (contrastive + margin).backward()
        opt.step()
        opt.zero_grad()
    return {
        "threshold": limited or 0,
        "s_per_step": (time.perf_counter() - start) / (steps - 2),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="training steps per process")
    parser.add_argument("--passages", type=int, default=128, help="passages the encode mode encodes")
    parser.add_argument("--modes", nargs="+", default=["train", "encode"], choices=["train", "encode"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--child", choices=["train", "encode"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(train_steps(args.steps) if args.child == "train" else encode_only(args.passages)))
        return
    path = Path(args.results) / "malloc_steps.json"
    rows: list[dict] = json.loads(path.read_text())["rows"] if path.is_file() else []
    size = {"train": args.steps, "encode": args.passages}
    for mode in args.modes:
        for repeat in range(args.repeats):
            for name, setting in SETTINGS.items():
                key = (mode, name, repeat, size[mode])
                if any((r["mode"], r["setting"], r["repeat"], r["size"]) == key for r in rows):
                    continue
                env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
                env["IRDISTILL_MMAP_THRESHOLD"] = setting
                cmd = [sys.executable, __file__, "--child", mode, "--steps", str(args.steps)]
                out = subprocess.run([*cmd, "--passages", str(args.passages)], env=env, capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(f"{mode} / {name} failed:\n{out.stderr[-2000:]}")
                row = {"mode": mode, "setting": name, "repeat": repeat, "size": size[mode]}
                row.update(json.loads(out.stdout.splitlines()[-1]))
                rows.append(row)
                print(json.dumps(row), flush=True)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    base, fixed = list(SETTINGS)
    lines = [
        "# CPU training and encoding under glibc's heap settings",
        "",
        f"`python benchmarks/bench_malloc.py --steps {args.steps} --passages {args.passages} "
        f"--repeats {args.repeats}`: "
        "fresh processes, the two settings alternating. `train`: the main job's student shape (all-MiniLM-L6-v2, "
        "batch 32 x query + positive + negative, 128 tokens, gradient checkpointing, AdamW) on SciFact texts, "
        "2 warm-up steps untimed; time per step. `encode`: the main job's teacher encoder (all-mpnet-base-v2, "
        "384 tokens, irdistill's CPU batch cap) on the longest SciFact passages; time per passage. "
        f"{os.cpu_count()} cores.",
        "",
        "| mode | setting | runs | peak RSS GiB (median) | s per unit (median) | all peaks | all s per unit |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in ("train", "encode"):
        mine = [r for r in rows if r["mode"] == mode and r["size"] == size[mode]]
        for name in SETTINGS:
            got = [r for r in mine if r["setting"] == name]
            if got:
                lines.append(
                    f"| {mode} | {name} | {len(got)} | {statistics.median(r['peak_rss_gib'] for r in got):.2f} | "
                    f"{statistics.median(r['s_per_step'] for r in got):.3f} | "
                    + ", ".join(f"{r['peak_rss_gib']:.2f}" for r in got)
                    + " | "
                    + ", ".join(f"{r['s_per_step']:.3f}" for r in got)
                    + " |"
                )
        pairs = [
            (a, b)
            for a in mine
            for b in mine
            if a["setting"] == fixed and b["setting"] == base and a["repeat"] == b["repeat"]
        ]
        if pairs:
            t = statistics.median(a["s_per_step"] / b["s_per_step"] for a, b in pairs)
            m = statistics.median(a["peak_rss_gib"] / b["peak_rss_gib"] for a, b in pairs)
            lines.append(f"| {mode} | fixed / default, median of {len(pairs)} pairs | | {m:.3f}x | {t:.3f}x | | |")
    (Path(args.results) / "malloc_steps.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
