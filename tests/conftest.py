"""Shared fixtures: a tiny random BERT bi-encoder built from a config, a tiny BEIR folder.

Everything here is offline and takes well under a second; real-data tests use the SciFact
copy under $IRDISTILL_DATA and carry the `slow` marker when they take minutes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = (
    "cell cells protein gene genes cancer tumor tumour mouse mice human brain blood virus "
    "infection vaccine immune drug dose risk patients trial study effect increase decrease "
    "high low level levels expression receptor signal pathway model data result results "
    "the a of in and to is are with for by on not no"
).split()

DOCS = {
    "d1": ("Protein expression", "High protein expression in tumor cells increases cancer risk."),
    "d2": ("Vaccine trial", "The vaccine trial shows immune response in patients."),
    "d3": ("", "Gene expression levels decrease in mouse brain cells."),
    "d4": ("Drug dose", "A low drug dose has no effect on blood pressure."),
    "d5": ("Virus infection", "Virus infection is increased by receptor signal pathway."),
    "d6": ("Study results", "Study results show the model data and results."),
    "d7": ("Human genes", "Human genes with high expression in the brain."),
    "d8": ("Tumour growth", "Tumour cells grow with the receptor pathway."),
}
QUERIES = {
    "q1": "protein expression in cancer cells",
    "q2": "vaccine immune response",
    "q3": "brain gene expression",
    "q4": "drug dose effect",
    "q5": "unjudged query about virus",
}
QRELS_TEST = [("q1", "d1", 1), ("q1", "d8", 1), ("q2", "d2", 2), ("q3", "d3", 1), ("q3", "d7", 1)]
QRELS_TRAIN = [("q4", "d4", 1)]


def write_beir(folder: Path, docs=DOCS, queries=QUERIES, qrels=None) -> Path:
    """Write a BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/test.tsv, qrels/train.tsv)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as out:
        for doc_id, (title, text) in docs.items():
            out.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as out:
        for qid, text in queries.items():
            out.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    splits = qrels or {"test": QRELS_TEST, "train": QRELS_TRAIN}
    for split, rows in splits.items():
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{r}" for q, d, r in rows]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


def tiny_tokenizer(folder: Path):
    """A WordPiece tokenizer over WORDS plus single characters, saved vocab in ``folder``."""
    from transformers import BertTokenizerFast

    letters = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters, *[f"##{c}" for c in letters], ".", ","]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    # transformers 5 ignores vocab_file= here (every word became [UNK]); vocab= is honoured
    tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    assert tokenizer.tokenize("protein expression") == ["protein", "expression"], "tiny vocabulary not loaded"
    return tokenizer


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    """A fresh tiny BEIR folder (8 docs, 5 queries, 4 judged in test) that a test may corrupt."""
    return write_beir(tmp_path / "tiny")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-d random BERT saved as a sentence-transformers folder (mean pooling,
    normalised, cosine similarity)."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertModel

    root = tmp_path_factory.mktemp("tiny-bert")
    bert_dir = root / "bert"
    bert_dir.mkdir()
    tokenizer = tiny_tokenizer(bert_dir)
    torch.manual_seed(0)
    config = tiny_bert_config(tokenizer.vocab_size)
    BertModel(config).save_pretrained(bert_dir)
    tokenizer.save_pretrained(bert_dir)
    word = models.Transformer(str(bert_dir), max_seq_length=64)
    dim_of = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    pooling = models.Pooling(dim_of(), pooling_mode="mean")
    model = SentenceTransformer(modules=[word, pooling, models.Normalize()], device="cpu")
    out = root / "tiny-st"
    model.save(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-d random BERT with a one-logit classification head (a CrossEncoder folder)."""
    import torch
    from transformers import BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-ce")
    tokenizer = tiny_tokenizer(folder)
    torch.manual_seed(1)
    config = tiny_bert_config(tokenizer.vocab_size, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty embedding cache for this test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("IRDISTILL_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    """The real SciFact copy ($IRDISTILL_DATA/scifact); skipped where it is absent."""
    root = os.environ.get("IRDISTILL_DATA")
    folder = Path(root) / "scifact" if root else None
    if folder is None or not (folder / "corpus.jsonl").is_file():
        pytest.skip("SciFact not found: set IRDISTILL_DATA to the folder holding scifact/")
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """Tiny data: one faiss / torch thread avoids OpenMP and intra-op overhead on a busy machine."""
    import faiss
    import torch

    faiss_threads, torch_threads = faiss.omp_get_max_threads(), torch.get_num_threads()
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    yield
    faiss.omp_set_num_threads(faiss_threads)
    torch.set_num_threads(torch_threads)


def tiny_bert_config(vocab_size: int, **extra: int):
    """The 2-layer, 32-d BERT every tiny test model is built from."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        **extra,
    )


def wordpiece_tokenizer(folder: Path):
    """The vocabulary of conftest's ``tiny_tokenizer`` (WORDS plus single characters).

    Built with ``vocab=``: transformers 5 ignores the ``vocab_file=`` that ``tiny_tokenizer``
    passes and leaves only the five special tokens, so every word would be ``[UNK]``.
    """
    from transformers import BertTokenizer

    letters = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters, *[f"##{c}" for c in letters], ".", ","]
    words = list(dict.fromkeys(vocab))
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    return BertTokenizer(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)


@pytest.fixture(scope="session")
def tiny_mlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-d random BertForMaskedLM with a tiny WordPiece tokenizer."""
    import torch
    from transformers import BertForMaskedLM

    folder = tmp_path_factory.mktemp("tiny-mlm")
    tokenizer = wordpiece_tokenizer(folder)
    assert tokenizer.tokenize("cell protein") == ["cell", "protein"]
    torch.manual_seed(0)
    config = tiny_bert_config(tokenizer.vocab_size)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def bm25_scores(beir_dir: Path, tmp_path: Path) -> Path:
    """BM25 teacher scores of every (test query, document) pair of the tiny collection."""
    from irdistill.data import load_collection
    from irdistill.teachers.bm25 import BM25Teacher
    from irdistill.workflows.scoring import score_candidates

    collection = load_collection(beir_dir, split="test")
    candidates = {q: collection.doc_ids for q in collection.queries}
    return score_candidates(
        BM25Teacher(collection), collection, candidates, tmp_path / "scores", show_progress_bar=False
    )
