"""Encoding speed of a static-embedding student against the transformer it was distilled from.

Each measurement is a fresh process that loads one model and encodes ``--docs`` SciFact passages
(title + abstract) and every SciFact test query, after one untimed warm-up batch; the models
alternate within each repeat, so a slow spell of the machine hits both. The table gives each
model's median documents/s and queries/s, and the ratio of the medians to the transformer's.
Transformers cut at ``--max-seq-length`` tokens (the evaluation's 256); a static model reads every
token of a text. Resumable: each finished process is a row of the JSON.

    python benchmarks/bench_static.py --static runs/static/minilm-scifact [--repeats 3]
Writes eval/results/bench_static.{json,md}.
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


def child(model: str, docs: int, max_seq_length: int, batch_size: int) -> dict[str, Any]:
    import time

    import torch

    from irdistill.data import load_collection
    from irdistill.encoding import load_sentence_transformer, set_max_seq_length
    from irdistill.paths import resolve_model

    test = load_collection("beir/scifact", split="test")
    passages = test.doc_texts()[:docs]
    queries = test.query_texts()
    encoder = load_sentence_transformer(str(resolve_model(model)), device="cpu")
    set_max_seq_length(encoder, max_seq_length)
    with torch.inference_mode():
        encoder.encode(passages[:batch_size], batch_size=batch_size)  # warm-up, untimed
        start = time.perf_counter()
        encoder.encode(passages, batch_size=batch_size)
        doc_seconds = time.perf_counter() - start
        start = time.perf_counter()
        encoder.encode(queries, batch_size=batch_size)
        query_seconds = time.perf_counter() - start
    return {
        "docs_per_s": len(passages) / doc_seconds,
        "queries_per_s": len(queries) / query_seconds,
        "dims": int(encoder.get_embedding_dimension()),
        "threads": torch.get_num_threads(),
    }


def table(rows: list[dict[str, Any]], models: dict[str, str], args: argparse.Namespace) -> tuple[str, dict]:
    summary: dict[str, Any] = {}
    for name in models:
        mine = [r for r in rows if r["model"] == name]
        if not mine:
            continue
        summary[name] = {
            "model": models[name],
            "runs": len(mine),
            "docs_per_s": statistics.median(r["docs_per_s"] for r in mine),
            "queries_per_s": statistics.median(r["queries_per_s"] for r in mine),
            "bytes_per_doc": 4 * mine[0]["dims"],
            "all_docs_per_s": [round(r["docs_per_s"], 1) for r in mine],
        }
    base = summary.get("transformer")
    lines = [
        "# Static student against its transformer: encoding speed on this CPU",
        "",
        f"`python benchmarks/bench_static.py --static {models['static']} --repeats {args.repeats}`: fresh processes, "
        f"the models alternating within each repeat; {args.docs} SciFact passages and the 300 test queries, batch "
        f"{args.batch_size}, one untimed warm-up batch; the transformer cut at {args.max_seq_length} tokens. "
        f"{os.cpu_count()} CPU cores. Median over the runs.",
        "",
        "| model | path | runs | docs/s | queries/s | docs/s vs transformer | bytes a document (fp32) | all docs/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in summary.items():
        ratio = f"{row['docs_per_s'] / base['docs_per_s']:.1f}x" if base else "-"
        row["docs_ratio"] = row["docs_per_s"] / base["docs_per_s"] if base else None
        lines.append(
            f"| {name} | `{row['model']}` | {row['runs']} | {row['docs_per_s']:.1f} | {row['queries_per_s']:.1f} | "
            f"{ratio} | {row['bytes_per_doc']} | {', '.join(map(str, row['all_docs_per_s']))} |"
        )
    return "\n".join(lines) + "\n", summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--static", help="the static student (irdistill static-student --out); required")
    parser.add_argument("--transformer", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.docs, args.max_seq_length, args.batch_size)))
        return
    if not args.static:
        parser.error("--static is required")
    models = {"transformer": args.transformer, "static": args.static}
    path = Path(args.results) / "bench_static.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    rows = done.get("rows", [])
    for repeat in range(args.repeats):
        for name, model in models.items():
            if any(r["model"] == name and r["repeat"] == repeat for r in rows):
                continue
            command = [sys.executable, __file__, "--child", model, "--docs", str(args.docs)]
            command += ["--max-seq-length", str(args.max_seq_length), "--batch-size", str(args.batch_size)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            rows.append({"model": name, "repeat": repeat, **json.loads(output.strip().splitlines()[-1])})
            path.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    markdown, summary = table(rows, models, args)
    path.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1) + "\n")
    (Path(args.results) / "bench_static.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
