from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from irdistill.data import load_collection
from irdistill.errors import InputError, UnknownNameError
from irdistill.teachers.base import TEACHERS, PointwiseTeacher, ScoreScale, check_scores
from irdistill.teachers.bm25 import BM25Teacher
from irdistill.teachers.cross_encoder import CrossEncoderTeacher
from irdistill.teachers.dense import DenseTeacher
from irdistill.teachers.ensemble import EnsembleTeacher, normalize_scores

QUERIES = [
    "protein expression in cancer cells",
    "vaccine immune response",
    "brain gene expression",
    "protein expression in cancer cells",
]
PASSAGES = [
    "High protein expression in tumor cells increases cancer risk.",
    "The vaccine trial shows immune response in patients.",
    "Gene expression levels decrease in mouse brain cells. " * 6,
    "High protein expression in tumor cells increases cancer risk.",
]


class FixedTeacher(PointwiseTeacher):
    """Scores = a fixed lookup by passage, for ensemble arithmetic."""

    scale = ScoreScale.LOGIT

    def __init__(self, name: str, table: dict[str, float]) -> None:
        self.name, self.table = name, table

    def score(self, queries, passages):
        return np.array([self.table[p] for p in passages])


def test_cross_encoder_matches_predict(tiny_cross_encoder_dir: Path) -> None:
    import torch

    teacher = CrossEncoderTeacher(str(tiny_cross_encoder_dir), batch_size=2, batch_tokens=64)
    assert teacher.scale is ScoreScale.LOGIT
    ours = teacher.score(QUERIES, PASSAGES)
    reference = teacher.cross_encoder.predict(
        list(zip(QUERIES, PASSAGES, strict=True)), activation_fn=torch.nn.Identity(), batch_size=1
    )
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert ours[0] == ours[3]  # the duplicate pair got the same score


def test_cross_encoder_sigmoid_and_batching(tiny_cross_encoder_dir: Path) -> None:
    raw = CrossEncoderTeacher(str(tiny_cross_encoder_dir)).score(QUERIES, PASSAGES)
    prob_teacher = CrossEncoderTeacher(
        str(tiny_cross_encoder_dir), activation="sigmoid", batch_tokens=None, batch_size=1
    )
    assert prob_teacher.scale is ScoreScale.PROBABILITY
    np.testing.assert_allclose(prob_teacher.score(QUERIES, PASSAGES), 1 / (1 + np.exp(-raw)), atol=1e-5)
    # batches are cut from length-sorted pairs under the token budget
    batches = CrossEncoderTeacher(str(tiny_cross_encoder_dir), batch_size=2, batch_tokens=100)._batches(
        np.array([10, 50, 20, 30, 5])
    )
    assert [b.tolist() for b in batches] == [[1, 3], [2, 0], [4]]


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_rows_equals_tokenizer_pad(tiny_cross_encoder_dir: Path, side: str) -> None:
    """The teacher's own padding gives, key by key, the arrays ``tokenizer.pad`` gives."""
    from irdistill.teachers.cross_encoder import pad_rows

    tokenizer = CrossEncoderTeacher(str(tiny_cross_encoder_dir)).cross_encoder.tokenizer
    tokenizer.padding_side = side
    encoded = tokenizer(QUERIES[:3], PASSAGES[:3], truncation=True, max_length=40, padding=False)
    assert len({len(ids) for ids in encoded["input_ids"]}) > 1  # the rows really differ in length
    reference = tokenizer.pad(dict(encoded), return_tensors="np")
    pads = {"input_ids": tokenizer.pad_token_id, "token_type_ids": tokenizer.pad_token_type_id}
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        got = pad_rows(encoded[key], pads.get(key, 0), left=side == "left")
        np.testing.assert_array_equal(got, reference[key])
    assert pad_rows([], 0).shape == (0, 0)


