"""Query generation: the generators, the resumable store, the round-trip filter, sealed judgements
and the label-free recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from test_listwise_llm import tiny_llm_dirs  # noqa: F401  (a session fixture)

from irdistill.cli.main import main
from irdistill.data import load_collection
from irdistill.data.collection import Collection, Document, SealedQrels, without_judgements
from irdistill.errors import InputError
from irdistill.generation import (
    ClozeCorpus,
    LLMQueryGenerator,
    SentenceGenerator,
    SpanGenerator,
    TitleGenerator,
    build_generator,
    clean_query,
    generate_queries,
    pseudo_collection,
    read_queries,
    round_trip_filter,
    sample_passages,
    unpatched,
)
from irdistill.generation.generators import sentences
from irdistill.generation.store import cut_out

DOCS = {
    "a": Document("Protein expression rises in cancer cells. The tumour grows fast! Mice were treated.", "Cancer"),
    "b": Document("Vaccines raise the immune response. Antibody levels double in two weeks.", "Vaccines"),
    "c": Document("Short.", ""),
    "d": Document("Gene expression in the brain of mice. Neurons fire more often with age.", "Brain genes"),
}


def corpus() -> Collection:
    return Collection(corpus=dict(DOCS), queries={}, qrels={}, name="toy", split="test")


def test_clean_query_keeps_the_first_line_without_labels_or_quotes() -> None:
    assert clean_query('  Query: "Does protein rise in cancer?"\nmore text') == "Does protein rise in cancer?"
    assert clean_query("1. search query: vitamin D and mortality") == "vitamin D and mortality"
    assert clean_query("\n\n  - Claim: ULK1 drives autophagy.  ") == "ULK1 drives autophagy."
    assert clean_query("   \n ") == ""
    assert clean_query("word " * 70) == ""


def test_sentences_split_at_ends_but_not_after_initials() -> None:
    assert sentences("We saw S. aureus grow. Then (a) it died! Was 5 enough? yes.") == [
        "We saw S. aureus grow.",
        "Then (a) it died!",
        "Was 5 enough? yes.",
    ]


def test_cheap_generators() -> None:
    docs = list(DOCS.items())
    assert TitleGenerator().generate(docs, 3, 0) == [["Cancer"], ["Vaccines"], [], ["Brain genes"]]
    drawn = SentenceGenerator(min_words=3).generate(docs, 2, seed=7)
    assert [len(q) for q in drawn] == [2, 2, 0, 2]
    assert set(drawn[0]) <= set(sentences(DOCS["a"].text))
    # a passage's draw depends on the seed and its id only, not on its neighbours in the call
    assert SentenceGenerator(min_words=3).generate([docs[3]], 2, seed=7) == [drawn[3]]
    spans = SpanGenerator(min_words=2, max_words=3).generate(docs, 3, seed=1)
    words = DOCS["b"].text.split()
    for span in spans[1]:
        assert 2 <= len(span.split()) <= 3 and span in " ".join(words)
    assert len(set(spans[1])) == len(spans[1])


def test_build_generator_names_errors() -> None:
    assert isinstance(build_generator("title"), TitleGenerator)
    assert build_generator({"generator": "span", "min_words": 3}).config()["min_words"] == 3
    with pytest.raises(InputError, match="unknown query generator 'poem'"):
        build_generator("poem")
    with pytest.raises(InputError, match="generator span: .*colour"):
        build_generator({"generator": "span", "colour": 1})


class Failing(SentenceGenerator):
    """Raises on its ``fail_on``-th call, as a run killed mid-job would stop."""

    def __init__(self, fail_on: int) -> None:
        super().__init__(min_words=3)
        self.calls, self.fail_on = 0, fail_on

    def generate(self, passages, per_passage, seed):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("killed")
        return super().generate(passages, per_passage, seed)


def test_generation_resumes_after_an_interruption_with_the_same_queries(tmp_path: Path) -> None:
    whole = generate_queries(
        SentenceGenerator(min_words=3), corpus(), tmp_path / "whole", per_passage=2, chunk_passages=1, seed=3
    )
    with pytest.raises(RuntimeError, match="killed"):
        generate_queries(Failing(3), corpus(), tmp_path / "cut", per_passage=2, chunk_passages=1, seed=3)
    assert sorted(p.name for p in (tmp_path / "cut").glob("shard-*")) == ["shard-00000.parquet", "shard-00001.parquet"]
    again = Failing(0)
    resumed = generate_queries(again, corpus(), tmp_path / "cut", per_passage=2, chunk_passages=1, seed=3)
    assert again.calls == 2  # the two missing chunks only
    assert pq.read_table(resumed).equals(pq.read_table(whole))
    summary = json.loads((tmp_path / "whole" / "generated.json").read_text())
    assert summary["passages"] == 4 and summary["generated"] == 6 and summary["queries"] == 6
    assert summary["queries_per_s"] > 0 and summary["peak_rss_gib"] > 0
    table = read_queries(tmp_path / "whole")
    assert table.column("qid").to_pylist()[:2] == ["a-q0", "a-q1"]
    # another job in the same folder is refused, naming what differs
    with pytest.raises(InputError, match="generated queries of a different job.*seed 3 there, 4 now"):
        generate_queries(SentenceGenerator(min_words=3), corpus(), tmp_path / "whole", per_passage=2, seed=4)


def test_generated_queries_kept_without_their_shards_are_not_generated_again(tmp_path: Path) -> None:
    path = generate_queries(
        SentenceGenerator(min_words=3), corpus(), tmp_path / "q", per_passage=2, chunk_passages=1, seed=3
    )
    before = pq.read_table(path)
    for shard in (tmp_path / "q").glob("shard-*.parquet"):
        shard.unlink()
    again = Failing(0)
    assert generate_queries(again, corpus(), tmp_path / "q", per_passage=2, chunk_passages=1, seed=3) == path
    assert again.calls == 0
    assert pq.read_table(path).equals(before)


def test_merge_drops_a_query_repeated_for_another_passage(tmp_path: Path) -> None:
    docs = {**DOCS, "e": Document("Other text.", "Cancer")}  # the same title as "a"
    collection = Collection(corpus=docs, queries={}, qrels={}, name="toy")
    path = generate_queries(TitleGenerator(), collection, tmp_path / "t", chunk_passages=2)
    assert read_queries(path).column("pid").to_pylist() == ["a", "b", "d"]
    summary = json.loads((tmp_path / "t" / "generated.json").read_text())
    assert (summary["generated"], summary["duplicates"], summary["queries"]) == (4, 1, 3)


def test_sample_passages_is_seeded_and_in_corpus_order() -> None:
    first = sample_passages(corpus(), 2, seed=5)
    assert first == sample_passages(corpus(), 2, seed=5)
    assert first == sorted(first, key=list(DOCS).index)
    assert sample_passages(corpus(), None, 0) == list(DOCS)
    with pytest.raises(InputError, match="max_passages must be >= 1"):
        sample_passages(corpus(), 0, 0)


def test_round_trip_filter_keeps_queries_that_find_their_passage(tmp_path: Path) -> None:
    import pyarrow as pa

    from irdistill.generation import SCHEMA

    queries = pa.table(
        [
            ["a-q0", "b-q0", "d-q0"],
            ["a", "b", "d"],
            ["protein expression cancer cells", "antibody levels vaccines", "protein expression cancer cells"],
            ["x"] * 3,
        ],
        schema=SCHEMA,
    )
    kept, report = round_trip_filter(queries, corpus(), retriever="bm25", k=1)
    assert kept.column("qid").to_pylist() == ["a-q0", "b-q0"]
    assert (report["queries"], report["kept"]) == (3, 2)
    assert report["dropped_examples"] == ["protein expression cancer cells"]
    train = pseudo_collection(kept, corpus())
    assert train.positives("b-q0") == ["b"] and train.split == "generated"


def test_cut_out_removes_the_first_occurrence_across_white_space() -> None:
    assert cut_out("One two.  Three\nfour five. Six.", "Three four five.") == ("One two. Six.", True)
    assert cut_out("a b a b", "a b") == ("a b", True)
    assert cut_out("Nothing here.", "absent words") == ("Nothing here.", False)
    assert cut_out("Dots (1.5) and [x]", "(1.5) and") == ("Dots [x]", True)  # regex characters are literal


def generated(rows: list[tuple[str, str, str]]) -> Any:
    import pyarrow as pa

    from irdistill.generation import SCHEMA

    qids, pids, texts = (list(column) for column in zip(*rows, strict=True))
    return pa.table([qids, pids, texts, ["x"] * len(rows)], schema=SCHEMA)


def test_cloze_collection_cuts_each_query_out_of_its_source_passage_only() -> None:
    queries = generated(
        [
            ("a-q0", "a", "The tumour grows fast!"),  # a sentence of a's text
            ("b-q0", "b", "how do vaccines work"),  # an abstractive query: b stays whole
            ("c-q0", "c", "Short."),  # all of c: dropped
            ("d-q0", "d", "Brain genes"),  # d's title: cut from the title when the text lacks it
        ]
    )
    base = corpus()
    train = pseudo_collection(queries, base, cloze=True)
    assert train.query_ids == ["a-q0", "b-q0", "d-q0"]
    docs = train.corpus
    assert isinstance(docs, ClozeCorpus) and docs.emptied == {"c"} and docs.not_found == 1
    assert docs["a"].text == "Protein expression rises in cancer cells. Mice were treated."
    assert docs["a"].title == "Cancer"
    assert (docs["d"].title, docs["d"].text) == ("", DOCS["d"].text)
    assert docs["b"] == DOCS["b"] and docs["c"] == DOCS["c"]  # untouched passages are the corpus's own
    assert len(docs) == len(DOCS) and list(docs) == list(DOCS) and "a" in docs
    # the row interface training reads gives the patched texts at the corpus's own rows
    rows = docs.rows_of(["d", "a", "zz"])
    assert rows.tolist() == [3, 0, -1]
    assert docs.texts(rows[:2]) == [
        DOCS["d"].text,  # its title cut out
        "Cancer Protein expression rises in cancer cells. Mice were treated.",
    ]
    assert docs.full_texts()[1] == DOCS["b"].full_text() and train.doc_texts()[0] == docs["a"].full_text()
    assert unpatched(train).corpus is base.corpus and unpatched(base) is base
    # without cloze the passages are the corpus's own
    assert pseudo_collection(queries, base).corpus is base.corpus
    with pytest.raises(InputError, match="every generated query was its whole passage"):
        pseudo_collection(generated([("c-q0", "c", "Short.")]), base, cloze=True)


def test_sealed_judgements_refuse_every_read() -> None:
    sealed = without_judgements(corpus(), where="run x")
    assert isinstance(sealed.qrels, SealedQrels)
    assert "judgements=sealed" in repr(sealed)
    for read in (lambda: sealed.positives("q"), lambda: list(sealed.qrels), lambda: sealed.qrels.get("q")):
        with pytest.raises(InputError, match="run x: a stage before the evaluation read the judgements"):
            read()
    assert sealed.corpus["a"] == DOCS["a"]


def test_llm_generator_writes_queries_with_a_chat_and_a_plain_model(tiny_llm_dirs) -> None:  # noqa: F811
    docs = list(DOCS.items())[:2]
    examples = [{"passage": "Mice grow old.", "query": "ageing in mice"}]
    chat = LLMQueryGenerator(str(tiny_llm_dirs["chat"]), examples=examples, max_new_tokens=6, batch_size=2)
    prompt = chat.build_prompt("Vaccines work.")
    assert prompt.count("Passage:") == 2 and "ageing in mice" in prompt and prompt.endswith("assistant\n")
    first = chat.generate(docs, 2, seed=1)
    assert len(first) == 2 and all(len(q) <= 2 for q in first)
    assert chat.generate(docs, 2, seed=1) == first  # seeded per batch
    plain = LLMQueryGenerator(str(tiny_llm_dirs["plain"]), examples=examples, temperature=0, max_new_tokens=4)
    assert plain.build_prompt("Vaccines work.").endswith("Passage: Vaccines work.\nQuery:")
    assert len(plain.generate(docs, 1, seed=0)) == 2
    with pytest.raises(InputError, match="temperature 0"):
        plain.generate(docs, 2, seed=0)
    with pytest.raises(InputError, match="example 1 must have exactly the keys"):
        LLMQueryGenerator(str(tiny_llm_dirs["plain"]), examples=[{"text": "x"}])


def test_generate_queries_command(beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gen"
    args = ["-q", "generate-queries", "--dataset", str(beir_dir), "--generator", "title", "--out", str(out)]
    assert main([*args, "--filter-retriever", "bm25", "--filter-k", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["queries"] == 7  # d3 has no title
    assert summary["filter"]["kept"] == read_queries(out / "kept.parquet").num_rows
    assert main(["generate-queries", "--dataset", str(beir_dir), "--out", str(out)]) == 2
    assert "--generator llm needs --model" in capsys.readouterr().err


def label_free_recipe(tmp_path: Path, beir_dir: Path, tiny_model_dir: Path, extra: str = "") -> Path:
    path = tmp_path / "adapt.yaml"
    path.write_text(
        f"""
