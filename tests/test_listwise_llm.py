"""ListwiseLLMTeacher: FIRST first-token identifier logits with a RankGPT sliding window.

Fast tests use a 2-layer, 32-d random Llama and a byte-level BPE tokenizer trained in-process;
the slow test ranks a tiny list with the real SmolLM2-135M-Instruct GGUF.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from irdistill import dependencies
from irdistill.errors import InputError, MissingDependencyError
from irdistill.paths import models_dir
from irdistill.teachers.base import TEACHERS, ScoreScale
from irdistill.teachers.listwise_llm import (
    ListwiseLLMTeacher,
    sliding_window_rank,
    sliding_windows,
)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|endoftext|>{{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|endoftext|>assistant\n{% endif %}"
)
SENTENCES = [
    "Rank the passages based on their relevance to the search query.",
    "[A] > [B] > [C] > [D] > [E] > [F]",
    "protein expression in cancer cells; vaccine immune response; brain gene expression",
]
QUERY = "protein expression in cancer"
PASSAGES = [
    "High protein expression in tumor cells increases cancer risk.",
    "The vaccine trial shows immune response in patients.",
    "Gene expression levels decrease in mouse brain cells.",
    "A low drug dose has no effect on blood pressure.",
    "Virus infection is increased by receptor signal pathway.",
    "Study results show the model data and results.",
    "Human genes with high expression in the brain.",
    "Tumour cells grow with the receptor pathway.",
    "Protein levels in the blood of patients with cancer.",
]


def _byte_bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES * 5, trainer)
    return tok


def _save(folder: Path, tokenizer_object, chat_template: str | None, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_object,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    if chat_template:
        tokenizer.chat_template = chat_template
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # random logits far apart enough that orders are not near-ties
        model.lm_head.weight.normal_(0.0, 1.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llm_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny random Llama folders sharing one byte-level BPE: with and without a chat
    template."""
    root = tmp_path_factory.mktemp("tiny-llm")
    tok = _byte_bpe()
    return {"chat": _save(root / "chat", tok, CHAT_TEMPLATE), "plain": _save(root / "plain", tok, None)}


@pytest.fixture(scope="session")
def chat_teacher(tiny_llm_dirs) -> ListwiseLLMTeacher:
    """Window 4, stride 2; the default token limits, which no test text reaches."""
    return ListwiseLLMTeacher(str(tiny_llm_dirs["chat"]), window=4, stride=2, device="cpu").load()