def test_cross_encoder_errors(tiny_cross_encoder_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a model folder"):
        CrossEncoderTeacher(str(tmp_path))
    teacher = CrossEncoderTeacher(str(tiny_cross_encoder_dir))
    with pytest.raises(InputError, match="pair 1: empty passage text"):
        teacher.score(["a", "b"], ["text", " "])
    with pytest.raises(InputError, match="2 queries but 1 passages"):
        teacher.score(["a", "b"], ["text"])
    with pytest.raises(InputError, match="activation must be"):
        CrossEncoderTeacher(str(tiny_cross_encoder_dir), activation="softmax")  # type: ignore[arg-type]


def test_non_finite_scores_are_refused() -> None:
    with pytest.raises(InputError, match=r"teacher t produced a non-finite score \(nan\) for pair 1"):
        check_scores(np.array([0.5, np.nan]), "t")


def test_dense_teacher_uses_the_collection_cache(tiny_model_dir: Path, beir_dir: Path, cache_dir: Path) -> None:
    collection = load_collection(beir_dir)
    teacher = DenseTeacher(str(tiny_model_dir), collection=collection)
    assert teacher.scale is ScoreScale.COSINE
    doc = collection.corpus["d1"].full_text()
    scores = teacher.score(["protein expression", "protein expression"], [doc, "a passage not in the corpus"])
    q = teacher.encoder.model.encode(["protein expression"], normalize_embeddings=True)[0]
    d = teacher.encoder.model.encode([doc, "a passage not in the corpus"], normalize_embeddings=True)
    np.testing.assert_allclose(scores, d @ q, atol=1e-5)
    # only the corpus is cached: the calls' queries and stray passages write no file each
    for query in ("vaccine", "brain gene", "protein expression"):
        teacher.rank(query, [doc])
    assert len(list((cache_dir / "embeddings").glob("*.npy"))) == 1


def test_dense_teacher_encodes_a_passage_outside_its_collection_once(
    tiny_model_dir: Path, beir_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import irdistill.teachers.dense as dense

    monkeypatch.setattr(dense, "OUTSIDE_MEMO", 2)
    collection = load_collection(beir_dir)
    teacher = DenseTeacher(str(tiny_model_dir), collection=collection)
    doc = collection.corpus["d1"].full_text()
    encoded: list[str] = []
    embed = teacher._embed
    monkeypatch.setattr(teacher, "_embed", lambda texts, side: (encoded.extend(texts), embed(texts, side))[1])
    first = teacher.score(["vaccine", "vaccine", "vaccine"], [doc, "outside one", "outside two"])
    again = teacher.score(["vaccine", "brain"], ["outside two", "outside one"])
    assert encoded == ["vaccine", "outside one", "outside two", "vaccine", "brain"]  # passages once each
    assert again[0] == pytest.approx(first[2])
    teacher.score(["brain"], ["outside three"])  # a third: the least recently used ("two") goes
    teacher.score(["brain", "brain"], ["outside one", "outside two"])
    assert encoded[-4:] == ["brain", "outside three", "brain", "outside two"]


def test_dense_teacher_encodes_added_passages_once_through_the_cache_and_resumes_by_block(
    tiny_model_dir: Path, beir_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``add_passages`` (a cloze run's patched passages): encoded once, block by block into the
    embedding cache, looked up by text at every call; a teacher built again after a stop encodes
    only the blocks the first one did not finish, and the scores equal a direct encoding."""
    import irdistill.teachers.dense as dense
    from irdistill.data.collection import Document

    monkeypatch.setattr(dense, "ADDED_BLOCK_ROWS", 1)
    collection = load_collection(beir_dir)
    added = {"x": Document(text="outside one"), "y": Document(text="outside two", title="Titled")}
    texts = [doc.full_text() for doc in added.values()]
    corpus_doc = collection.corpus["d1"].full_text()

    def built(fail_on: str | None = None) -> tuple[DenseTeacher, list[str]]:
        teacher = DenseTeacher(str(tiny_model_dir), collection=collection)
        teacher.add_passages(added)
        seen: list[str] = []
        embed = teacher.encoder.embed

        def spy(batch: list[str], side: str, **kw: object) -> np.ndarray:
            if fail_on in batch:
                raise KeyboardInterrupt  # the job is stopped while it encodes this block
            seen.extend(batch)
            return embed(batch, side, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(teacher.encoder, "embed", spy)
        return teacher, seen

    teacher, seen = built(fail_on=texts[1])
    with pytest.raises(KeyboardInterrupt):
        teacher.score(["vaccine"], [texts[0]])
    teacher, seen = built()
    scores = teacher.score(["vaccine"] * 3, [texts[1], corpus_doc, texts[0]])
    assert texts[0] not in seen and seen.count(texts[1]) == 1  # its block was kept; the second block only
    teacher.score(["brain", "brain"], texts)
    assert seen.count(texts[1]) == 1 and seen[-1] == "brain"  # later calls read them: only the query
    model = teacher.encoder.model
    q = model.encode(["vaccine"], normalize_embeddings=True)[0]
    d = model.encode([texts[1], corpus_doc, texts[0]], normalize_embeddings=True)
    np.testing.assert_allclose(scores, d @ q, atol=1e-5)
    teacher, seen = built()
    teacher.score(["vaccine"], [texts[1]])
    assert seen == ["vaccine"]  # a third teacher: both read from the cache


def test_ensemble_passes_added_passages_to_its_members(tiny_model_dir: Path, beir_dir: Path) -> None:
    from irdistill.data.collection import Document

    collection = load_collection(beir_dir)
    dense_member = DenseTeacher(str(tiny_model_dir), collection=collection)
    added = {"x": Document(text="outside one")}
    EnsembleTeacher([BM25Teacher(collection), dense_member]).add_passages(added)
    assert dense_member._added is added


def test_bm25_teacher_agrees_with_bm25_retrieval(beir_dir: Path) -> None:
    collection = load_collection(beir_dir)
    teacher = BM25Teacher(collection)
    texts = collection.doc_texts()
    query = "vaccine immune response"
    scores = teacher.score([query] * len(texts), texts)
    top_scores, top_ids = teacher.retriever.search(["q"], [query], 3)
    np.testing.assert_allclose(np.sort(scores)[::-1][:3], top_scores[0], rtol=1e-5)
    assert int(np.argmax(scores)) == int(top_ids[0, 0])


def test_bm25_teacher_scores_a_passage_outside_its_collection_on_the_collections_statistics(
    beir_dir: Path,
) -> None:
    """A passage the index lacks gets what an indexed passage of the same text gets (the index's
    df, N and average length); cut-down passages score by hand-computed Lucene BM25."""
    collection = load_collection(beir_dir)
    teacher = BM25Teacher(collection)
    texts = collection.doc_texts()
    query = "vaccine immune response"
    indexed = teacher.score([query] * len(texts), texts)
    retriever = teacher.retriever
    np.testing.assert_allclose(retriever.scores_of_texts(query, texts), indexed, rtol=1e-5, atol=1e-6)
    # an unknown passage, by hand from the index's statistics: tokens vaccin respons vaccin trial
    passage = "The vaccine response. Vaccine trials."
    assert sorted(retriever.tokenize([passage]).vocab) == ["respons", "trial", "vaccin"]
    indptr, vocab = np.asarray(retriever._retriever.scores["indptr"]), retriever._retriever.vocab_dict
    norm = retriever.params.k1 * (1 - retriever.params.b + retriever.params.b * 4 / retriever.avg_doc_len)
    expected = 0.0
    for token, tf in (("vaccin", 2), ("immun", 0), ("respons", 1)):  # the query's terms
        if token in vocab:
            df = indptr[vocab[token] + 1] - indptr[vocab[token]]
            expected += np.log(1 + (len(texts) - df + 0.5) / (df + 0.5)) * tf / (tf + norm)
    assert expected > 0
    assert teacher.score([query], [passage])[0] == pytest.approx(expected, rel=1e-6)
    assert teacher.score([query], ["nothing in common here"])[0] == 0.0


def test_bm25_teacher_scores_a_query_of_stopwords_zero(beir_dir: Path) -> None:
    """No term survives tokenisation: BM25 is 0 for every passage (bm25s itself raised)."""
    collection = load_collection(beir_dir)
    teacher = BM25Teacher(collection)
    texts = collection.doc_texts()
    np.testing.assert_array_equal(teacher.score(["the a of"] * len(texts), texts), np.zeros(len(texts)))


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("minmax", [1.0, 0.0, 0.5]),
        ("zscore", [1.224744871, -1.224744871, 0.0]),
        ("rr", [1 / 61, 1 / 63, 1 / 62]),
    ],
)
def test_normalizations_by_hand(method: str, expected: list[float]) -> None:
    np.testing.assert_allclose(normalize_scores(np.array([4.0, 0.0, 2.0]), method), expected, rtol=1e-6)


def test_constant_scores_normalise_to_zero() -> None:
    assert normalize_scores(np.array([3.0, 3.0]), "minmax").tolist() == [0.0, 0.0]
    assert normalize_scores(np.array([3.0, 3.0]), "zscore").tolist() == [0.0, 0.0]


def test_ensemble_weighted_mean_of_normalised_scores() -> None:
    a = FixedTeacher("a", {"x": 10.0, "y": 0.0, "z": 5.0})  # minmax -> 1, 0, .5
    b = FixedTeacher("b", {"x": 0.0, "y": 1.0, "z": 3.0})  # minmax -> 0, 1/3, 1
    ensemble = EnsembleTeacher([a, b], weights=[3, 1], normalization="minmax")
    np.testing.assert_allclose(
        ensemble.rank("q", ["x", "y", "z"]), [0.75 * 1 + 0.25 * 0, 0.75 * 0 + 0.25 / 3, 0.75 * 0.5 + 0.25 * 1]
    )
    assert ensemble.listwise and ensemble.scale is ScoreScale.NORMALIZED
    assert ensemble.name == "ensemble-minmax:a+b"


def test_ensemble_errors() -> None:
    a = FixedTeacher("a", {})
    with pytest.raises(InputError, match="at least two teachers"):
        EnsembleTeacher([a])
    with pytest.raises(InputError, match="non-negative weights"):
        EnsembleTeacher([a, a], weights=[1, -1])
    with pytest.raises(InputError, match="unknown normalization 'rank'"):
        EnsembleTeacher([a, a], normalization="rank")  # type: ignore[arg-type]


def test_registry_names() -> None:
    assert {"cross-encoder", "dense", "bm25", "ensemble"} <= set(TEACHERS.names())
    with pytest.raises(UnknownNameError, match="unknown teacher 'gpt'; known: .*cross-encoder"):
        TEACHERS.get("gpt")


def test_teacher_setup_shows_corpus_encoding_only_when_asked(
    tiny_model_dir: Path, beir_dir: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The corpus is encoded at the first score (a score job resuming a complete store never
    pays for it), with a progress bar only when asked; later calls are quiet."""
    from irdistill.teachers.factory import build_teacher

    collection = load_collection(beir_dir)
    passage = collection.doc_texts()[0]
    spec = {"teacher": "ensemble", "members": [{"teacher": "bm25"}, {"teacher": "dense", "model": str(tiny_model_dir)}]}
    build_teacher(spec, collection, show_progress_bar=False).rank("protein", [passage])
    assert "Batches" not in capsys.readouterr().err  # (transformers' own "Loading weights" bar aside)
    new_key = {
        **spec,
        "members": [{"teacher": "bm25"}, {"teacher": "dense", "model": str(tiny_model_dir), "max_seq_length": 16}],
    }
    ensemble = build_teacher(new_key, collection, show_progress_bar=True)
    dense = ensemble.teachers[1]
    assert isinstance(dense, DenseTeacher) and dense._corpus is None  # nothing encoded at build
    assert "Batches" not in capsys.readouterr().err
    ensemble.rank("protein", [passage])
    assert "Batches: 100%|" in capsys.readouterr().err  # a new cache key: encoded, with its bar
    assert dense._corpus is not None and dense.encoder.show_progress_bar is False  # per-call: quiet
    dense.score(["protein"], [passage])
    assert "Batches" not in capsys.readouterr().err


def test_build_teacher_from_recipes(tiny_model_dir: Path, beir_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    from irdistill.teachers.factory import build_teacher

    collection = load_collection(beir_dir)
    assert isinstance(build_teacher("bm25", collection), BM25Teacher)
    recipe = tmp_path / "ens.yaml"
    recipe.write_text(
        f"teacher: ensemble\nnormalization: zscore\nweights: [1, 3]\nmembers:\n"
        f"  - {{teacher: bm25}}\n  - {{teacher: dense, model: {tiny_model_dir}}}\n"
    )
    ensemble = build_teacher(str(recipe), collection)
    assert isinstance(ensemble, EnsembleTeacher)
    assert ensemble.normalization == "zscore" and ensemble.weights.tolist() == [0.25, 0.75]
    texts = collection.doc_texts()
    assert ensemble.rank("vaccine immune response", texts).shape == (len(texts),)


def test_build_teacher_errors(beir_dir: Path, tmp_path: Path) -> None:
    from irdistill.teachers.factory import build_teacher

    collection = load_collection(beir_dir)
    with pytest.raises(UnknownNameError, match="unknown teacher 'colbert'"):
        build_teacher("colbert", collection)
    with pytest.raises(InputError, match="teacher bm25 takes no key 'model'"):
        build_teacher({"teacher": "bm25", "model": "x"}, collection)
    with pytest.raises(InputError, match="teacher bm25 needs the collection"):
        build_teacher("bm25")
    with pytest.raises(InputError, match="teacher cross-encoder needs model"):
        build_teacher("cross-encoder", collection)
    with pytest.raises(InputError, match="needs 'members'"):
        build_teacher({"teacher": "ensemble", "members": ["bm25"]}, collection)


@pytest.mark.parametrize(
    "recipe", sorted((Path(__file__).parent.parent / "teachers").glob("*.yaml")), ids=lambda p: p.name
)
def test_shipped_recipes_name_known_teachers_and_keys(recipe: Path) -> None:
    import inspect

    from irdistill.config import load_yaml
    from irdistill.teachers.factory import teacher_names

    def check(spec: dict) -> None:
        assert spec["teacher"] in teacher_names()
        params = inspect.signature(TEACHERS.get(spec["teacher"]).__init__).parameters
        for key in spec:
            if key not in ("teacher", "members"):
                assert key in params, f"{recipe.name}: {key}"
        for member in spec.get("members", []):
            check(member)

    check(load_yaml(recipe))


def test_a_new_teacher_is_one_registered_class(beir_dir: Path, tmp_path: Path) -> None:
    """A plug-in teacher: one registered class; recipes build it by name with its keywords, and
    the score store fingerprints its config(), so a re-run with other settings is refused."""
    from irdistill.scores.table import read_scores
    from irdistill.teachers.factory import build_teacher
    from irdistill.workflows.scoring import score_candidates

    @TEACHERS.register("toy-length")
    class LengthTeacher(PointwiseTeacher):
        scale = ScoreScale.DOT

        def __init__(self, weight: float = 1.0) -> None:
            self.name, self.weight = "toy-length", weight

        def score(self, queries, passages):
            return np.array([self.weight * len(p) for p in passages], dtype=float)

        def config(self):
            return {"weight": self.weight}

    try:
        collection = load_collection(beir_dir, split="test")
        teacher = build_teacher({"teacher": "toy-length", "weight": 2.0}, collection)
        candidates = {q: collection.doc_ids[:3] for q in collection.query_ids}
        store = score_candidates(teacher, collection, candidates, tmp_path / "s", show_progress_bar=False)
        rows = read_scores(store).to_pylist()
        assert rows[0]["score"] == 2.0 * len(collection.corpus[rows[0]["pid"]].full_text())
        with pytest.raises(InputError, match="weight"):
            score_candidates(
                build_teacher({"teacher": "toy-length", "weight": 3.0}, collection),
                collection,
                candidates,
                tmp_path / "s",
                show_progress_bar=False,
            )
    finally:
        TEACHERS.unregister("toy-length")
