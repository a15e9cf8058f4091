"""Collections: BEIR and MS MARCO folders, their error messages, data set resolution."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import DOCS, QUERIES, write_beir

import irdistill.data.irds
from irdistill.data import (
    Collection,
    Document,
    load_beir_folder,
    load_collection,
    load_msmarco_folder,
    parse_dataset_spec,
    read_beir_qrels,
    read_corpus,
    read_queries,
)
from irdistill.errors import InputError


def at(path: Path, line: int | None = None) -> str:
    """A regex matching ``path:line`` at the start of an error message."""
    return re.escape(f"{path}:{line}" if line is not None else str(path))


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def corpus_lines() -> list[str]:
    return [json.dumps({"_id": d, "title": t, "text": x}) for d, (t, x) in DOCS.items()]


def query_lines() -> list[str]:
    return [json.dumps({"_id": q, "text": t}) for q, t in QUERIES.items()]


@pytest.fixture
def no_ir_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if resolution falls through to ir_datasets."""

    def fail(dataset_id: str, *args, **kwargs):
        raise AssertionError(f"ir_datasets must not be called (asked for {dataset_id!r})")

    monkeypatch.setattr(irdistill.data.irds, "load_ir_datasets", fail)


# --- BEIR folders ------------------------------------------------------------------------


def test_beir_folder_keeps_the_judged_queries_of_the_split(beir_dir: Path) -> None:
    test = load_collection(beir_dir)
    assert (test.name, test.split) == ("tiny", "test")
    assert test.query_ids == ["q1", "q2", "q3"]  # file order; q4 (train) and q5 (unjudged) dropped
    assert test.queries["q2"] == QUERIES["q2"]
    assert test.doc_ids == list(DOCS)
    assert test.qrels == {"q1": {"d1": 1, "d8": 1}, "q2": {"d2": 2}, "q3": {"d3": 1, "d7": 1}}

    train = load_collection(beir_dir, split="train")
    assert train.split == "train"
    assert train.query_ids == ["q4"]
    assert train.qrels == {"q4": {"d4": 1}}
    assert len(train.corpus) == len(DOCS)


def test_beir_titles_are_joined_as_title_space_text(beir_dir: Path) -> None:
    collection = load_beir_folder(beir_dir)
    assert collection.corpus["d1"] == Document(
        text="High protein expression in tumor cells increases cancer risk.",
        title="Protein expression",
    )
    assert collection.corpus["d1"].full_text() == (
        "Protein expression High protein expression in tumor cells increases cancer risk."
    )
    # no title: the text alone, no leading space
    assert collection.corpus["d3"].full_text() == "Gene expression levels decrease in mouse brain cells."
    texts = collection.doc_texts()
    assert len(texts) == len(DOCS)
    assert texts[0].startswith("Protein expression High protein")
    assert collection.query_texts() == [QUERIES["q1"], QUERIES["q2"], QUERIES["q3"]]


def test_subset_filters_queries_docs_and_qrels(beir_dir: Path) -> None:
    collection = load_collection(beir_dir)
    small = collection.subset(query_ids=["q1", "q3"], doc_ids=["d1", "d2", "d3"])
    assert small.query_ids == ["q1", "q3"]
    assert small.doc_ids == ["d1", "d2", "d3"]
    assert small.qrels == {"q1": {"d1": 1}, "q3": {"d3": 1}}  # d8 and d7 are not kept
    assert (small.name, small.split) == (collection.name, collection.split)

    # a query whose judged documents are all dropped keeps its text but loses its qrels entry
    no_judged = collection.subset(query_ids=["q2"], doc_ids=["d1"])
    assert no_judged.query_ids == ["q2"]
    assert no_judged.qrels == {}

    only_docs = collection.subset(doc_ids=["d2"])
    assert only_docs.query_ids == collection.query_ids
    assert only_docs.qrels == {"q2": {"d2": 2}}

    with pytest.raises(InputError, match="query id 'q9'"):
        collection.subset(query_ids=["q9"])
    with pytest.raises(InputError, match="document id 'd99'"):
        collection.subset(doc_ids=["d1", "d99"])