def _reference_logits(folder: Path, prompt: str, letters: str, bos: bool) -> np.ndarray:
    """Next-token logits of the letters after ``prompt``, computed without the teacher."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if bos:
        ids = [tokenizer.bos_token_id, *ids]
    targets = tokenizer.convert_tokens_to_ids(list(letters))
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    return logits[targets].double().numpy()


# ---------------------------------------------------------------- the real tiny model


def test_registered_and_scale():
    assert TEACHERS.get("listwise-llm") is ListwiseLLMTeacher
    assert ListwiseLLMTeacher.scale is ScoreScale.LLM_LOGIT
    assert ListwiseLLMTeacher.listwise


def test_scores_shape_and_finite(chat_teacher):
    for n in (1, 3, 4, 9):
        scores = chat_teacher.rank(QUERY, PASSAGES[:n])
        assert scores.shape == (n,)
        assert np.isfinite(scores).all()
    assert chat_teacher.rank(QUERY, []).shape == (0,)


def test_single_window_is_raw_identifier_logits(chat_teacher, tiny_llm_dirs):
    passages = PASSAGES[:4]
    scores = chat_teacher.rank(QUERY, passages)
    prompt = chat_teacher.build_prompt(QUERY, passages)
    assert prompt.endswith("<|endoftext|>assistant\n[")
    assert "[A] High protein expression" in prompt and "[D] A low drug dose" in prompt
    assert prompt.count(f"search query: {QUERY}.") == 1 and f"Search Query: {QUERY}." in prompt
    expected = _reference_logits(tiny_llm_dirs["chat"], prompt, "ABCD", bos=False)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_plain_text_prompt_without_chat_template(tiny_llm_dirs):
    teacher = ListwiseLLMTeacher(str(tiny_llm_dirs["plain"]), window=5, stride=2, device="cpu")
    passages = PASSAGES[:3]
    scores = teacher.rank(QUERY, passages)
    prompt = teacher.build_prompt(QUERY, passages)
    assert prompt.startswith("You are RankLLM") and prompt.endswith("\n\nRanking: [")
    expected = _reference_logits(tiny_llm_dirs["plain"], prompt, "ABC", bos=True)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_identifiers_are_single_next_tokens(chat_teacher):
    tok = chat_teacher.tokenizer
    assert tok.convert_ids_to_tokens(chat_teacher.identifier_ids) == list("ABCD")
    assert tok.pad_token is not None


def test_truncation_and_labels_in_passages(tiny_llm_dirs, monkeypatch):
    teacher = ListwiseLLMTeacher(
        str(tiny_llm_dirs["chat"]), window=4, stride=2, max_passage_tokens=30, max_query_tokens=10
    )
    seen: list[tuple[str, list[str]]] = []

    def fake(query, passages):
        seen.append((query, list(passages)))
        return np.arange(len(passages), dtype=float)

    monkeypatch.setattr(teacher, "score_window", fake)
    long_query = " ".join(["protein expression"] * 40)
    long_passage = "cancer   cells\n\nwith protein " * 50
    teacher.rank(long_query, [long_passage, "see [B] and [12] here"])
    tok = teacher.tokenizer
    query, passages = seen[0]
    assert len(tok(query, add_special_tokens=False)["input_ids"]) <= 10
    assert len(tok(passages[0], add_special_tokens=False)["input_ids"]) <= 30
    assert "\n" not in passages[0] and "  " not in passages[0]
    prompt = teacher.build_prompt(query, passages)
    assert "[B] see (B) and (12) here" in prompt


def test_deterministic(chat_teacher, tiny_llm_dirs):
    first = chat_teacher.rank(QUERY, PASSAGES)
    np.testing.assert_array_equal(first, chat_teacher.rank(QUERY, PASSAGES))
    again = ListwiseLLMTeacher(str(tiny_llm_dirs["chat"]), window=4, stride=2, device="cpu")
    np.testing.assert_array_equal(first, again.rank(QUERY, PASSAGES))


def test_sliding_window_on_real_model_keeps_top_window_logits(chat_teacher, monkeypatch):
    """The final top window's passages keep exactly the logits of the last forward pass."""
    calls: list[tuple[list[str], np.ndarray]] = []
    real = chat_teacher.score_window

    def spy(query, passages):
        logits = real(query, passages)
        calls.append((list(passages), logits))
        return logits

    monkeypatch.setattr(chat_teacher, "score_window", spy)
    scores = chat_teacher.rank(QUERY, PASSAGES)  # 9 passages: windows (5,9) (3,7) (1,5) (0,3)
    assert [len(p) for p, _ in calls] == [4, 4, 4, 3]
    last_passages, last_logits = calls[-1]
    for passage, logit in zip(last_passages, last_logits, strict=True):
        assert scores[PASSAGES.index(passage)] == pytest.approx(logit, abs=1e-9)
    order = np.argsort(-scores, kind="stable")
    assert sorted(PASSAGES[i] for i in order[:3]) == sorted(last_passages)


# ---------------------------------------------------------------- sliding window, fake scores


def test_sliding_windows_positions():
    assert sliding_windows(3, 20, 10) == [(0, 3)]
    assert sliding_windows(20, 20, 10) == [(0, 20)]
    assert sliding_windows(25, 20, 10) == [(5, 25), (0, 15)]
    assert sliding_windows(100, 20, 10) == [(80 - 10 * i, 100 - 10 * i) for i in range(9)]
    assert sliding_windows(9, 4, 2) == [(5, 9), (3, 7), (1, 5), (0, 3)]
    assert sliding_windows(0, 4, 2) == []


