"""vLLM engine for the listwise LLM teacher: one request per window, batched across queries.

The listwise teacher (:mod:`irdistill.teachers.listwise_llm`) reads, for each window, the logits
of the first generated token restricted to the window's identifier tokens ``A``, ``B``, ...
(FIRST, Reddy et al., arXiv 2406.15657). On vLLM that is one request per window:

- the prompt is given as token ids (``{"prompt_token_ids": ...}``), exactly the ids the
  transformers path feeds, so both engines see the same input;
- ``SamplingParams(max_tokens=1, logprobs=k, allowed_token_ids=<the k identifier ids>)`` and an
  engine built with ``logprobs_mode="processed_logits"``: vLLM's sampler applies the
  allowed-token whitelist before it gathers the top ``k``, so the ``k`` values returned are the
  identifiers' raw logits (temperature 1, no penalties), the quantities the transformers path
  reads from ``model(...).logits[0, -1, ids]``;
- the windows of one query depend on each other (each re-orders what the next one sees), so
  queries advance in lockstep: step ``j`` sends the ``j``-th window of every query still
  ranking in one ``LLM.generate`` call (:func:`~irdistill.teachers.listwise_llm.sliding_window_rank_many`).

Reused: vLLM's ``LLM`` and ``SamplingParams`` (continuous batching, paged KV cache). vLLM is an
optional extra (``pip install "irdistill[vllm]"``) and needs a CUDA GPU; transformers stays the
default engine. :class:`VLLMWindowScorer` takes any object with vLLM's ``generate`` signature,
which is how the tests check the request building and parsing without a GPU.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from irdistill.backends import MissingBackendError
from irdistill.errors import InputError

__all__ = [
    "VLLMWindowScorer",
    "check_vllm",
    "load_vllm_scorer",
    "parse_window_output",
    "pin_rank_gpu",
    "window_request",
]

logger = logging.getLogger(__name__)

INSTALL = 'pip install "irdistill[vllm]"'


def vllm_problem() -> str | None:
    """``None`` when vLLM can run here, else why not (not installed, no CUDA GPU)."""
    if importlib.util.find_spec("vllm") is None:
        return f"vllm is not installed ({INSTALL})"
    import torch

    if not torch.cuda.is_available():
        return "vLLM needs a CUDA GPU and none is visible"
    return None


def check_vllm(what: str = "engine vllm") -> None:
    """Raise :class:`~irdistill.backends.MissingBackendError` when vLLM cannot run here."""
    problem = vllm_problem()
    if problem:
        raise MissingBackendError(f"{what}: {problem}; the default engine, transformers, needs neither")


def window_request(prompt_ids: Sequence[int], identifier_ids: Sequence[int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The prompt and the ``SamplingParams`` keywords of one window's request.

    Example:
        >>> prompt, params = window_request([5, 6, 7], [40, 41])
        >>> prompt
        {'prompt_token_ids': [5, 6, 7]}
        >>> params["max_tokens"], params["logprobs"], params["allowed_token_ids"]
        (1, 2, [40, 41])
    """
    targets = [int(t) for t in identifier_ids]
    if not targets or len(set(targets)) != len(targets):
        raise ValueError(f"a window needs distinct identifier token ids, got {targets}")
    prompt = {"prompt_token_ids": [int(t) for t in prompt_ids]}
    params = {
        "max_tokens": 1,
        "temperature": 1.0,
        "top_p": 1.0,
        "logprobs": len(targets),
        "allowed_token_ids": targets,
        "detokenize": False,
        "seed": 0,
    }
    return prompt, params


def _value(entry: Any) -> float:
    """A vLLM ``Logprob`` (``.logprob``) or a bare float."""
    return float(getattr(entry, "logprob", entry))


def parse_window_output(output: Any, identifier_ids: Sequence[int]) -> np.ndarray:
    """The identifiers' values from one ``RequestOutput``, in identifier order.

    Reads ``output.outputs[0].logprobs[0]``, the first generated position's ``{token id:
    Logprob}``; every identifier must be there (a missing one means the engine was not built
    with ``logprobs_mode="processed_logits"`` and ``max_logprobs >= window``).
    """
    completions = getattr(output, "outputs", None)
    if not completions:
        raise RuntimeError("vLLM returned a request output without a completion")
    steps = getattr(completions[0], "logprobs", None)
    if not steps:
        raise RuntimeError("vLLM returned no logprobs: the request must ask for logprobs")
    first = steps[0]
    missing = [int(t) for t in identifier_ids if int(t) not in first]
    if missing:
        raise RuntimeError(
            f"vLLM returned no value for identifier tokens {missing} (got {sorted(first)}): build the engine "
            "with logprobs_mode='processed_logits' and max_logprobs >= the window"
        )
    return np.array([_value(first[int(t)]) for t in identifier_ids], dtype=np.float64)


