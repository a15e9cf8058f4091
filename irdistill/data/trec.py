"""TREC run and qrels files.

Run lines: ``qid Q0 doc_id rank score tag``; qrels lines: ``qid 0 doc_id relevance``
(whitespace separated). Writes are atomic.
"""

from __future__ import annotations

import os

from irdistill.data.collection import Qrels, Run
from irdistill.data.lines import read_lines
from irdistill.errors import InputError
from irdistill.paths import atomic_path


def _open_lines(path: str | os.PathLike[str]):
    for number, line in read_lines(path):
        if line.strip():
            yield number, line.split()


def read_run(path: str | os.PathLike[str]) -> Run:
    """Read a TREC run file into ``qid -> {doc_id: score}``."""
    run: Run = {}
    for number, parts in _open_lines(path):
        if len(parts) != 6:
            raise InputError(f"{path}:{number}: expected 6 fields 'qid Q0 doc_id rank score tag', got {len(parts)}")
        qid, _, doc_id, _, score, _ = parts
        try:
            value = float(score)
        except ValueError:
            raise InputError(f"{path}:{number}: score {score!r} is not a number") from None
        if doc_id in run.setdefault(qid, {}):
            raise InputError(f"{path}:{number}: document {doc_id!r} listed twice for query {qid!r}")
        run[qid][doc_id] = value
    if not run:
        raise InputError(f"{path}: the run file is empty")
    return run


def write_run(run: Run, path: str | os.PathLike[str], tag: str = "irdistill") -> None:
    """Write ``run`` as a TREC run file, each query's documents by descending score."""
    tag = tag.replace(" ", "_") or "irdistill"
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as out:
        for qid, docs in run.items():
            ranked = sorted(docs.items(), key=lambda item: (-item[1], item[0]))
            for rank, (doc_id, score) in enumerate(ranked, start=1):
                out.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n")


def read_trec_qrels(path: str | os.PathLike[str]) -> Qrels:
    """Read TREC qrels (``qid 0 doc_id relevance``)."""
    qrels: Qrels = {}
    for number, parts in _open_lines(path):
        if len(parts) != 4:
            raise InputError(f"{path}:{number}: expected 4 fields 'qid 0 doc_id relevance', got {len(parts)}")
        qid, _, doc_id, rel = parts
        try:
            qrels.setdefault(qid, {})[doc_id] = int(rel)
        except ValueError:
            raise InputError(f"{path}:{number}: relevance {rel!r} is not an integer") from None
    return qrels


def write_trec_qrels(qrels: Qrels, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as out:
        for qid, docs in qrels.items():
            for doc_id, rel in docs.items():
                out.write(f"{qid} 0 {doc_id} {rel}\n")