def test_corpus_fingerprint_changes_with_a_text(tmp_path: Path) -> None:
    first = load_beir_folder(write_beir(tmp_path / "a"))
    same = load_beir_folder(write_beir(tmp_path / "b"))
    assert re.fullmatch(r"[0-9a-f]{64}", first.corpus_fingerprint())
    assert first.corpus_fingerprint() == same.corpus_fingerprint()

    changed_text = dict(DOCS, d5=("Virus infection", "Virus infection is decreased."))
    other = load_beir_folder(write_beir(tmp_path / "c", docs=changed_text))
    assert other.corpus_fingerprint() != first.corpus_fingerprint()

    changed_title = dict(DOCS, d5=("Virus", DOCS["d5"][1]))
    titled = load_beir_folder(write_beir(tmp_path / "d", docs=changed_title))
    assert titled.corpus_fingerprint() not in {
        first.corpus_fingerprint(),
        other.corpus_fingerprint(),
    }

    # the same texts under other ids are another corpus
    renamed = {f"x{doc_id}": doc for doc_id, doc in DOCS.items()}
    qrels = {"test": [("q1", "xd1", 1)]}
    moved = load_beir_folder(write_beir(tmp_path / "e", docs=renamed, qrels=qrels))
    assert moved.corpus_fingerprint() != first.corpus_fingerprint()


def test_collection_rejects_an_empty_corpus() -> None:
    with pytest.raises(InputError, match="empty corpus"):
        Collection(corpus={}, queries={"q": "x"}, qrels={"q": {"d": 1}}, name="nothing")


def test_malformed_json_line_names_file_and_line(beir_dir: Path) -> None:
    path = beir_dir / "corpus.jsonl"
    lines = corpus_lines()
    lines[2] = '{"_id": "d3", "text": "unterminated'
    write_jsonl(path, lines)
    with pytest.raises(InputError, match=at(path, 3) + ": not valid JSON"):
        load_collection(beir_dir)


def test_json_line_that_is_not_an_object(beir_dir: Path) -> None:
    path = beir_dir / "queries.jsonl"
    write_jsonl(path, [*query_lines()[:1], '["q2", "text"]', *query_lines()[1:]])
    with pytest.raises(InputError, match=at(path, 2) + ": expected a JSON object, got list"):
        read_queries(path)


def test_missing_id_names_file_and_line(beir_dir: Path) -> None:
    path = beir_dir / "queries.jsonl"
    lines = query_lines()
    lines[1] = json.dumps({"text": "a query without id"})
    write_jsonl(path, lines)
    with pytest.raises(InputError, match=at(path, 2) + ": missing '_id'"):
        load_collection(beir_dir)

    corpus = beir_dir / "corpus.jsonl"
    lines = corpus_lines()
    lines[3] = json.dumps({"_id": " ", "title": "t", "text": "blank id"})
    write_jsonl(corpus, lines)
    with pytest.raises(InputError, match=at(corpus, 4) + ": missing '_id'"):
        read_corpus(corpus)


def test_duplicate_id_names_both_lines(beir_dir: Path) -> None:
    path = beir_dir / "corpus.jsonl"
    write_jsonl(path, [*corpus_lines(), json.dumps({"_id": "d2", "title": "", "text": "again"})])
    with pytest.raises(InputError, match=at(path, 9) + r": duplicate _id 'd2' \(first on line 2\)"):
        load_collection(beir_dir)


def test_document_with_empty_title_and_text(beir_dir: Path) -> None:
    path = beir_dir / "corpus.jsonl"
    lines = corpus_lines()
    lines[4] = json.dumps({"_id": "d5", "title": "  ", "text": ""})
    write_jsonl(path, lines)
    with pytest.raises(InputError, match=at(path, 5) + ": document 'd5' has an empty title and text"):
        load_collection(beir_dir)


def test_document_with_a_title_only_is_kept(beir_dir: Path) -> None:
    path = beir_dir / "corpus.jsonl"
    write_jsonl(path, [*corpus_lines(), json.dumps({"_id": "d9", "title": "Only a title"})])
    corpus = read_corpus(path)
    assert corpus["d9"].full_text() == "Only a title"


def test_query_with_empty_text(beir_dir: Path) -> None:
    path = beir_dir / "queries.jsonl"
    lines = query_lines()
    lines[2] = json.dumps({"_id": "q3", "text": "   "})
    write_jsonl(path, lines)
    with pytest.raises(InputError, match=at(path, 3) + ": query 'q3' has an empty text"):
        load_collection(beir_dir)


