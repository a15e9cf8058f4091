"""The listwise LLM teacher's vLLM engine without vLLM: request building, parsing, lockstep batching.

A fake engine with vLLM's ``generate`` signature answers each request from the tiny random Llama
of test_listwise_llm (the identifiers' next-token logits, as vLLM returns them with
``logprobs_mode="processed_logits"`` and ``allowed_token_ids``), so the vLLM path must reproduce
the transformers path's scores and orders exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from test_listwise_llm import PASSAGES, QUERY, tiny_llm_dirs  # noqa: F401  (the fixture)

from irdistill.errors import InputError, MissingDependencyError
from irdistill.teachers import listwise_vllm
from irdistill.teachers.listwise_llm import ListwiseLLMTeacher, sliding_window_rank, sliding_window_rank_many
from irdistill.teachers.listwise_vllm import VLLMWindowScorer, parse_window_output, window_request


@dataclass
class Logprob:
    logprob: float


@dataclass
class Completion:
    logprobs: list[dict[int, Logprob]]


@dataclass
class RequestOutput:
    outputs: list[Completion]


@dataclass
class FakeParams:
    max_tokens: int
    temperature: float
    top_p: float
    logprobs: int
    allowed_token_ids: list[int]
    detokenize: bool
    seed: int


@dataclass
class FakeLLM:
    """``generate`` as vLLM's: the top ``logprobs`` processed logits (only allowed tokens survive)."""

    model: Any
    batches: list[int] = field(default_factory=list)

    def generate(self, prompts: list[dict], params: list[FakeParams], use_tqdm: bool = True) -> list[RequestOutput]:
        import torch

        self.batches.append(len(prompts))
        outputs = []
        for prompt, p in zip(prompts, params, strict=True):
            assert p.max_tokens == 1 and p.temperature == 1.0 and p.logprobs == len(p.allowed_token_ids)
            with torch.inference_mode():
                logits = self.model(input_ids=torch.tensor([prompt["prompt_token_ids"]])).logits[0, -1].float()
            masked = torch.full_like(logits, float("-inf"))
            masked[p.allowed_token_ids] = logits[p.allowed_token_ids]
            top = torch.topk(masked, p.logprobs)
            first = {int(t): Logprob(float(v)) for t, v in zip(top.indices, top.values, strict=True)}
            outputs.append(RequestOutput([Completion([first])]))
        return outputs


def test_window_request_and_parsing() -> None:
    prompt, params = window_request([1, 2, 3], [10, 11, 12])
    assert prompt == {"prompt_token_ids": [1, 2, 3]}
    assert params["logprobs"] == 3 and params["allowed_token_ids"] == [10, 11, 12] and params["max_tokens"] == 1
    with pytest.raises(ValueError, match="distinct"):
        window_request([1], [10, 10])
    out = RequestOutput([Completion([{12: Logprob(0.5), 10: Logprob(2.0), 11: Logprob(-1.0)}])])
    np.testing.assert_array_equal(parse_window_output(out, [10, 11, 12]), [2.0, -1.0, 0.5])
    with pytest.raises(RuntimeError, match=r"no value for identifier tokens \[12\].*processed_logits"):
        parse_window_output(RequestOutput([Completion([{10: Logprob(1.0), 11: Logprob(0.0)}])]), [10, 11, 12])
    with pytest.raises(RuntimeError, match="no logprobs"):
        parse_window_output(RequestOutput([Completion([])]), [10])


def test_lockstep_equals_one_list_at_a_time() -> None:
    rng = np.random.default_rng(0)
    relevance = [rng.normal(size=n) for n in (25, 7, 0, 40)]
    calls: list[int] = []

    def many(batch):
        calls.append(len(batch))
        return [relevance[i][items] for i, items in batch]

    together = sliding_window_rank_many([len(r) for r in relevance], many, window=10, stride=5)
    for r, (order, scores) in zip(relevance, together, strict=True):
        alone_order, alone_scores = sliding_window_rank(len(r), lambda items, r=r: r[items], window=10, stride=5)
        assert order == alone_order
        np.testing.assert_array_equal(scores, alone_scores)
    assert calls == [3, 2, 2, 2, 1, 1, 1]  # step j: every list still ranking (25 items: 4 windows, 7: 1, 40: 7)


