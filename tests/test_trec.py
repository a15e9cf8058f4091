"""TREC run and qrels files: round trips, errors with file:line, atomic writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from irdistill.data import read_run, read_trec_qrels, write_run, write_trec_qrels
from irdistill.errors import InputError

RUN = {
    "q1": {"d1": 0.5, "d2": 2.25, "d3": -1.0},
    "q2": {"b": 1.0, "c": 3.0, "a": 1.0},  # a and b tie
}


def at(path: Path, line: int) -> str:
    return re.escape(f"{path}:{line}:")


def test_run_round_trip_ranks_by_score(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    write_run(RUN, path, tag="my run")
    assert path.read_text().splitlines() == [
        "q1 Q0 d2 1 2.250000 my_run",
        "q1 Q0 d1 2 0.500000 my_run",
        "q1 Q0 d3 3 -1.000000 my_run",
        "q2 Q0 c 1 3.000000 my_run",
        "q2 Q0 a 2 1.000000 my_run",  # ties: by document id
        "q2 Q0 b 3 1.000000 my_run",
    ]
    assert read_run(path) == RUN


def test_run_ties_are_written_in_the_same_order_whatever_the_dict_order(tmp_path: Path) -> None:
    forward = {"q": {f"d{i}": float(i % 3) for i in range(12)}}
    backward = {"q": dict(reversed(list(forward["q"].items())))}
    write_run(forward, tmp_path / "a.trec")
    write_run(backward, tmp_path / "b.trec")
    text = (tmp_path / "a.trec").read_text()
    assert text == (tmp_path / "b.trec").read_text()
    docs = [line.split()[2] for line in text.splitlines()]
    assert docs[:4] == ["d11", "d2", "d5", "d8"]  # score 2, then ids as strings
    ranks = [int(line.split()[3]) for line in text.splitlines()]
    assert ranks == list(range(1, 13))


def test_run_empty_tag_and_extra_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    write_run({"q1": {"d1": 1.0}}, path, tag="")
    assert path.read_text() == "q1 Q0 d1 1 1.000000 irdistill\n"
    path.write_text("q1\tQ0\td1\t1\t1.5\tx\n\n  q1  Q0 d2 2 0.25 x  \n")
    assert read_run(path) == {"q1": {"d1": 1.5, "d2": 0.25}}


def test_qrels_round_trip(tmp_path: Path) -> None:
    qrels = {"q1": {"d1": 2, "d7": 0}, "q2": {"d3": 1}}
    path = tmp_path / "qrels.txt"
    write_trec_qrels(qrels, path)
    assert path.read_text() == "q1 0 d1 2\nq1 0 d7 0\nq2 0 d3 1\n"
    assert read_trec_qrels(path) == qrels


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (
            "q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 0.5\n",
            2,
            "expected 6 fields 'qid Q0 doc_id rank score tag', got 5",
        ),
        ("q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 0.5 t extra\n", 2, "expected 6 fields .*got 7"),
        ("q1 Q0 d1 1 1.0 t\n\nq1 Q0 d2 2 high t\n", 3, "score 'high' is not a number"),
        (
            "q1 Q0 d1 1 1.0 t\nq2 Q0 d1 1 1.0 t\nq1 Q0 d1 2 0.5 t\n",
            3,
            "document 'd1' listed twice for query 'q1'",
        ),
    ],
)
def test_run_errors_name_file_and_line(tmp_path: Path, content: str, line: int, message: str) -> None:
    path = tmp_path / "bad.trec"
    path.write_text(content)
    with pytest.raises(InputError, match=at(path, line) + " " + message):
        read_run(path)


def test_run_missing_or_empty_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.trec"
    with pytest.raises(InputError, match=re.escape(f"{missing}: no such file")):
        read_run(missing)
    empty = tmp_path / "empty.trec"
    empty.write_text("\n \n")
    with pytest.raises(InputError, match=re.escape(f"{empty}: the run file is empty")):
        read_run(empty)


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("q1 0 d1 1\nq1 0 d2\n", 2, "expected 4 fields 'qid 0 doc_id relevance', got 3"),
        ("q1 0 d1 1\nq1 0 d2 1 x\n", 2, "expected 4 fields .*got 5"),
        ("q1 0 d1 1\n\nq1 0 d2 0.5\n", 3, "relevance '0.5' is not an integer"),
    ],
)
def test_qrels_errors_name_file_and_line(tmp_path: Path, content: str, line: int, message: str) -> None:
    path = tmp_path / "bad.qrels"
    path.write_text(content)
    with pytest.raises(InputError, match=at(path, line) + " " + message):
        read_trec_qrels(path)


def test_write_run_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "out" / "run.trec"  # the folder is created
    write_run(RUN, path)
    write_run(RUN, path)  # overwriting is fine too
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.trec"]
    write_trec_qrels({"q1": {"d1": 1}}, tmp_path / "out" / "qrels.txt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["qrels.txt", "run.trec"]


class _Unprintable(float):
    """A score that sorts like a float but cannot be formatted: the write fails midway."""

    def __format__(self, spec: str) -> str:
        raise RuntimeError("disk full")


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    write_run({"q0": {"old": 1.0}}, path)
    before = path.read_text()
    # q1 is written to the temporary file before q2's score fails to format
    broken = {"q1": {"d1": 2.0, "d2": 1.0}, "q2": {"d3": _Unprintable(0.5)}}
    with pytest.raises(RuntimeError, match="disk full"):
        write_run(broken, path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.trec"]


def test_failed_write_creates_no_file(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    with pytest.raises(TypeError):
        write_run({"q1": {"d1": 1.0}, "q2": {"d2": None}}, path)  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []
