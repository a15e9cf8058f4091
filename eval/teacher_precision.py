"""The teacher in bf16 against fp32: the same scores' ranking, and the encoder's speed.

Two parts, each optional:

1. **Fidelity** (``--reference`` and ``--candidate``, two teacher-score stores of the same candidate
   lists): per query, Kendall's τ-b between the two stores' scores and the top-10 overlap
   (:func:`irdistill.evaluation.fidelity.teacher_fidelity`), averaged over queries, and the largest
   |score difference|. Default: the committed fp32 store of the SciFact train candidates
   (``eval/teacher_scores/scifact/train``, ``teachers/ensemble_bm25_mpnet.yaml`` on torch fp32) against
   the main job's own store (``runs/scifact-distill/scores.train``: the same ensemble, its mpnet member on
   ``auto-bf16``).
2. **Speed** (``--speed-repeats N``): all-mpnet-base-v2 (the teacher's encoder, 384 tokens) encoding the
   ``--passages`` longest SciFact passages, each backend in a fresh process, the backends alternating,
   ``N`` times; median seconds per passage and the ratio to torch fp32. Backends: ``torch`` (fp32),
   ``torch-autocast-bf16`` (the torch model under ``torch.autocast('cpu', torch.bfloat16)``, for
   reference) and ``openvino-bf16`` (what ``auto-bf16`` picks on a CPU with native bf16).

Writes ``eval/results/teacher_precision.{md,json}`` (each part kept when the other is re-run).

    IRDISTILL_DATA=../shared/data python eval/teacher_precision.py [--speed-repeats 3]
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

HERE = Path(__file__).parent
RESULTS = HERE / "results"
SPEED_BACKENDS = ("torch", "torch-autocast-bf16", "openvino-bf16")
MODEL = "sentence-transformers/all-mpnet-base-v2"


def fidelity(reference: Path, candidate: Path) -> dict[str, Any]:
    import numpy as np

    from irdistill.evaluation.fidelity import teacher_fidelity
    from irdistill.scores.table import read_scores, scores_to_run

    def store(path: Path) -> Any:
        return read_scores(path / "scores.parquet" if path.is_dir() else path)

    fp32, bf16 = scores_to_run(store(reference)), scores_to_run(store(candidate))
    if set(fp32) != set(bf16):
        raise SystemExit(f"{reference} and {candidate} score different queries: not the same candidate lists")
    difference = max(abs(bf16[q][d] - s) for q, docs in fp32.items() for d, s in docs.items() if d in bf16[q])
    values = teacher_fidelity(bf16, fp32, k=10)
    manifest = candidate / "manifest.json" if candidate.is_dir() else None
    teacher = json.loads(manifest.read_text())["teacher"] if manifest and manifest.is_file() else None

    def shown(path: Path) -> str:  # relative to the repository where it lies inside
        try:
            return str(path.resolve().relative_to(HERE.parent.resolve()))
        except ValueError:
            return str(path)

    return {
        "reference": shown(reference),
        "candidate": shown(candidate),
        "queries": int(values["queries"]),
        "pairs": sum(len(d) for d in fp32.values()),
        "kendall_tau": round(values["kendall_tau"], 4),
        "top10_overlap": round(values["top10_overlap"], 4),
        "max_abs_diff": float(np.float64(difference)),
        "candidate_teacher": teacher,
    }


def encode_child(backend: str, passages: int) -> dict[str, float]:
    """One fresh process: encode the ``passages`` longest SciFact passages after an 8-passage warm-up."""
    import contextlib
    import resource
    import time

    import torch

    from irdistill.data import load_collection
    from irdistill.encoding import DenseEncoder

    texts = sorted(load_collection("beir/scifact/test").doc_texts(), key=len, reverse=True)[:passages]
    runtime = "openvino-bf16" if backend == "openvino-bf16" else "torch"
    encoder = DenseEncoder(MODEL, device="cpu", cache=False, max_seq_length=384, backend=runtime)
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if backend == "torch-autocast-bf16" else contextlib.nullcontext()
    )
    with autocast:
        encoder.embed(texts[:8], "document")
        start = time.perf_counter()
        encoder.embed(texts, "document")
        seconds = time.perf_counter() - start
    return {
        "s_per_passage": seconds / len(texts),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def speed(repeats: int, passages: int, old: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [r for r in old if r["passages"] == passages]
    for repeat in range(repeats):
        for backend in SPEED_BACKENDS:
            if any((r["backend"], r["repeat"]) == (backend, repeat) for r in rows):
                continue
            cmd = [sys.executable, __file__, "--child", backend, "--passages", str(passages)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{backend} failed:\n{out.stderr[-2000:]}")
            row = {
                "backend": backend,
                "repeat": repeat,
                "passages": passages,
                **json.loads(out.stdout.splitlines()[-1]),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def write(path: Path, data: dict[str, Any]) -> None:
    from irdistill.paths import write_text_atomic

    write_text_atomic(path.with_suffix(".json"), json.dumps(data, indent=2) + "\n")
    lines = ["# The teacher in bf16 against fp32", ""]
    f = data.get("fidelity")
    if f:
        lines += [
            "`python eval/teacher_precision.py`: the same teacher's scores of the same candidate lists, per query "
            "Kendall τ-b and top-10 overlap of the bf16 store against the fp32 one, averaged over queries.",
            "",
            "| reference (fp32) | candidate (bf16) | queries | pairs | Kendall τ | top-10 overlap | max abs diff |",
            "|---|---|---|---|---|---|---|",
            f"| `{f['reference']}` | `{f['candidate']}` | {f['queries']} | {f['pairs']} | {f['kendall_tau']:.4f} | "
            f"{f['top10_overlap']:.4f} | {f['max_abs_diff']:.3g} |",
            "",
        ]
        member = next(
            (m for m in ((f.get("candidate_teacher") or {}).get("config") or {}).get("members", []) if "backend" in m),
            None,
        )
        if member:
            lines += [f"The candidate store's dense member, as its manifest records it: `{json.dumps(member)}`.", ""]
    rows = data.get("speed") or []
    if rows:
        passages = rows[0]["passages"]
        reference = statistics.median(r["s_per_passage"] for r in rows if r["backend"] == "torch")
        lines += [
            f"Speed: {MODEL.split('/')[-1]} at 384 tokens on the {passages} longest SciFact passages, each backend "
            "in a fresh process, the backends alternating; median over the runs. "
            f"{os.cpu_count()} cores.",
            "",
            "| backend | runs | s per passage (median) | x torch fp32 | peak RSS GiB | all s per passage |",
            "|---|---|---|---|---|---|",
        ]
        for backend in SPEED_BACKENDS:
            got = [r for r in rows if r["backend"] == backend]
            if got:
                median = statistics.median(r["s_per_passage"] for r in got)
                lines.append(
                    f"| {backend} | {len(got)} | {median:.3f} | {reference / median:.2f}x | "
                    f"{statistics.median(r['peak_rss_gib'] for r in got):.2f} | "
                    + ", ".join(f"{r['s_per_passage']:.3f}" for r in got)
                    + " |"
                )
    write_text_atomic(path.with_suffix(".md"), "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", default=str(HERE / "teacher_scores" / "scifact" / "train"))
    parser.add_argument("--candidate", default="runs/scifact-distill/scores.train")
    parser.add_argument("--no-fidelity", action="store_true", help="keep the recorded fidelity part")
    parser.add_argument("--speed-repeats", type=int, default=0, help="fresh processes per backend (0: no speed part)")
    parser.add_argument("--passages", type=int, default=48)
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--child", choices=SPEED_BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(encode_child(args.child, args.passages)))
        return
    path = Path(args.results) / "teacher_precision.json"
    data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    if not args.no_fidelity:
        data["fidelity"] = fidelity(Path(args.reference), Path(args.candidate))
        write(path, data)
    if args.speed_repeats:
        data["speed"] = speed(args.speed_repeats, args.passages, data.get("speed") or [])
        write(path, data)
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
