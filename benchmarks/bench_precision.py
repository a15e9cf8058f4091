"""CPU training steps by precision, activation recomputation and glibc's heap setting.

Each measurement is a fresh process running ``--steps`` optimizer steps of the main job's student
shape (all-MiniLM-L6-v2, hybrid-kl rows: 32 queries, each with a list of 8 passages, so 288 texts
a step at 128 tokens; KL over each query's list plus InfoNCE over the batch's 256 passages; AdamW
on fp32 weights) on SciFact texts. The first two steps are warm-up and not timed. Settings:

- precision ``fp32`` or ``bf16``: bf16 runs the forward pass under ``torch.autocast("cpu",
  torch.bfloat16)``, as the trainer does with ``bf16=True`` on a CPU (accelerate's mixed
  precision: fp32 master weights, bf16 matrix products);
- ``ckpt`` on or off: activation checkpointing (recompute in the backward pass);
- ``heap`` ``fixed`` (irdistill's 4 MiB mmap threshold, :mod:`irdistill.memory`) or ``default``
  (``IRDISTILL_MMAP_THRESHOLD=off``, glibc's own dynamic threshold).

The settings alternate within each repeat, so a slow spell of the machine hits all of them; the
table gives the median seconds per step and peak RSS per setting, and each setting's median
ratio to the first one (paired by repeat). Resumable: each finished process is a row of the JSON.

    python benchmarks/bench_precision.py [--steps 5] [--repeats 3]
Writes eval/results/precision_steps.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "eval" / "results"
SETTINGS = {
    # name: (precision, checkpointing, heap, attention dropout: None = the model's 0.1)
    "fp32 ckpt fixed": ("fp32", True, "fixed", None),  # the main job before bf16: the reference row
    "fp32 no-ckpt default": ("fp32", False, "default", None),
    "bf16 ckpt fixed": ("bf16", True, "fixed", None),
    "bf16 ckpt default": ("bf16", True, "default", None),
    "bf16 no-ckpt fixed": ("bf16", False, "fixed", None),
    "bf16 no-ckpt default": ("bf16", False, "default", None),
    "bf16 ckpt default attn0": ("bf16", True, "default", 0.0),
    "bf16 no-ckpt default attn0": ("bf16", False, "default", 0.0),
}
QUERIES, LIST_SIZE, LENGTH = 32, 8, 128


def train_steps(
    steps: int, precision: str, checkpointing: bool, attention_dropout: float | None = None, profile: bool = False
) -> dict[str, Any]:
    """The child: ``steps`` steps of the hybrid-kl shape; the first two are warm-up. ``profile``: the
    last step runs under ``torch.profiler`` and the operators with the most self CPU time are returned."""
    import contextlib
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
    model.max_seq_length = LENGTH
    if attention_dropout is not None:
        from irdistill.encoding import set_attention_dropout

        set_attention_dropout(model, attention_dropout)
    if checkpointing:
        model[0].auto_model.gradient_checkpointing_enable()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-5)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()

    def embed(batch: list[str]) -> torch.Tensor:
        return model(model.tokenize(batch))["sentence_embedding"]

    start = 0.0
    profiler: Any = None
    for step in range(steps):
        if step == 2:
            start = time.perf_counter()
        if profile and step == steps - 1:
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as torch_profile

            profiler = torch_profile(activities=[ProfilerActivity.CPU])
            profiler.__enter__()
        with autocast:
            q = embed(rng.sample(queries, QUERIES))
            d = embed(rng.sample(texts, QUERIES * LIST_SIZE))
        q, d = q.float(), d.float()
        q, d = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(d, dim=-1)
        scores = q @ d.T * 20  # every query against every passage of the batch
        positives = torch.arange(QUERIES) * LIST_SIZE
        contrastive = torch.nn.functional.cross_entropy(scores, positives)
        own = scores.view(QUERIES, QUERIES, LIST_SIZE)[torch.arange(QUERIES), torch.arange(QUERIES)]
        target = torch.softmax(torch.randn(QUERIES, LIST_SIZE), dim=-1)
        kl = torch.nn.functional.kl_div(torch.log_softmax(own, -1), target, reduction="batchmean")
        (contrastive + kl).backward()
        opt.step()
        opt.zero_grad()
    out: dict[str, Any] = {
        "threshold": limited or 0,
        "s_per_step": (time.perf_counter() - start) / (steps - 2),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    if profiler is not None:
        profiler.__exit__(None, None, None)
        events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        out["profile"] = [
            {
                "op": e.key,
                "self_s": round(e.self_cpu_time_total / 1e6, 2),
                "share": round(e.self_cpu_time_total / total, 3),
            }
            for e in events[:12]
        ]
        math = next((e for e in events if e.key == "aten::_scaled_dot_product_attention_math"), None)
        out["attention_math_share"] = round(math.cpu_time_total / total, 3) if math else 0.0
    return out


def table(rows: list[dict], steps: int, repeats: int, profiles: dict[str, Any] | None = None, args: Any = None) -> str:
    mine = [r for r in rows if r["steps"] == steps]
    measured = {r["setting"] for r in mine}
    reference = next(name for name in SETTINGS if name in measured)  # the first setting of this sitting
    command_tail = ""
    if args is not None and args.name != "precision_steps":
        command_tail = " --name " + args.name + " --settings " + " ".join(f"'{n}'" for n in SETTINGS if n in measured)
    lines = [
        "# CPU training steps: precision, activation recomputation, glibc's heap, attention dropout",
        "",
        f"`python benchmarks/bench_precision.py --steps {steps} --repeats {repeats}{command_tail}`: fresh processes, "
        "the settings "
        f"alternating within each repeat. The main job's student shape: all-MiniLM-L6-v2, hybrid-kl rows ({QUERIES} "
        f"queries x a list of {LIST_SIZE} passages = {QUERIES * (1 + LIST_SIZE)} texts a step at {LENGTH} tokens), "
        "KL over each list + InfoNCE over the batch, AdamW on fp32 weights; SciFact texts; 2 warm-up steps untimed. "
        "bf16: `torch.autocast('cpu', torch.bfloat16)` around the forward pass, what the trainer's `bf16=True` does "
        f"on a CPU. ckpt: activation checkpointing. heap fixed: irdistill's 4 MiB mmap threshold; default: "
        "`IRDISTILL_MMAP_THRESHOLD=off`. attn0: the attention dropout set to 0 (`irdistill.encoding."
        f"set_attention_dropout`; otherwise MiniLM's 0.1), which lets attention take its fused kernel. "
        f"{os.cpu_count()} cores.",
        "",
        f"| setting | runs | s per step (median) | peak RSS GiB (median) | time / `{reference}` | all s per step | "
        "all peaks |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in SETTINGS:
        got = [r for r in mine if r["setting"] == name]
        if not got:
            continue
        pairs = [
            (r["s_per_step"], b["s_per_step"])
            for r in got
            for b in mine
            if b["setting"] == reference and b["repeat"] == r["repeat"]
        ]
        ratio = f"{statistics.median(a / b for a, b in pairs):.3f}x" if pairs else "-"
        lines.append(
            f"| {name} | {len(got)} | {statistics.median(r['s_per_step'] for r in got):.2f} | "
            f"{statistics.median(r['peak_rss_gib'] for r in got):.2f} | {ratio} | "
            + ", ".join(f"{r['s_per_step']:.2f}" for r in got)
            + " | "
            + ", ".join(f"{r['peak_rss_gib']:.2f}" for r in got)
            + " |"
        )
    for name, got in (profiles or {}).items():
        lines += [
            "",
            f"Profile of one `{name}` step (`python benchmarks/bench_precision.py --profile '{name}'`; torch.profiler, "
            f"self CPU time; the profiler's overhead makes the step {got['s_per_step']:.1f} s): "
            f"`aten::_scaled_dot_product_attention_math` and what it calls take {got['attention_math_share']:.0%} "
            "of the step (attention on the unfused math path: training-time attention dropout draws a mask for every "
            "attention probability, `aten::bernoulli_`). Top operators: "
            + ", ".join(f"`{e['op']}` {e['share']:.0%}" for e in got["profile"][:8])
            + ".",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per process (2 of them warm-up)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument(
        "--name",
        default="precision_steps",
        help="results file stem: a sitting of other settings goes to its own file, its ratios to its own first "
        "setting measured beside it",
    )
    parser.add_argument(
        "--profile",
        choices=list(SETTINGS),
        help="instead of timing: profile the last step of one process at this setting and keep its top operators",
    )
    parser.add_argument("--child", choices=list(SETTINGS), help=argparse.SUPPRESS)
    parser.add_argument("--child-profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 3:
        parser.error("--steps must be >= 3 (two warm-up steps and at least one timed)")
    if args.child:
        precision, checkpointing, _, dropout = SETTINGS[args.child]
        print(json.dumps(train_steps(args.steps, precision, checkpointing, dropout, profile=args.child_profile)))
        return
    path = Path(args.results) / f"{args.name}.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    rows: list[dict] = saved.get("rows", [])
    profiles: dict[str, Any] = saved.get("profiles", {})
    if args.profile:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        env["IRDISTILL_MMAP_THRESHOLD"] = "on" if SETTINGS[args.profile][2] == "fixed" else "off"
        cmd = [sys.executable, __file__, "--child", args.profile, "--steps", "3", "--child-profile"]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{args.profile} failed:\n{out.stderr[-2000:]}")
        profiles[args.profile] = json.loads(out.stdout.splitlines()[-1])
        path.write_text(json.dumps({"rows": rows, "profiles": profiles}, indent=1) + "\n")
        text = table(rows, args.steps, args.repeats, profiles, args)
        (Path(args.results) / f"{args.name}.md").write_text(text)
        print(text)
        return
    for repeat in range(args.repeats):
        for name in args.settings:
            if any((r["setting"], r["repeat"], r["steps"]) == (name, repeat, args.steps) for r in rows):
                continue
            env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
            env["IRDISTILL_MMAP_THRESHOLD"] = "on" if SETTINGS[name][2] == "fixed" else "off"
            cmd = [sys.executable, __file__, "--child", name, "--steps", str(args.steps)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{name} failed:\n{out.stderr[-2000:]}")
            row = {"setting": name, "repeat": repeat, "steps": args.steps, **json.loads(out.stdout.splitlines()[-1])}
            rows.append(row)
            print(json.dumps(row), flush=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"rows": rows, "profiles": profiles}, indent=1) + "\n")
    text = table(rows, args.steps, args.repeats, profiles, args)
    (Path(args.results) / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
