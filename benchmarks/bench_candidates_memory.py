"""Peak memory of mining candidates for SciFact train queries (BM25 and dense), by query count.

Each configuration runs `irdistill candidates` in a fresh process; its peak RSS is read from
the kernel (resource.getrusage of the finished child). Query counts grow (100, 400, all 809
train queries) to show that memory stays flat as the number of queries grows: queries are
searched in batches and the run is streamed to disk.

Usage:  IRDISTILL_DATA=../shared/data python benchmarks/bench_candidates_memory.py
Writes eval/results/bench_candidates_memory.{json,md}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "eval" / "results"

CHILD = r"""
import resource, sys, json, time
from irdistill.candidates import write_candidates
from irdistill.data import load_collection
retriever, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = load_collection("beir/scifact/train")
c = c.subset(query_ids=c.query_ids[:n])
t = time.perf_counter()
count = write_candidates(c, out, retriever, k=100, query_batch_size=64, show_progress_bar=False)
print(json.dumps({"queries": count, "seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for retriever in ("bm25", "sentence-transformers/all-MiniLM-L6-v2"):
            for n in (100, 400, 809):
                out = Path(tmp) / "run.trec"
                start = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, "-c", CHILD, retriever, str(n), str(out)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                wall = time.perf_counter() - start
                stats = json.loads(proc.stdout.strip().splitlines()[-1])
                lines = sum(1 for _ in out.open())
                rows.append(
                    {
                        "retriever": Path(retriever).name,
                        "queries": stats["queries"],
                        "run_lines": lines,
                        "peak_rss_mb": round(stats["peak_rss_mb"], 1),
                        "mining_s": round(stats["seconds"], 2),
                        "wall_s": round(wall, 1),
                    }
                )
                print(rows[-1], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_candidates_memory.json").write_text(json.dumps(rows, indent=2) + "\n")
    md = [
        f"Mining the top 100 candidates of SciFact train queries (positives removed), query batches of 64, "
        f"{os.cpu_count()} CPU cores; peak RSS of a fresh process each. The dense retriever reads corpus "
        "embeddings from the irdistill cache. Produced by `python benchmarks/bench_candidates_memory.py`.",
        "",
        "| retriever | queries | run lines | peak RSS MiB | mining s |",
        "|---|---|---|---|---|",
    ]
    md += [
        f"| {r['retriever']} | {r['queries']} | {r['run_lines']} | {r['peak_rss_mb']:.0f} | {r['mining_s']:.1f} |"
        for r in rows
    ]
    (RESULTS / "bench_candidates_memory.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