def test_sliding_window_hand_computed():
    """Items 0..5 with relevance 1..6 (first-stage order reversed); window 4, stride 2.

    Window (2, 6) holds 2 3 4 5 -> 5 4 3 2 (logits 106 105 104 103): order 0 1 5 4 3 2.
    Window (0, 4) holds 0 1 5 4 -> 5 4 1 0 (logits 6 5 2 1): order 5 4 1 0 3 2.
    The top segment 5 4 1 0 keeps 6 5 2 1; the segment 3 2 keeps 104 103 shifted so that
    item 3 sits 105 - 104 = 1 (the first window's own gap above it) below item 0: 0, -1.
    """
    relevance = [1, 2, 3, 4, 5, 6]
    offsets = iter([100.0, 0.0])

    def score(items):
        offset = next(offsets)
        return np.array([relevance[i] + offset for i in items])

    order, scores = sliding_window_rank(6, score, window=4, stride=2)
    assert order == [5, 4, 1, 0, 3, 2]
    np.testing.assert_allclose(scores, [1, 2, -1, 0, 5, 6])
    assert list(np.argsort(-scores, kind="stable")) == order


def _rankgpt(n: int, relevance: list[float], window: int, stride: int) -> list[int]:
    """Independent RankGPT-style simulation (bottom-up windows, each sorted by relevance)."""
    ranking = list(range(n))
    end = n
    while True:
        start = max(0, end - window)
        ranking[start:end] = sorted(ranking[start:end], key=lambda i: -relevance[i])
        if start == 0:
            return ranking
        end -= stride


@pytest.mark.parametrize(("n", "window", "stride"), [(9, 4, 2), (25, 20, 10), (37, 6, 1), (30, 5, 4), (7, 20, 10)])
def test_sliding_window_matches_simulation(tiny_llm_dirs, monkeypatch, n, window, stride):
    rng = np.random.default_rng(n)
    relevance = rng.normal(size=n).tolist()
    passages = [f"passage number {i}" for i in range(n)]
    calls: list[list[int]] = []
    last_logits: dict[int, float] = {}

    def fake(query, window_passages):
        items = [int(p.split()[-1]) for p in window_passages]
        calls.append(items)
        offset = rng.normal(scale=50.0)  # windows' logits live on unrelated scales
        logits = np.array([relevance[i] for i in items]) * rng.uniform(0.5, 3.0) + offset
        last_logits.update(zip(items, logits.tolist(), strict=True))
        return logits

    teacher = ListwiseLLMTeacher(str(tiny_llm_dirs["chat"]), window=window, stride=stride)
    monkeypatch.setattr(teacher, "_truncate", lambda text, max_tokens: text)
    monkeypatch.setattr(teacher, "score_window", fake)  # the model is never loaded
    scores = teacher.rank("a query", passages)

    expected = _rankgpt(n, relevance, window, stride)
    assert list(np.argsort(-scores, kind="stable")) == expected
    assert len(calls) == len(sliding_windows(n, window, stride))
    top = sorted(calls[-1])  # the final top window keeps its raw logits
    np.testing.assert_allclose(scores[top], [last_logits[i] for i in top])
    assert teacher._model is None


# ---------------------------------------------------------------- settings and errors


def test_config_is_json_and_loads_nothing(tiny_llm_dirs):
    teacher = ListwiseLLMTeacher(str(tiny_llm_dirs["chat"]), window=8, stride=3, dtype="float32")
    config = teacher.config()
    assert json.loads(json.dumps(config)) == config
    assert config["window"] == 8 and config["stride"] == 3 and config["dtype"] == "float32"
    assert config["max_passage_tokens"] == 100 and config["max_query_tokens"] == 64
    assert teacher._model is None and teacher._tokenizer is None


@pytest.mark.parametrize(("window", "stride"), [(1, 1), (20, 0), (20, 20), (20, 25), (27, 10)])
def test_bad_window_or_stride(tiny_llm_dirs, window, stride):
    with pytest.raises(InputError, match="window|stride"):
        ListwiseLLMTeacher(str(tiny_llm_dirs["chat"]), window=window, stride=stride)


def test_bad_token_limits(tiny_llm_dirs):
    with pytest.raises(InputError, match="max_passage_tokens"):
        ListwiseLLMTeacher(str(tiny_llm_dirs["chat"]), max_passage_tokens=0)
    with pytest.raises(InputError, match="max_query_tokens"):
        ListwiseLLMTeacher(str(tiny_llm_dirs["chat"]), max_query_tokens=0)