dataset: {beir_dir}
out: {tmp_path / "run"}
generate: {{generator: sentence, per_passage: 1, seed: 2, chunk_passages: 3}}
filter: {{retriever: bm25, k: 2}}
candidates: {{retriever: bm25, k: 4}}
teacher: bm25
train: {{student: {tiny_model_dir}, loss: margin-mse, sampler: random, batch_size: 2, epochs: 1,
         learning_rate: 0.001, max_seq_length: 32}}
evaluate: {{k: 8, metrics: [ndcg@10, recall@5]}}
fidelity: null
{extra}"""
    )
    return path


def test_label_free_run_reads_no_judgement_before_the_evaluation(
    beir_dir: Path, tiny_model_dir: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = label_free_recipe(tmp_path, beir_dir, tiny_model_dir)
    assert main(["-q", "run", str(path)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{\n") :])
    assert summary["labels_used"] == 0
    assert summary["queries"]["generated"] == 8 and 1 <= summary["queries"]["kept"] <= 8
    out = tmp_path / "run"
    trained = read_queries(out / "queries.kept.parquet").column("qid").to_pylist()
    scored = pq.read_table(out / "scores.generated" / "scores.parquet").column("qid").unique().to_pylist()
    assert sorted(scored) == sorted(trained)  # the generated queries, not the judged ones
    test = load_collection(str(beir_dir), split="test")
    assert set(summary["metrics"]) == {"ndcg@10", "recall@5"} and test.qrels  # evaluated on the judged queries


def test_label_free_cloze_run_scores_and_trains_on_passages_without_their_queries(
    beir_dir: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``cloze: true``: the BM25 teacher scores each source passage with its sentence cut out
    (lower than the whole passage, which holds every query word), and the run completes."""
    from irdistill.teachers.base import Teacher
    from irdistill.teachers.bm25 import BM25Teacher

    added: list[dict[str, Document]] = []
    monkeypatch.setattr(Teacher, "add_passages", lambda self, documents: added.append(dict(documents)))
    path = label_free_recipe(tmp_path, beir_dir, tiny_model_dir)
    path.write_text(path.read_text().replace("chunk_passages: 3}", "chunk_passages: 3, cloze: true}"))
    assert main(["-q", "run", str(path)]) == 0
    summary = json.loads((lambda out: out[out.index("{\n") :])(capsys.readouterr().out))
    assert summary["labels_used"] == 0
    out = tmp_path / "run"
    kept = read_queries(out / "queries.kept.parquet").to_pylist()
    scores = pq.read_table(out / "scores.generated" / "scores.parquet").to_pylist()
    score = {(r["qid"], r["pid"]): r["score"] for r in scores}
    test = load_collection(str(beir_dir), split="test")
    teacher = BM25Teacher(test)
    checked = 0
    for row in kept:
        text, found = cut_out(test.corpus[row["pid"]].text, row["query"])
        assert found  # a sentence of its passage; one-sentence passages without a title were dropped
        patched = Document(text=text, title=test.corpus[row["pid"]].title).full_text()
        if not patched:  # the query was all its passage held: dropped from training
            assert all(qid != row["qid"] for qid, _ in score)
            continue
        whole = test.corpus[row["pid"]].full_text()
        expected, full = teacher.score([row["query"]] * 2, [patched, whole])
        assert score[(row["qid"], row["pid"])] == pytest.approx(expected, rel=1e-5)
        assert expected < full
        assert added[0][row["pid"]].full_text() == patched  # handed to the teacher before scoring
        checked += 1
    assert checked >= 1 and len(added) == 1


def test_label_free_recipe_refuses_judged_training_queries(
    beir_dir: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = label_free_recipe(tmp_path, beir_dir, tiny_model_dir, "train_split: train\n")
    assert main(["run", str(path)]) == 2
    assert "a label-free run (generate) does not read" in capsys.readouterr().err
    path.write_text(path.read_text().replace("train_split: train\n", "").replace("generator: sentence", "seed_: 1"))
    assert main(["run", str(path)]) == 2
    assert "generate needs a generator" in capsys.readouterr().err
    path.write_text(path.read_text().replace("seed_: 1", "generator: sentence, cloze: 'no'"))
    assert main(["run", str(path)]) == 2
    assert "generate.cloze must be true or false, got 'no'" in capsys.readouterr().err
