"""The newcomer cases of issue 10, run against one source tree: exit status and the line printed.

Each case is a fresh ``python -m irdistill.cli.main`` process on small inputs this script
writes (a tiny BEIR folder, bad on purpose) or on SciFact and all-MiniLM-L6-v2 under
``$IRDISTILL_DATA`` / ``$IRDISTILL_MODELS``. ``--src`` puts another checkout first on the
import path (an editable install of this one is masked), so the same cases run on an older
commit for a before / after table::

    git worktree add /tmp/before bf6efbb
    python benchmarks/newcomer_cases.py --src /tmp/before --label before
    python benchmarks/newcomer_cases.py --label after

Rows go to ``eval/results/newcomer_cases.{json,md}`` keyed by case and label.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SITE = """
import os, sys
if os.environ.get("CASE_SRC"):  # mask the editable install of the other checkout
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
BLOCKED = set(filter(None, os.environ.get("CASE_BLOCK", "").split(",")))
for name in BLOCKED:  # as if never installed: no module, no distribution metadata
    sys.modules[name] = None  # `import name` fails, importlib.util.find_spec(name) is None
if BLOCKED:
    import importlib.metadata as md
    _version, _distribution = md.version, md.distribution

    def version(name):
        if name in BLOCKED:
            raise md.PackageNotFoundError(name)
        return _version(name)

    def distribution(name):
        if name in BLOCKED:
            raise md.PackageNotFoundError(name)
        return _distribution(name)

    md.version, md.distribution = version, distribution