def test_vllm_engine_reproduces_transformers(tiny_llm_dirs) -> None:  # noqa: F811
    reference = ListwiseLLMTeacher(str(tiny_llm_dirs["chat"]), window=4, stride=2, device="cpu")
    fake = FakeLLM(reference.model)
    scorer = VLLMWindowScorer(fake, FakeParams)
    teacher = ListwiseLLMTeacher(str(tiny_llm_dirs["chat"]), window=4, stride=2, engine=scorer)
    assert teacher.config()["engine"] == "vllm" and "engine" not in reference.config()
    lists = [PASSAGES, PASSAGES[:3], PASSAGES[2:8]]
    queries = [QUERY, "vaccine immune response", "brain gene expression"]
    on_vllm = teacher.rank_many(queries, lists)
    for query, passages, scores in zip(queries, lists, on_vllm, strict=True):
        expected = reference.rank(query, passages)
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-5)
        assert list(np.argsort(-scores, kind="stable")) == list(np.argsort(-expected, kind="stable"))
    # 9 passages take 4 windows of 4 (stride 2), 3 passages 1, 6 passages 2: 4 batched calls, 7 requests
    assert fake.batches == [3, 2, 1, 1] and scorer.requests == 7
    np.testing.assert_allclose(teacher.rank(QUERY, PASSAGES[:4]), reference.rank(QUERY, PASSAGES[:4]), atol=1e-5)


def test_vllm_engine_requested_without_vllm(tiny_llm_dirs, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr(listwise_vllm, "vllm_problem", lambda: 'vllm is not installed (pip install "irdistill[vllm]")')
    with pytest.raises(
        MissingDependencyError, match=r'engine vllm: vllm is not installed \(pip install "irdistill\[vllm\]"\)'
    ):
        ListwiseLLMTeacher(str(tiny_llm_dirs["chat"]), window=4, stride=2, engine="vllm")
    with pytest.raises(InputError, match="engine must be"):
        ListwiseLLMTeacher(str(tiny_llm_dirs["chat"]), engine="tensorrt")


def test_score_workflow_batches_a_chunk_on_vllm(tiny_llm_dirs, beir_dir, tmp_path) -> None:  # noqa: F811
    from irdistill.data import load_collection
    from irdistill.scores.table import read_scores
    from irdistill.workflows.scoring import score_candidates

    collection = load_collection(str(beir_dir), split="test")
    candidates = {q: sorted(collection.corpus)[:6] for q in collection.query_ids}
    reference = ListwiseLLMTeacher(str(tiny_llm_dirs["chat"]), window=4, stride=2, device="cpu")
    fake = FakeLLM(reference.model)
    teacher = ListwiseLLMTeacher(
        str(tiny_llm_dirs["chat"]), window=4, stride=2, engine=VLLMWindowScorer(fake, FakeParams)
    )
    on_vllm = read_scores(score_candidates(teacher, collection, candidates, tmp_path / "v", show_progress_bar=False))
    expected = read_scores(score_candidates(reference, collection, candidates, tmp_path / "t", show_progress_bar=False))
    assert on_vllm.column("pid").to_pylist() == expected.column("pid").to_pylist()
    np.testing.assert_allclose(on_vllm.column("score").to_numpy(), expected.column("score").to_numpy(), atol=1e-5)
    assert fake.batches[0] == len(collection.query_ids)  # one request per query's first window, in one call


@pytest.mark.parametrize(
    ("env", "expected", "visible"),
    [
        ({}, None, None),  # not under torchrun
        ({"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "1"}, None, None),  # one process a node
        ({"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}, "1", "1"),  # every GPU visible: the rank's own
        ({"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "CUDA_VISIBLE_DEVICES": "4,6"}, "6", "6"),
        ({"LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2", "CUDA_VISIBLE_DEVICES": "3"}, None, "3"),  # already one
    ],
)
def test_vllm_sees_only_its_ranks_gpu(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str | None, visible: str | None
) -> None:
    from irdistill.teachers.listwise_vllm import pin_rank_gpu

    for key in ("LOCAL_RANK", "LOCAL_WORLD_SIZE", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert pin_rank_gpu() == expected
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == visible


def test_vllm_rank_beyond_the_visible_gpus_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from irdistill.errors import InputError
    from irdistill.teachers.listwise_vllm import pin_rank_gpu

    monkeypatch.setenv("LOCAL_RANK", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(InputError, match="LOCAL_RANK 2 but CUDA_VISIBLE_DEVICES names 2 devices"):
        pin_rank_gpu()