def test_empty_texts(chat_teacher):
    with pytest.raises(InputError, match="empty query"):
        chat_teacher.rank("  ", ["a passage"])
    with pytest.raises(InputError, match="passage 1"):
        chat_teacher.rank(QUERY, ["a passage", ""])


def test_letters_missing_from_vocabulary(tmp_path):
    """A word-level tokenizer that knows only A-E: [F] onwards become the unknown token."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["<|endoftext|>", "[", "]", *"ABCDE"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    folder = _save(tmp_path / "words", tok, CHAT_TEMPLATE)
    ListwiseLLMTeacher(str(folder), window=5, stride=2).load()  # A-E are enough
    teacher = ListwiseLLMTeacher(str(folder), window=8, stride=2)
    with pytest.raises(InputError, match=r"\[F\], \[G\], \[H\]") as info:
        teacher.load()
    assert "[E]" not in str(info.value)


def test_identifier_merging_with_the_bracket(tmp_path):
    """A BPE without punctuation splitting learns "[A" as one token: in context, "A" is then
    not a single next token after "[", whatever the vocabulary holds."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator(["[A] [B] [C] [D] rank the passages"] * 50, trainer)
    folder = _save(tmp_path / "merging", tok, CHAT_TEMPLATE)
    with pytest.raises(InputError, match=r"\[A\]"):
        ListwiseLLMTeacher(str(folder), window=4, stride=2).load()


def test_not_a_model_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="not a model folder"):
        ListwiseLLMTeacher(str(empty))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match="not a model folder"):
        ListwiseLLMTeacher(str(text))
    (empty / "a.gguf").write_bytes(b"")
    (empty / "b.gguf").write_bytes(b"")
    with pytest.raises(InputError, match="several GGUF"):
        ListwiseLLMTeacher(str(empty))
    with pytest.raises(InputError, match="no GGUF file 'c.gguf'"):
        ListwiseLLMTeacher(str(empty), gguf_file="c.gguf")


def test_unloadable_model_is_an_input_error(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    teacher = ListwiseLLMTeacher(str(folder))
    with pytest.raises(InputError, match="cannot load"):
        teacher.load()


def test_gguf_without_its_packages(tmp_path, monkeypatch):
    folder = tmp_path / "quantised"
    folder.mkdir()
    (folder / "model.Q4.gguf").write_bytes(b"")
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "gguf", None)  # as if not installed
        for path in (folder, folder / "model.Q4.gguf"):
            with pytest.raises(
                MissingDependencyError,
                match=r"loading the GGUF model model.Q4.gguf needs "
                r'gguf>=0.10 \(not installed\): pip install "gguf>=0.10"',
            ):
                ListwiseLLMTeacher(str(path))
    monkeypatch.setattr(dependencies, "missing", lambda *names: [])  # installed, whatever this machine has
    teacher = ListwiseLLMTeacher(str(folder))
    assert teacher.gguf_file == "model.Q4.gguf" and teacher.config()["gguf_file"] == "model.Q4.gguf"


# ---------------------------------------------------------------- the real small LLM


@pytest.mark.slow
def test_smollm2_gguf_ranks_a_tiny_list():
    folder = models_dir() / "SmolLM2-135M-Instruct"
    if not any(folder.glob("*.gguf")):
        pytest.skip(f"SmolLM2-135M-Instruct GGUF not found in {folder}")
    pytest.importorskip("gguf")
    pytest.importorskip("accelerate")
    teacher = ListwiseLLMTeacher(str(folder), window=20, stride=10, device="cpu")
    passages = [
        "Bananas are a yellow fruit rich in potassium.",
        "Paris is the capital and largest city of France.",
        "The Great Wall of China is very long.",
        "Photosynthesis converts light into chemical energy in plants.",
    ]
    scores = teacher.rank("What is the capital of France?", passages)
    assert scores.shape == (4,) and np.isfinite(scores).all()
    tok = teacher.tokenizer
    ids = teacher.identifier_ids
    assert len(set(ids)) == 20
    assert tok.convert_ids_to_tokens(ids) == list("ABCDEFGHIJKLMNOPQRST")
    prompt = teacher.build_prompt("q", passages)
    base = teacher._encode(prompt)
    for letter, token in zip("ABCD", ids, strict=False):
        assert teacher._encode(prompt + letter) == [*base, token]