"""

DOCS = [
    ("d1", "Protein expression", "High protein expression in tumor cells."),
    ("d2", "Vaccine trial", "The vaccine trial shows an immune response."),
    ("d3", "", "Gene expression levels decrease in mouse brain cells."),
    ("d4", "Drug dose", "A low drug dose has no effect on blood pressure."),
]
QUERIES = [("q1", "protein expression"), ("q2", "vaccine immune response"), ("q3", "brain genes")]


def write_folder(folder: Path, qrels: list[tuple[str, str, int]], corpus_bytes: bytes | None = None) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    corpus = "".join(json.dumps({"_id": d, "title": t, "text": x}) + "\n" for d, t, x in DOCS).encode()
    (folder / "corpus.jsonl").write_bytes(corpus_bytes if corpus_bytes is not None else corpus)
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES))
    rows = "".join(f"{q}\t{d}\t{r}\n" for q, d, r in qrels)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


GOOD_QRELS = [("q1", "d1", 1), ("q2", "d2", 1), ("q3", "d3", 1)]


def cases(tmp: Path) -> dict[str, tuple[list[str], dict[str, str], str]]:
    """name -> (irdistill arguments, extra environment, what the case is)."""
    latin1 = "".join(json.dumps({"_id": d, "title": t, "text": x}) + "\n" for d, t, x in DOCS)
    latin1_bytes = latin1.replace("Gene expression", "Gène expression").encode("latin-1")
    folders = {
        "not_utf8": write_folder(tmp / "not_utf8", GOOD_QRELS, latin1_bytes),
        "missing_doc": write_folder(tmp / "missing_doc", [*GOOD_QRELS, ("q1", "d99", 1)]),
        "missing_query": write_folder(tmp / "missing_query", [*GOOD_QRELS, ("q9", "d1", 1)]),
        "wrong_ids": write_folder(tmp / "wrong_ids", [("q1", "1", 1), ("q2", "2", 1), ("q3", "3", 1)]),
        "good": write_folder(tmp / "good", GOOD_QRELS),
    }
    bm25 = ["evaluate", "--model", "bm25", "-k", "4", "--metrics", "ndcg@10"]
    return {
        "accelerate missing (train)": (
            [
                "train",
                "--student",
                "sentence-transformers/all-MiniLM-L6-v2",
                "--dataset",
                "beir/scifact/train",
                "--loss",
                "infonce",
                "--epochs",
                "1",
                "--out",
                str(tmp / "student"),
            ],
            {"CASE_BLOCK": "accelerate"},
            "the trainer's dependency is not installed",
        ),
        "corpus not UTF-8": (bm25 + ["--dataset", str(folders["not_utf8"])], {}, "a latin-1 byte on line 3"),
        "judged document missing from corpus": (
            bm25 + ["--dataset", str(folders["missing_doc"])],
            {},
            "1 of 4 judged documents absent",
        ),
        "judged query missing from queries": (
            bm25 + ["--dataset", str(folders["missing_query"])],
            {},
            "1 of 4 judged queries absent",
        ),
        "judged ids match nothing": (
            bm25 + ["--dataset", str(folders["wrong_ids"])],
            {},
            "a wrong id column: no judged document exists",
        ),
        "model path does not exist": (
            ["evaluate", "--model", str(tmp / "no-such-model"), "--dataset", "beir/scifact/test"],
            {},
            "checked before the collection is loaded?",
        ),
        "output file mode": (
            bm25 + ["--dataset", str(folders["good"]), "--out", str(tmp / "out")],
            {},
            "mode of metrics.json under umask 022",
        ),
    }


def run_case(args: list[str], env: dict[str, str], src: str | None, site: Path, out_dir: Path) -> dict:
    environ = dict(
        os.environ,
        **env,
        PYTHONPATH=os.pathsep.join(filter(None, [str(site), src])),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    if src:
        environ["CASE_SRC"] = src
    start = time.perf_counter()
    # cwd outside any checkout: `python -m` puts the working folder first on the import path
    proc = subprocess.run(
        [sys.executable, "-m", "irdistill.cli.main", *args],
        env=environ,
        cwd=site,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - start
    err = [line for line in proc.stderr.splitlines() if line.strip() and "%|" not in line]
    shown = [line for line in err if "irdistill" in line and ("error" in line or "WARNING" in line)]
    last = (shown or err or [""])[-1]
    row = {
        "exit": proc.returncode,
        "seconds": round(seconds, 1),
        "line": last[-300:],
        "traceback": "Traceback (most recent call last)" in proc.stderr,
    }
    metrics = out_dir / "metrics.json"
    if metrics.is_file():
        row["file_mode"] = oct(stat.S_IMODE(metrics.stat().st_mode))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", help="another checkout to run (default: this one)")
    parser.add_argument("--label", required=True, help="column label, e.g. before / after")
    parser.add_argument("--only", help="run only the cases whose name contains this")
    args = parser.parse_args()
    from irdistill.paths import update_json_table

    os.umask(0o022)
    results = ROOT / "eval" / "results" / "newcomer_cases.json"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        site = tmp / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SITE)
        for name, (cli_args, env, what) in cases(tmp).items():
            if args.only and args.only not in name:
                continue
            shutil.rmtree(tmp / "out", ignore_errors=True)
            row = run_case(cli_args, env, args.src, site, tmp / "out")
            row["what"] = what
            print(f"{name} [{args.label}]: {json.dumps(row)}", flush=True)
            table = update_json_table(results, f"{name} | {args.label}", row)
    write_markdown(table)


def write_markdown(table: dict) -> None:
    lines = [
        "# Issue 10 newcomer cases, before and after",
        "",
        "`python benchmarks/newcomer_cases.py --label after` (and `--src CHECKOUT --label before`): "
        "each case a fresh `irdistill` process; `line` is the error or warning line it printed "
        "(paths shortened to their last part).",
        "",
        "| case | version | exit | traceback | seconds | line printed | file mode |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, row in sorted(table.items()):
        name, label = key.split(" | ")
        line = " ".join(p.rsplit("/", 1)[-1] if "/" in p else p for p in row["line"].split(" "))
        lines.append(
            f"| {name} | {label} | {row['exit']} | {'yes' if row['traceback'] else 'no'} | "
            f"{row['seconds']} | `{line.replace('|', '/')}` | {row.get('file_mode', '-')} |"
        )
    (ROOT / "eval" / "results" / "newcomer_cases.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
