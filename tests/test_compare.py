"""Comparing runs: scores, paired tests, the markdown table, the written files, errors."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from conftest import write_beir

from irdistill.data import Collection, load_collection, write_run
from irdistill.data.collection import Run
from irdistill.errors import InputError
from irdistill.evaluation import (
    Comparison,
    RunEntry,
    compare_runs,
    load_run_entry,
    write_comparison,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METRICS = ["ndcg@10", "mrr@10", "recall@100"]

# the tiny collection's test qrels: q1 {d1: 1, d8: 1}, q2 {d2: 2}, q3 {d3: 1, d7: 1}
PERFECT = {"q1": {"d1": 2.0, "d8": 1.0}, "q2": {"d2": 1.0}, "q3": {"d3": 2.0, "d7": 1.0}}
WEAK = {"q1": {"d2": 3.0, "d1": 2.0}, "q2": {"d1": 1.0}, "q3": {"d7": 2.0, "d3": 1.0}}
# WEAK: q1 finds d1 at rank 2 only: nDCG = (1/log2 3) / (1 + 1/log2 3), RR 1/2, recall 1/2;
#       q2 finds nothing relevant: 0; q3 is perfect: 1
WEAK_Q1_NDCG = (1 / math.log2(3)) / (1 + 1 / math.log2(3))


@pytest.fixture
def tiny(beir_dir: Path) -> Collection:
    return load_collection(beir_dir)


def synthetic(tmp_path: Path, n: int = 30) -> Collection:
    """n queries, each with one relevant document d<i>, among 2n documents."""
    docs = {f"d{i}": ("", f"document number {i}") for i in range(2 * n)}
    queries = {f"q{i}": f"query number {i}" for i in range(n)}
    qrels = {"test": [(f"q{i}", f"d{i}", 1) for i in range(n)]}
    return load_collection(write_beir(tmp_path / "synthetic", docs=docs, queries=queries, qrels=qrels))


def ranked_run(n: int, rank_of_relevant) -> Run:
    """Each query q<i> ranks its relevant d<i> at ``rank_of_relevant(i)`` among 20 documents."""
    run: Run = {}
    for i in range(n):
        others = [f"d{(i + j) % (2 * n)}" for j in range(1, 20)]
        rank = rank_of_relevant(i)
        ranking = others[: rank - 1] + [f"d{i}"] + others[rank - 1 :]
        run[f"q{i}"] = {doc: 100.0 - position for position, doc in enumerate(ranking)}
    return run


@pytest.fixture
def three_runs(tmp_path: Path) -> tuple[Collection, list[RunEntry]]:
    collection = synthetic(tmp_path)
    n = len(collection.queries)
    good = ranked_run(n, lambda i: 2 if i % 7 == 0 else 1)
    bad = ranked_run(n, lambda i: 3 + i % 5)
    # the same ranks as bad, shifted by one query: the same mean, so no difference at all
    twin = ranked_run(n, lambda i: 3 + (i + 1) % 5)
    return collection, [RunEntry("good", good), RunEntry("bad", bad), RunEntry("twin", twin)]


def test_scores_on_the_tiny_collection(tiny: Collection) -> None:
    comparison = compare_runs(tiny, [RunEntry("perfect", PERFECT), RunEntry("weak", WEAK)], METRICS)
    assert comparison.metrics == METRICS
    assert comparison.scores["perfect"] == pytest.approx({"ndcg@10": 1.0, "mrr@10": 1.0, "recall@100": 1.0})
    assert comparison.scores["weak"] == pytest.approx(
        {
            "ndcg@10": (WEAK_Q1_NDCG + 0 + 1) / 3,
            "mrr@10": (1 / 2 + 0 + 1) / 3,
            "recall@100": (1 / 2 + 0 + 1) / 3,
        }
    )
    assert comparison.latency_ms == {"perfect": None, "weak": None}
    # a p-value for every pair and metric, in both directions
    assert {n: set(o) for n, o in comparison.p_values.items()} == {
        "perfect": {"weak"},
        "weak": {"perfect"},
    }
    for name, other in (("perfect", "weak"), ("weak", "perfect")):
        assert set(comparison.p_values[name][other]) == set(METRICS)
        assert all(isinstance(p, float) for p in comparison.p_values[name][other].values())
    # 3 queries are too few for significance: nothing is marked
    assert "(" not in "".join(table_rows(comparison.to_markdown())["perfect"])
    assert (comparison.stat_test, comparison.max_p) == ("student", 0.05)


@pytest.mark.parametrize("stat_test", ["student", "fisher", "tukey"])
def test_p_values_for_every_pair(three_runs: tuple[Collection, list[RunEntry]], stat_test: str) -> None:
    collection, entries = three_runs
    comparison = compare_runs(collection, entries, ["ndcg@10", "mrr@10"], stat_test=stat_test)
    names = ["good", "bad", "twin"]
    assert list(comparison.p_values) == names
    for name in names:
        assert set(comparison.p_values[name]) == set(names) - {name}
        for other in comparison.p_values[name]:
            for metric in ["ndcg@10", "mrr@10"]:
                p = comparison.p_values[name][other][metric]
                assert 0.0 <= p <= 1.0
                assert p == comparison.p_values[other][name][metric]  # the tests are symmetric
    assert comparison.p_values["good"]["bad"]["ndcg@10"] < 0.01
    assert comparison.p_values["good"]["twin"]["mrr@10"] < 0.01
    assert comparison.p_values["bad"]["twin"]["ndcg@10"] > 0.5
    assert comparison.scores["bad"] == pytest.approx(comparison.scores["twin"])
    assert comparison.scores["good"]["ndcg@10"] > comparison.scores["bad"]["ndcg@10"] + 0.3


def table_rows(markdown: str) -> dict[str, list[str]]:
    """run name -> its cells (letter, name, metrics..., latency)."""
    rows = {}
    for line in markdown.splitlines()[2:]:
        if line.startswith("| "):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[1]] = cells
    return rows


def test_markdown_marks_the_significant_win(three_runs: tuple[Collection, list[RunEntry]]) -> None:
    collection, entries = three_runs
    comparison = compare_runs(collection, entries, ["ndcg@10", "mrr@10"])
    markdown = comparison.to_markdown()
    assert markdown.splitlines()[0] == "| | run | ndcg@10 | mrr@10 | latency ms/query |"
    rows = table_rows(markdown)
    assert rows["good"][:2] == ["a", "good"]
    assert rows["good"][2] == f"{comparison.scores['good']['ndcg@10']:.4f} (b,c)"
    assert rows["good"][3].endswith(" (b,c)")
    # the losers beat nobody, and bad vs twin is no significant difference
    for name in ("bad", "twin"):
        assert "(" not in "".join(rows[name])
    assert "p < 0.05 (student paired test, ranx)" in markdown

    # the same p-values against a threshold below them: nothing is marked
    smallest = min(comparison.p_values["good"][o][m] for o in ("bad", "twin") for m in ("ndcg@10", "mrr@10"))
    comparison.max_p = smallest
    assert "(b" not in comparison.to_markdown()


def hand_made(p_value: float, max_p: float = 0.05) -> Comparison:
    return Comparison(
        metrics=["ndcg@10"],
        stat_test="student",
        max_p=max_p,
        scores={"x": {"ndcg@10": 0.5}, "y": {"ndcg@10": 0.4}},
        p_values={"x": {"y": {"ndcg@10": p_value}}, "y": {"x": {"ndcg@10": p_value}}},
        latency_ms={"x": 1.234, "y": None},
    )


@pytest.mark.parametrize(
    ("p_value", "max_p", "marked"),
    [
        (0.04, 0.05, True),
        (0.05, 0.05, False),
        (0.06, 0.05, False),
        (0.009, 0.01, True),
        (math.nan, 0.05, False),
    ],
)
def test_markdown_threshold_is_strict(p_value: float, max_p: float, marked: bool) -> None:
    rows = table_rows(hand_made(p_value, max_p).to_markdown())
    assert rows["x"][2] == ("0.5000 (b)" if marked else "0.5000")
    assert rows["y"][2] == "0.4000"  # the lower score is never marked, whatever the p-value
    assert rows["x"][-1] == "1.23"
    assert rows["y"][-1] == ""


@pytest.mark.parametrize("latency", [True, False])
def test_write_comparison_files(three_runs: tuple[Collection, list[RunEntry]], tmp_path: Path, latency: bool) -> None:
    collection, entries = three_runs
    if latency:
        for entry, ms in zip(entries, (2.0, 0.5, 40.0), strict=True):
            entry.latency_ms = ms
    comparison = compare_runs(collection, entries, ["ndcg@10", "recall@100"])
    out = tmp_path / "report" / "nested"
    write_comparison(comparison, out)
    assert sorted(p.name for p in out.iterdir()) == ["compare.json", "compare.md", "compare.png"]

    assert (out / "compare.md").read_text() == comparison.to_markdown()

    def no_constants(name: str) -> None:
        raise AssertionError(f"compare.json holds {name}, which is not JSON")

    data = json.loads((out / "compare.json").read_text(), parse_constant=no_constants)
    assert data["metrics"] == ["ndcg@10", "recall@100"]
    assert data["stat_test"] == "student"
    assert data["scores"]["good"]["ndcg@10"] == pytest.approx(comparison.scores["good"]["ndcg@10"])
    assert data["p_values"]["good"]["bad"]["ndcg@10"] == pytest.approx(comparison.p_values["good"]["bad"]["ndcg@10"])
    # recall@100 is 1 for every run: the t-test has no variance and its NaN p-value becomes null
    assert data["p_values"]["good"]["bad"]["recall@100"] is None
    assert data["latency_ms"] == (
        {"good": 2.0, "bad": 0.5, "twin": 40.0} if latency else {"good": None, "bad": None, "twin": None}
    )

    png = (out / "compare.png").read_bytes()
    assert png[:8] == PNG_SIGNATURE
    assert len(png) > 1000


def test_load_run_entry_from_an_evaluate_folder(tmp_path: Path) -> None:
    folder = tmp_path / "minilm"
    write_run(PERFECT, folder / "run.trec")
    (folder / "perf.json").write_text(json.dumps({"latency_ms_per_query": 3.5, "qps": 285.7}))
    entry = load_run_entry(folder)
    assert (entry.name, entry.latency_ms) == ("minilm", 3.5)
    assert entry.run == PERFECT
    assert load_run_entry(folder, name="renamed").name == "renamed"

    (folder / "perf.json").unlink()  # the latency is optional
    assert load_run_entry(folder).latency_ms is None

    write_run(WEAK, tmp_path / "weak.trec")
    plain = load_run_entry(tmp_path / "weak.trec")
    assert (plain.name, plain.latency_ms, plain.run) == ("weak", None, WEAK)


def test_load_run_entry_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=re.escape(f"{empty}: folder has no run.trec")):
        load_run_entry(empty)

    folder = tmp_path / "run"
    write_run(PERFECT, folder / "run.trec")
    (folder / "perf.json").write_text(json.dumps({"qps": 12.0}))
    with pytest.raises(InputError, match=re.escape(str(folder / "perf.json")) + ": expected a JSON object"):
        load_run_entry(folder)
    (folder / "perf.json").write_text("{not json")
    with pytest.raises(InputError, match=re.escape(str(folder / "perf.json"))):
        load_run_entry(folder)

    with pytest.raises(InputError, match="no such file"):
        load_run_entry(tmp_path / "absent.trec")


def test_compare_errors(tiny: Collection) -> None:
    perfect, weak = RunEntry("perfect", PERFECT), RunEntry("weak", WEAK)
    with pytest.raises(InputError, match="at least two runs"):
        compare_runs(tiny, [perfect])
    with pytest.raises(InputError, match="run names must differ.*'perfect', 'perfect'"):
        compare_runs(tiny, [perfect, RunEntry("perfect", WEAK)])
    stray = RunEntry("stray", {**WEAK, "q77": {"d1": 1.0}})
    with pytest.raises(InputError, match="run stray: query id 'q77' is not in tiny/test"):
        compare_runs(tiny, [perfect, stray])
    # q5 exists in queries.jsonl but is not judged in test, so it is not a query of the split
    unjudged = RunEntry("unjudged", {"q5": {"d5": 1.0}})
    with pytest.raises(InputError, match="run unjudged: query id 'q5' is not in tiny/test"):
        compare_runs(tiny, [perfect, unjudged])
    with pytest.raises(InputError, match="unknown stat_test 'wilcoxon'; known: student, fisher, tukey"):
        compare_runs(tiny, [perfect, weak], stat_test="wilcoxon")
    with pytest.raises(InputError, match="metric 'ndcg@ten': the cutoff"):
        compare_runs(tiny, [perfect, weak], ["ndcg@ten"])


def test_compare_run_without_a_judged_query() -> None:
    from irdistill.data import Document

    collection = Collection(
        corpus={"d1": Document("a"), "d2": Document("b")},
        queries={"q1": "judged", "q2": "not judged"},
        qrels={"q1": {"d1": 1}},
        name="manual",
        split="test",
    )
    judged = RunEntry("judged", {"q1": {"d1": 1.0}})
    other = RunEntry("other", {"q2": {"d1": 1.0}})
    with pytest.raises(InputError, match="run other has no result for any judged query of manual/test"):
        compare_runs(collection, [judged, other])


def test_compare_run_with_only_empty_results() -> None:
    from irdistill.data import Document

    collection = Collection(
        corpus={"d1": Document("a")}, queries={"q1": "judged"}, qrels={"q1": {"d1": 1}}, name="manual", split="test"
    )
    with pytest.raises(InputError, match="run empty has no result for any judged query"):
        compare_runs(collection, [RunEntry("full", {"q1": {"d1": 1.0}}), RunEntry("empty", {"q1": {}})])


def test_write_comparison_json_is_strict_with_infinite_latency(tmp_path: Path) -> None:
    import json

    from irdistill.evaluation.compare import Comparison, write_comparison

    comparison = Comparison(
        metrics=["ndcg@10"],
        stat_test="student",
        max_p=0.05,
        scores={"a": {"ndcg@10": 0.5}, "b": {"ndcg@10": 0.5}},
        p_values={"a": {"b": {"ndcg@10": float("nan")}}, "b": {"a": {"ndcg@10": float("nan")}}},
        latency_ms={"a": float("-inf"), "b": 1.0},
    )
    write_comparison(comparison, tmp_path)
    data = json.loads((tmp_path / "compare.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert data["latency_ms"]["a"] is None and data["p_values"]["a"]["b"]["ndcg@10"] is None


def test_compare_over_seeds_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two methods, three seeds each, written as TREC files: a name repeated per seed makes the
    CLI compare over queries and seeds; the better method's gain and its CI come out."""
    from irdistill.cli.main import main

    collection = synthetic(tmp_path, n=40)
    paths = []
    for method, ranks in (("good", (1, 1, 2)), ("poor", (3, 4, 3))):
        for seed, shift in enumerate(ranks, start=1):
            run = ranked_run(40, lambda i, shift=shift: shift + (i % 2))
            path = tmp_path / f"{method}-s{seed}.trec"
            write_run(run, path)
            paths.append(str(path))
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            *paths,
            "--names",
            *(["good"] * 3 + ["poor"] * 3),
            "--dataset",
            str(tmp_path / "synthetic"),
            "--metrics",
            "ndcg@10,mrr@10",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| good | 3 |" in printed and "| good vs poor |" in printed
    result = json.loads((out / "compare.json").read_text())
    pair = result["pairs"]["good vs poor"]["ndcg@10"]
    assert pair["diff"] > 0.1 and pair["seeds"] == [0, 1, 2] and pair["p_holm"] == pair["p"]
    assert len(result["means"]["good"]["mrr@10"]) == 3
    with pytest.raises(InputError, match="has one run"):
        from irdistill.evaluation import compare_seeded

        compare_seeded(collection, {"a": [RunEntry("a", {})], "b": [RunEntry("b", {}), RunEntry("b", {})]})