def test_empty_jsonl_files(tmp_path: Path) -> None:
    empty = tmp_path / "corpus.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match=at(empty) + ": no documents"):
        read_corpus(empty)
    queries = tmp_path / "queries.jsonl"
    queries.write_text("")
    with pytest.raises(InputError, match=at(queries) + ": no queries"):
        read_queries(queries)


def test_judged_query_missing_from_queries_file_is_dropped_with_a_warning(
    beir_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = beir_dir / "qrels" / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq42\td2\t1\nq2\td2\t1\n")
    with caplog.at_level("WARNING"):
        collection = load_collection(beir_dir)
    assert collection.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert list(collection.queries) == ["q1", "q2"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"{path}: 1 of 3 judged query ids are not in the queries file ('q42'); those queries are left out"
    ]


def test_judged_document_missing_from_corpus_counts_as_relevant_never_retrieved(
    beir_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As trec_eval and ranx: the judgement stays, so recall cannot reach 1 for that query."""
    from irdistill.evaluation.metrics import evaluate_run

    path = beir_dir / "qrels" / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td42\t1\nq2\td2\t1\n")
    with caplog.at_level("WARNING"):
        collection = load_collection(beir_dir)
    assert collection.qrels == {"q1": {"d1": 1, "d42": 1}, "q2": {"d2": 1}}
    assert collection.positives("q1") == ["d1"]  # no text to train or score with
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{path}: 1 of 3 judged document ids are not in the corpus ('d42')")
    run = {"q1": {"d1": 2.0, "d3": 1.0}, "q2": {"d2": 1.0}}
    recall = evaluate_run(collection.qrels, run, ["recall@10"])["recall@10"]
    assert recall == pytest.approx((0.5 + 1.0) / 2)


def test_many_missing_ids_warn_with_a_few_examples_and_refuse_below_the_threshold(beir_dir: Path) -> None:
    """20 judged documents, 2 exist (10 %): evaluated; 1 exists (5 %): the ids do not match."""
    path = beir_dir / "qrels" / "test.tsv"
    rows = [f"q1\tx{i}\t1" for i in range(18)]
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n" + "\n".join(rows) + "\n")
    assert len(load_collection(beir_dir).qrels["q1"]) == 19
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n" + "\n".join(rows + ["q2\tx18\t1"]) + "\n")
    with pytest.raises(
        InputError,
        match=at(path) + r": 19 of 20 judged document ids are not in the "
        r"corpus \('x0', 'x1', 'x10', 'x11', 'x12', \.\.\.\); the ids do not match",
    ):
        load_collection(beir_dir)


def test_judged_queries_that_match_none_are_refused(beir_dir: Path) -> None:
    path = beir_dir / "qrels" / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n2\td2\t1\n")  # a wrong id column
    with pytest.raises(
        InputError,
        match=at(path) + r": 2 of 2 judged query ids are not in the "
        "queries file",
    ):
        load_collection(beir_dir)


@pytest.mark.parametrize("file", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_bytes_that_are_not_utf8_name_the_file_and_line(beir_dir: Path, file: str) -> None:
    path = beir_dir / file
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"1", b"\xe9", 1) if file.endswith("tsv") else lines[1][:-2] + b'\xe9"}'
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(InputError, match=at(path, 2) + r": not valid UTF-8 \(byte e9 at column \d+\)"):
        load_collection(beir_dir)


def test_utf8_byte_order_mark_is_accepted(beir_dir: Path) -> None:
    path = beir_dir / "corpus.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_collection(beir_dir).doc_ids[0] == "d1"


@pytest.mark.parametrize("row", ["q1\td1", "q1\td1\t1\textra"])
def test_qrels_with_wrong_field_count(beir_dir: Path, row: str) -> None:
    path = beir_dir / "qrels" / "test.tsv"
    path.write_text(f"query-id\tcorpus-id\tscore\nq1\td1\t1\n{row}\n")
    with pytest.raises(InputError, match=at(path, 3) + ": expected 3 tab-separated fields"):
        load_collection(beir_dir)


@pytest.mark.parametrize("score", ["high", "nan", "inf", ""])
def test_qrels_with_non_numeric_score(beir_dir: Path, score: str) -> None:
    path = beir_dir / "qrels" / "test.tsv"
    path.write_text(f"query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t{score}\n")
    with pytest.raises(InputError, match=at(path, 3) + f": score '{score}' is not a number"):
        load_collection(beir_dir)


def test_qrels_without_header_and_space_separated(beir_dir: Path) -> None:
    path = beir_dir / "qrels" / "test.tsv"
    path.write_text("q1 d1 1\n\nq2 d2 2.0\n")
    assert read_beir_qrels(path) == {"q1": {"d1": 1}, "q2": {"d2": 2}}
    only_header = beir_dir / "qrels" / "empty.tsv"
    only_header.write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(InputError, match=at(only_header) + ": no judgements"):
        read_beir_qrels(only_header)


@pytest.mark.parametrize("name", ["queries.jsonl", "qrels/test.tsv"])
def test_missing_file_is_named(beir_dir: Path, name: str) -> None:
    (beir_dir / name).unlink()
    with pytest.raises(InputError, match=at(beir_dir / name) + ": no such file"):
        load_collection(beir_dir)


def test_missing_corpus_file_is_named(beir_dir: Path) -> None:
    (beir_dir / "corpus.jsonl").unlink()
    with pytest.raises(InputError, match=at(beir_dir / "corpus.jsonl") + ": no such file"):
        load_beir_folder(beir_dir)


def test_unknown_split_lists_the_available_ones(beir_dir: Path) -> None:
    with pytest.raises(InputError, match=r"dev\.tsv: no such file; splits in .*tiny: test, train$"):
        load_collection(beir_dir, split="dev")


def test_folder_of_neither_layout(tmp_path: Path) -> None:
    folder = tmp_path / "stuff"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello\n")
    with pytest.raises(InputError, match=at(folder) + ": not a data set folder; expected corpus.jsonl"):
        load_collection(folder)
    with pytest.raises(InputError, match=at(folder / "notes.txt") + ": expected a data set folder, got a file"):
        load_collection(folder / "notes.txt")


# --- MS MARCO TSV folders ---------------------------------------------------------------


def write_msmarco(folder: Path, split: str = "dev") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "collection.tsv").write_text(
        "p1\tThe vaccine trial shows immune response.\n"
        "p2\tProtein expression in tumor cells.\n"
        "p3\tLow drug dose, no effect\ton blood pressure.\n"
        "p4\tGene expression in the mouse brain.\n"
    )
    (folder / f"queries.{split}.tsv").write_text(
        "101\tvaccine immune response\n102\tdrug dose effect\n103\tunjudged query\n"
    )
    (folder / f"qrels.{split}.tsv").write_text("101 0 p1 1\n102\t0\tp3\t2\n102 0 p4 0\n")
    return folder


def test_msmarco_folder_loads(tmp_path: Path) -> None:
    folder = write_msmarco(tmp_path / "marco")
    collection = load_collection(folder)
    assert (collection.name, collection.split) == ("marco", "dev")
    assert collection.doc_ids == ["p1", "p2", "p3", "p4"]
    assert collection.corpus["p1"] == Document(text="The vaccine trial shows immune response.")
    # a tab inside the text is kept as part of the text
    assert collection.corpus["p3"].text == "Low drug dose, no effect\ton blood pressure."
    assert collection.queries == {"101": "vaccine immune response", "102": "drug dose effect"}
    assert collection.qrels == {"101": {"p1": 1}, "102": {"p3": 2, "p4": 0}}


def test_msmarco_three_field_qrels_and_other_split(tmp_path: Path) -> None:
    folder = write_msmarco(tmp_path / "marco", split="train")
    (folder / "qrels.train.tsv").write_text("query-id\tcorpus-id\tscore\n102\tp2\t1\n")
    collection = load_msmarco_folder(folder, split="train")
    assert collection.split == "train"
    assert collection.queries == {"102": "drug dose effect"}
    assert collection.qrels == {"102": {"p2": 1}}
    with pytest.raises(InputError, match=at(folder / "queries.dev.tsv") + ": no such file"):
        load_msmarco_folder(folder)


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("collection.tsv", "p1\tfine\np2 no tab here\n", ":2: expected 'id<TAB>text', got no tab"),
        (
            "collection.tsv",
            "p1\tfine\np2\tok\np1\tagain\n",
            r":3: duplicate id 'p1' \(first on line 1\)",
        ),
        ("collection.tsv", "p1\tfine\np2\t  \n", ":2: passage 'p2' has an empty text"),
        ("queries.dev.tsv", "101\tvaccine\n\n102\t\n", ":3: query '102' has an empty text"),
        (
            "qrels.dev.tsv",
            "998 0 p1 1\n999 0 p1 1\n",
            ": 2 of 2 judged query ids are not in the queries file",
        ),
        (
            "qrels.dev.tsv",
            "101 0 p8 1\n102 0 p9 1\n",
            ": 2 of 2 judged document ids are not in the corpus",
        ),
        ("collection.tsv", "p1\tfine\np2\tcaf\xe9\n", r":2: not valid UTF-8 \(byte e9 at column 7\)"),
        ("qrels.dev.tsv", "101 0 p1 1\n101 0 p2 1 extra\n", ":2: expected 'qid 0 pid relevance'"),
        ("qrels.dev.tsv", "101 0 p1 1\n101 p2\n", ":2: expected 'qid 0 pid relevance'"),
        ("qrels.dev.tsv", "101 0 p1 yes\n", ":1: relevance 'yes' is not an integer"),
    ],
)
def test_msmarco_errors_name_file_and_line(tmp_path: Path, file: str, content: str, message: str) -> None:
    folder = write_msmarco(tmp_path / "marco")
    (folder / file).write_bytes(content.encode("latin-1"))  # \xe9: one byte, not UTF-8
    with pytest.raises(InputError, match=at(folder / file) + message):
        load_collection(folder)


def test_msmarco_missing_and_empty_files(tmp_path: Path) -> None:
    folder = write_msmarco(tmp_path / "marco")
    (folder / "qrels.dev.tsv").write_text("\n")
    with pytest.raises(InputError, match=at(folder / "qrels.dev.tsv") + ": no judgements"):
        load_collection(folder)
    (folder / "queries.dev.tsv").unlink()
    with pytest.raises(InputError, match=at(folder / "queries.dev.tsv") + ": no such file"):
        load_collection(folder)


# --- names and resolution ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "split", "expected"),
    [
        ("beir/scifact/test", None, ("beir/scifact", "test")),
        ("beir/scifact", None, ("beir/scifact", None)),
        ("beir/scifact/test", "train", ("beir/scifact", "train")),
        ("beir/scifact", "dev", ("beir/scifact", "dev")),
        ("/beir/scifact/test/", None, ("beir/scifact", "test")),
        ("msmarco-passage/dev/small", None, ("msmarco-passage", "dev/small")),
        ("msmarco-passage", "train", ("msmarco-passage", "train")),
        ("beir", None, ("beir", None)),
    ],
)
def test_parse_dataset_spec(spec: str, split: str | None, expected: tuple[str, str | None]) -> None:
    assert parse_dataset_spec(spec, split) == expected


def test_parse_dataset_spec_rejects_an_empty_name() -> None:
    with pytest.raises(InputError, match="empty data set name"):
        parse_dataset_spec("//")


def test_explicit_folder_wins_over_irdistill_data(
    tmp_path: Path, beir_dir: Path, monkeypatch: pytest.MonkeyPatch, no_ir_datasets: None
) -> None:
    root = tmp_path / "data"
    write_beir(root / "tiny", docs={"z1": ("", "another corpus")}, qrels={"test": [("q1", "z1", 1)]})
    monkeypatch.setenv("IRDISTILL_DATA", str(root))
    collection = load_collection(beir_dir)
    assert len(collection.corpus) == len(DOCS)
    assert collection.name == "tiny"
    # a Path works as well as a string
    assert load_collection(Path(beir_dir), split="train").query_ids == ["q4"]


def test_irdistill_data_is_searched_by_the_last_name_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_ir_datasets: None
) -> None:
    root = tmp_path / "data"
    write_beir(root / "scifact")
    monkeypatch.setenv("IRDISTILL_DATA", str(root))
    monkeypatch.chdir(tmp_path)

    test = load_collection("beir/scifact/test")
    assert (test.name, test.split) == ("beir/scifact", "test")
    assert test.query_ids == ["q1", "q2", "q3"]
    assert len(test.corpus) == len(DOCS)

    assert load_collection("beir/scifact").split == "test"  # BEIR folders default to test
    train = load_collection("beir/scifact/test", split="train")  # the explicit split wins
    assert (train.split, train.query_ids) == ("train", ["q4"])


def test_irdistill_data_msmarco_dev_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_ir_datasets: None
) -> None:
    """The official MS MARCO files are named queries.dev.small.tsv and qrels.dev.small.tsv."""
    root = tmp_path / "data"
    folder = write_msmarco(root / "msmarco-passage", split="dev.small")
    monkeypatch.setenv("IRDISTILL_DATA", str(root))
    monkeypatch.chdir(tmp_path)
    collection = load_collection("msmarco-passage/dev/small")
    assert (collection.name, collection.split) == ("msmarco-passage", "dev/small")
    assert collection.query_ids == ["101", "102"]

    (folder / "queries.dev.tsv").write_text("201\tdev query\n")
    (folder / "qrels.dev.tsv").write_text("201 0 p2 1\n")
    assert load_collection("msmarco-passage").query_ids == ["201"]  # MS MARCO defaults to dev


@pytest.mark.parametrize(
    ("spec", "split", "called_with"),
    [
        ("beir/nfcorpus/test", None, "beir/nfcorpus/test"),
        ("beir/nfcorpus", "test", "beir/nfcorpus/test"),
        ("beir/nfcorpus/dev", "test", "beir/nfcorpus/test"),
        ("beir/nfcorpus", None, "beir/nfcorpus"),
        ("msmarco-passage/dev/small", None, "msmarco-passage/dev/small"),
    ],
)
@pytest.mark.parametrize("data_env", [True, False])
def test_falls_back_to_ir_datasets(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spec: str,
    split: str | None,
    called_with: str,
    data_env: bool,
) -> None:
    if data_env:
        root = tmp_path / "data"
        write_beir(root / "scifact")  # present, but not the data set asked for
        monkeypatch.setenv("IRDISTILL_DATA", str(root))
    else:
        monkeypatch.delenv("IRDISTILL_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    calls: list[str] = []
    sentinel = Collection({"d": Document("x")}, {"q": "y"}, {"q": {"d": 1}}, name="fake")

    def fake(dataset_id: str, *args, **kwargs) -> Collection:
        calls.append(dataset_id)
        return sentinel

    monkeypatch.setattr(irdistill.data.irds, "load_ir_datasets", fake)
    assert load_collection(spec, split=split) is sentinel
    assert calls == [called_with]


# --- real data --------------------------------------------------------------------------


def test_scifact_counts(scifact_dir: Path, monkeypatch: pytest.MonkeyPatch, no_ir_datasets: None) -> None:
    test = load_collection(scifact_dir, split="test")
    assert len(test.queries) == 300
    assert len(test.corpus) == 5183
    assert sum(len(j) for j in test.qrels.values()) == 339
    assert set(test.queries) == set(test.qrels)

    train = load_collection(scifact_dir, split="train")
    assert len(train.queries) == 809
    assert sum(len(j) for j in train.qrels.values()) == 919
    assert not set(train.queries) & set(test.queries)

    # by name, through $IRDISTILL_DATA
    monkeypatch.setenv("IRDISTILL_DATA", str(scifact_dir.parent))
    by_name = load_collection("beir/scifact/test")
    assert by_name.query_ids == test.query_ids
    assert by_name.corpus_fingerprint() == test.corpus_fingerprint()


def test_load_corpus_reads_no_judgements_and_the_ledger_counts_those_handed_out(beir_dir: Path) -> None:
    from irdistill.data import judgements_loaded, load_corpus
    from irdistill.errors import InputError as Refused

    before = judgements_loaded()
    corpus = load_corpus(beir_dir, "test", where="a label-free test")
    assert judgements_loaded() == before and len(corpus.corpus) == 8 and corpus.queries == {}
    with pytest.raises(Refused, match="a label-free test: a stage before the evaluation read the judgements"):
        corpus.qrels.get("q1")
    (beir_dir / "qrels" / "test.tsv").unlink()  # the judgements are not even opened
    assert len(load_corpus(beir_dir, "test").corpus) == 8
    (beir_dir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    load_collection(beir_dir, split="test")
    assert judgements_loaded() == before + 2