class VLLMWindowScorer:
    """Score many windows in one ``generate`` call.

    Args:
        engine: a ``vllm.LLM`` (or any object with its ``generate(prompts, sampling_params,
            use_tqdm=...)`` returning one output per prompt, in order).
        sampling_params: the ``vllm.SamplingParams`` class (or a stand-in taking its keywords).
    """

    def __init__(self, engine: Any, sampling_params: Callable[..., Any]) -> None:
        self.engine = engine
        self.sampling_params = sampling_params
        self.calls = 0
        self.requests = 0

    def score(self, windows: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[np.ndarray]:
        """``windows``: ``(prompt token ids, identifier token ids)`` each; one array of raw
        identifier logits per window, in order."""
        if not windows:
            return []
        prompts, params = [], []
        for prompt_ids, targets in windows:
            prompt, keywords = window_request(prompt_ids, targets)
            prompts.append(prompt)
            params.append(self.sampling_params(**keywords))
        outputs = list(self.engine.generate(prompts, params, use_tqdm=False))
        if len(outputs) != len(prompts):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} requests")
        self.calls += 1
        self.requests += len(prompts)
        return [parse_window_output(out, targets) for out, (_, targets) in zip(outputs, windows, strict=True)]


def load_vllm_scorer(
    model: str,
    *,
    tokenizer: str | None = None,
    dtype: str | None = None,
    max_window: int = 26,
    options: dict[str, Any] | None = None,
) -> VLLMWindowScorer:
    """A :class:`VLLMWindowScorer` over ``vllm.LLM(model)`` (on this process's GPU).

    Args:
        model: a model folder or hub id (a ``.gguf`` file path for a GGUF checkpoint).
        tokenizer: the tokenizer folder when ``model`` is a GGUF file.
        dtype: ``auto`` (default), ``bfloat16``, ``float16`` or ``float32``.
        max_window: identifiers per window at most (vLLM's ``max_logprobs``).
        options: further ``vllm.LLM`` keywords (``gpu_memory_utilization``, ``max_model_len`` ...).
    """
    check_vllm()
    from vllm import LLM, SamplingParams

    settings: dict[str, Any] = {
        "model": model,
        "dtype": dtype or "auto",
        "logprobs_mode": "processed_logits",
        "max_logprobs": max_window,
        "seed": 0,
        **(options or {}),
    }
    if tokenizer is not None:
        settings["tokenizer"] = tokenizer
    pin_rank_gpu()
    logger.info("loading %s on vLLM", model)
    return VLLMWindowScorer(LLM(**settings), SamplingParams)


def pin_rank_gpu() -> str | None:
    """Under torchrun, show vLLM only this rank's GPU: ``CUDA_VISIBLE_DEVICES`` narrowed to the
    ``LOCAL_RANK``-th visible device (vLLM places a single-GPU engine on the first visible one, so
    every rank would otherwise load on GPU 0). Outside torchrun, or when the variable already names
    one device, nothing changes. Returns the device now visible (``None``: unchanged)."""
    local = os.environ.get("LOCAL_RANK")
    if local is None or not local.isdigit() or int(os.environ.get("LOCAL_WORLD_SIZE", "1")) <= 1:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = [d for d in visible.split(",") if d.strip()] if visible else None
    if devices is not None and len(devices) == 1:
        return None
    rank = int(local)
    if devices is not None and rank >= len(devices):
        raise InputError(f"LOCAL_RANK {rank} but CUDA_VISIBLE_DEVICES names {len(devices)} devices: {visible}")
    chosen = devices[rank].strip() if devices is not None else str(rank)
    os.environ["CUDA_VISIBLE_DEVICES"] = chosen
    logger.info("vLLM on GPU %s (local rank %d)", chosen, rank)
    return chosen
