"""Listwise LLM teacher: FIRST single-token ranking with a RankGPT sliding window.

FIRST (Reddy et al., "FIRST: Faster Improved Listwise Reranking with Single Token Decoding",
arXiv 2406.15657) ranks a window of candidates with one forward pass: the candidates are
labelled with single-token identifiers ``[A]``, ``[B]``, ... and the model is asked to write the
ranking as identifiers; instead of generating it, the logits of the *first* generated token,
restricted to the window's identifier tokens, are read as the window's relevance scores.
Lists longer than a window are ranked with the RankGPT sliding window (Sun et al.,
arXiv 2304.09542), from the bottom of the list to the top.

Prompt (the RankGPT / RankZephyr / FIRST listwise prompt with alphabetical identifiers)::

    system: You are RankLLM, an intelligent assistant that can rank passages based on their
            relevancy to the query.
    user:   I will provide you with {k} passages, each indicated by an alphabetical identifier [].
            Rank the passages based on their relevance to the search query: {query}.

            [A] {passage 1}
            [B] {passage 2}
            ...

            Search Query: {query}.
            Rank the {k} passages above based on their relevance to the search query. All the
            passages should be included and listed using identifiers, in descending order of
            relevance. The output format should be [] > [], e.g., [B] > [A]. Only respond with
            the ranking results, do not say any word or explain.
    assistant: [

The query is cut to ``max_query_tokens`` and each passage to ``max_passage_tokens`` tokens of
the LLM's tokenizer; whitespace runs become one space and bracketed labels inside passages
(``[C]``, ``[3]``) become ``(C)``, ``(3)`` so they cannot be mistaken for identifiers. When the
tokenizer has a chat template it is applied (``add_generation_prompt=True``; the system turn is
folded into the user turn when the template refuses a system role); otherwise the prompt is
plain text, the system sentence, a blank line, the user turn and ``"\\n\\nRanking: ["``, with
the tokenizer's BOS token in front. Either way the text ends with ``[``, so the next token is
an identifier letter: BPE tokenizers split ``[`` from a following letter, so ``A`` .. ``Z`` are
one token each there (seen with SmolLM2's and Gemma 3's tokenizers), whereas a prompt ending
before ``[`` would need ``[A`` or `` [`` + ``A``, two tokens. This is checked, not assumed: for
every identifier ``L`` the prompt's tokens followed by ``L`` (and by ``L]``) must be the
prompt's tokens plus exactly one token, distinct for each ``L`` and not the unknown token;
otherwise :class:`~irdistill.errors.InputError` lists the identifiers that failed.

Window scores: for a window of ``k`` passages labelled with the first ``k`` letters,
``z_i = logit(next token = letter_i | prompt)``, the raw logits of one forward pass
(:attr:`ScoreScale.LLM_LOGIT`). A list of ``n <= window`` passages is one window and its
scores are ``z`` unchanged.

Sliding window over ``n > window`` passages (input order = the first-stage ranking). Windows
``W_1, W_2, ...`` are processed bottom-up: ``e_1 = n``, ``e_{j+1} = e_j - stride``,
``s_j = max(e_j - window, 0)``, stopping after the first window with ``s_j = 0`` (RankGPT's
windows, except that a list whose length is not ``window + m * stride`` still gets its top
re-ranked, by a shorter top window). Each window re-orders its positions ``[s_j, e_j)`` of the
current ranking by descending ``z^(j)`` (stable for ties). The final ordering is this
sliding-window ordering.

Scores across windows: logits of different windows are not comparable, so each passage keeps
the raw logit of the *last* window that scored it, shifted by one constant per window so that
scores decrease down the final ordering. With ``W_m`` the last (top) window, window ``W_j``
is the last to touch the segment of final positions ``S_j = [e_{j+1}, e_j)`` for ``j < m``,
and ``S_m = [0, e_m)``; within ``S_j`` the final order is ``W_j``'s, so its raw logits
already decrease. With ``c_m = 0`` and, going down, for ``j = m - 1, ..., 1``::

    score(p) = z^(j)(p) + c_j                                  for p in S_j
    c_j      = min_{q in S_{j+1}} score(q) - g_j - z^(j)(top of S_j)
    g_j      = max(z^(j)(passage W_j placed just above S_j) - z^(j)(top of S_j), 1e-3)

so the top window keeps its raw logits, every lower segment keeps its raw logits up to a
shift, and the gap across each segment boundary is ``W_j``'s own logit gap at that boundary
(at least ``1e-3``). Sorting by score (descending) therefore reproduces the sliding-window
ranking exactly, except between passages whose logits tie exactly within one window.

Reused: transformers' ``AutoModelForCausalLM`` / ``AutoTokenizer`` (GGUF checkpoints through
``gguf_file=``, which needs the ``gguf`` and ``accelerate`` packages) and the tokenizer's own
chat template. Windows of one query depend on each other (each re-orders what the next one
sees), so they run one after another, one forward pass each. With ``engine="vllm"``
(:mod:`irdistill.teachers.listwise_vllm`, a CUDA GPU) each window is one vLLM request for the
same prompt token ids, and :meth:`ListwiseLLMTeacher.rank_many` advances many queries in
lockstep, one batched ``generate`` call per window step.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from irdistill.errors import InputError
from irdistill.llm import load_model, load_tokenizer, locate_causal_lm, template_accepts_system, torch_dtype
from irdistill.teachers.base import TEACHERS, ListwiseTeacher, ScoreScale, check_scores

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = ["ListwiseLLMTeacher", "sliding_window_rank", "sliding_window_rank_many", "sliding_windows"]

IDENTIFIERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
"""Identifier letters, written ``[A]``, ``[B]``, ...; a window holds at most 26 passages."""
PRIMER = "["
"""The assistant's output starts with this, so the next token is an identifier letter."""
MIN_GAP = 1e-3
"""Smallest score gap put between two sliding-window segments."""
PROMPT_VERSION = 1
"""Bumped whenever the prompt text changes (part of :meth:`ListwiseLLMTeacher.config`)."""

SYSTEM = "You are RankLLM, an intelligent assistant that can rank passages based on their relevancy to the query."
_LABEL_IN_TEXT = re.compile(r"\[([A-Za-z]|\d+)\]")


def _unlabel(text: str) -> str:
    """``[C]`` or ``[3]`` inside a passage becomes ``(C)`` / ``(3)``: not an identifier."""
    return _LABEL_IN_TEXT.sub(r"(\1)", text)


def sliding_windows(n: int, window: int, stride: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` windows, in processing order (bottom of the list first).

    Example:
        >>> sliding_windows(25, 20, 10)
        [(5, 25), (0, 15)]
        >>> sliding_windows(40, 20, 10)
        [(20, 40), (10, 30), (0, 20)]
    """
    if n <= 0:
        return []
    windows = []
    end = n
    while True:
        start = max(end - window, 0)
        windows.append((start, end))
        if start == 0:
            return windows
        end -= stride


def _window_steps(n: int, window: int, stride: int) -> Generator[list[int], np.ndarray, tuple[list[int], np.ndarray]]:
    """The sliding window as a coroutine: yields each window's items, receives their raw scores,
    returns ``(order, scores)``; :func:`sliding_window_rank` drives one, :func:`sliding_window_rank_many`
    drives many in lockstep."""
    order = list(range(n))
    raw = np.zeros(n, dtype=np.float64)
    windows = sliding_windows(n, window, stride)
    gaps: list[float] = []  # per window but the last: its logit gap above its segment
    for j, (start, end) in enumerate(windows):
        items = order[start:end]
        z = np.asarray((yield items), dtype=np.float64).reshape(-1)
        if z.shape[0] != len(items):
            raise ValueError(f"score_window returned {z.shape[0]} scores for {len(items)} items")
        perm = np.argsort(-z, kind="stable")
        order[start:end] = [items[i] for i in perm]
        z = z[perm]
        raw[order[start:end]] = z
        if j + 1 < len(windows):
            boundary = windows[j + 1][1] - start  # segment start, relative to this window
            gaps.append(max(float(z[boundary - 1] - z[boundary]), MIN_GAP))

    scores = np.zeros(n, dtype=np.float64)
    top_end = windows[-1][1] if windows else 0
    scores[order[:top_end]] = raw[order[:top_end]]
    lowest = float(scores[order[top_end - 1]]) if top_end else 0.0
    for j in range(len(windows) - 2, -1, -1):  # segments below the top, going down
        seg = order[windows[j + 1][1] : windows[j][1]]
        shift = lowest - gaps[j] - raw[seg[0]]
        scores[seg] = raw[seg] + shift
        lowest = float(scores[seg[-1]])
    return order, scores


def sliding_window_rank(
    n: int,
    score_window: Callable[[list[int]], np.ndarray],
    *,
    window: int,
    stride: int,
    progress: Callable[[int], Any] | None = None,
) -> tuple[list[int], np.ndarray]:
    """Rank items ``0 .. n-1`` (given in first-stage order) with a bottom-up sliding window.

    Args:
        n: number of items.
        score_window: called with the item indices of one window, in their current order;
            returns one raw score per item (higher = more relevant), comparable within the
            call only.
        window: items per window.
        stride: how far the window moves up each step (``1 <= stride < window``).
        progress: called with 1 after each window (a tqdm ``update``).

    Returns:
        ``(order, scores)``: the final ordering (item indices, best first) and one score per
        item, in item order, built as the module docstring says, so that sorting items by
        descending score gives ``order``.
    """
    steps = _window_steps(n, window, stride)
    try:
        items = next(steps)
        while True:
            z = score_window(items)
            if progress is not None:
                progress(1)
            items = steps.send(z)
    except StopIteration as done:
        return done.value


def sliding_window_rank_many(
    sizes: Sequence[int],
    score_windows: Callable[[list[tuple[int, list[int]]]], Sequence[np.ndarray]],
    *,
    window: int,
    stride: int,
    progress: Callable[[int], Any] | None = None,
) -> list[tuple[list[int], np.ndarray]]:
    """:func:`sliding_window_rank` for many lists at once, in lockstep.

    ``score_windows`` gets ``[(list index, items of its current window), ...]`` for every list
    still ranking (step ``j``: every list's ``j``-th window) and returns one score array per
    entry, so an engine can score all of them in one batch. Each list's result equals
    :func:`sliding_window_rank`'s with the same scores.
    """
    results: list[tuple[list[int], np.ndarray] | None] = [None] * len(sizes)
    steps = {i: _window_steps(n, window, stride) for i, n in enumerate(sizes)}
    pending: dict[int, list[int]] = {}
    for i, step in steps.items():
        try:
            pending[i] = next(step)
        except StopIteration as done:
            results[i] = done.value
    while pending:
        batch = list(pending.items())
        scores = list(score_windows(batch))
        if len(scores) != len(batch):
            raise ValueError(f"score_windows returned {len(scores)} arrays for {len(batch)} windows")
        for (i, _), z in zip(batch, scores, strict=True):
            try:
                pending[i] = steps[i].send(z)
            except StopIteration as done:
                results[i] = done.value
                del pending[i]
        if progress is not None:
            progress(len(batch))
    return results  # type: ignore[return-value]  # every list has finished


@TEACHERS.register("listwise-llm")
class ListwiseLLMTeacher(ListwiseTeacher):
    """A causal LLM ranking candidate lists FIRST-style: first-token identifier logits.

    Scores are raw logits (:attr:`ScoreScale.LLM_LOGIT`) for a list that fits one window,
    and raw logits shifted per sliding-window segment for a longer list; see the module
    docstring for the prompt, the identifier check and the exact procedure.

    Args:
        model: a model folder (``config.json`` + weights, or a folder holding a ``.gguf``
            file), a ``.gguf`` file, a name under ``$IRDISTILL_MODELS`` or a hub id.
        gguf_file: the GGUF file inside the model folder; found automatically when the
            folder has exactly one and no ``config.json``.
        window: passages per window (2 to 26: identifiers ``[A]`` to ``[Z]``).
        stride: how far the window moves up the list each step (``1 <= stride < window``).
        max_passage_tokens: each passage is cut to this many tokens.
        max_query_tokens: the query is cut to this many tokens.
        device: torch device; ``None`` picks ``cuda`` when available, else ``cpu``.
        dtype: torch dtype (or its name, or ``"auto"``) to load the weights in; ``None``
            keeps transformers' default.
        engine: ``"transformers"`` (default: one forward pass per window, any device) or
            ``"vllm"`` (:mod:`irdistill.teachers.listwise_vllm`: one request per window, the
            windows of many queries batched; needs vLLM and a CUDA GPU); or a ready
            :class:`~irdistill.teachers.listwise_vllm.VLLMWindowScorer`.
        engine_options: ``vllm.LLM`` keywords (``gpu_memory_utilization``, ``max_model_len`` ...).
        show_progress_bar: a tqdm bar over the windows of each list.

    The model is loaded on first use (or by :meth:`load`), so :meth:`config` is free.

    Example:
        >>> teacher = ListwiseLLMTeacher("SmolLM2-135M-Instruct")  # its GGUF file  # doctest: +SKIP
        >>> scores = teacher.rank("capital of France",  # doctest: +SKIP
        ...                       ["Bananas are yellow.", "Paris is the capital of France."])
        >>> scores.shape, teacher.scale.value  # doctest: +SKIP
        ((2,), 'llm_logit')
    """

    scale = ScoreScale.LLM_LOGIT

    def __init__(
        self,
        model: str,
        *,
        gguf_file: str | None = None,
        window: int = 20,
        stride: int = 10,
        max_passage_tokens: int = 100,
        max_query_tokens: int = 64,
        device: str | None = None,
        dtype: Any = None,
        engine: Any = "transformers",
        engine_options: dict[str, Any] | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        from irdistill.teachers.listwise_vllm import VLLMWindowScorer, check_vllm

        if isinstance(engine, VLLMWindowScorer):
            self.engine, self._scorer = "vllm", engine
        elif engine in ("transformers", "vllm"):
            self.engine, self._scorer = engine, None
        else:
            raise InputError(f"engine must be 'transformers' or 'vllm', got {engine!r}")
        if self.engine == "vllm" and self._scorer is None:
            check_vllm(what=f"listwise-llm {model}: engine vllm")
        self.engine_options = dict(engine_options or {})
        if not 2 <= window <= len(IDENTIFIERS):
            raise InputError(f"window must be between 2 and {len(IDENTIFIERS)} (identifiers [A] to [Z]), got {window}")
        if not 1 <= stride < window:
            raise InputError(f"stride must be at least 1 and less than window ({window}), got {stride}")
        if max_passage_tokens < 1:
            raise InputError(f"max_passage_tokens must be >= 1, got {max_passage_tokens}")
        if max_query_tokens < 1:
            raise InputError(f"max_query_tokens must be >= 1, got {max_query_tokens}")
        self.model_name = str(model)
        self.name = f"listwise-llm:{Path(self.model_name).name}"
        self.path, self.gguf_file = locate_causal_lm(self.model_name, gguf_file)
        self.window = window
        self.stride = stride
        self.max_passage_tokens = max_passage_tokens
        self.max_query_tokens = max_query_tokens
        self.device = device
        self.dtype = dtype
        self.show_progress_bar = show_progress_bar
        self._model: Any = None
        self._tokenizer: Any = None
        self._identifier_ids: list[int] = []
        self._system_role = True
        self._logits_to_keep = False

    # ------------------------------------------------------------------ set-up

    def load(self) -> ListwiseLLMTeacher:
        """Load the tokenizer and model and check the identifiers (done once, on first use)."""
        if self._model is not None or (self.engine == "vllm" and self._tokenizer is not None):
            return self
        import inspect

        logger.info("loading listwise LLM teacher %s", self.path + (f" ({self.gguf_file})" if self.gguf_file else ""))
        torch_dtype(self.dtype)  # a bad name fails before anything loads
        tokenizer = load_tokenizer(self.path, self.gguf_file)
        self._tokenizer = tokenizer
        if tokenizer.chat_template:
            self._system_role = template_accepts_system(tokenizer)
        self._identifier_ids = self._check_identifiers(tokenizer)  # before the slow part
        if self.engine == "vllm":
            if self._scorer is None:
                from irdistill.teachers.listwise_vllm import load_vllm_scorer

                gguf = str(Path(self.path) / self.gguf_file) if self.gguf_file else None
                self._scorer = load_vllm_scorer(
                    gguf or self.path,
                    tokenizer=self.path if gguf else None,
                    dtype=None if self.dtype is None else str(self.dtype).removeprefix("torch."),
                    max_window=self.window,
                    options=self.engine_options,
                )
            return self
        model = load_model(self.path, self.gguf_file, device=self.device, dtype=self.dtype)
        self._logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._model = model
        return self

    def _check_identifiers(self, tokenizer: Any) -> list[int]:
        """Token id of each identifier letter right after the prompt, or an InputError."""
        prompt = self.build_prompt("query", ["passage"] * self.window)
        base = self._encode(prompt)
        ids: list[int] = []
        failed: list[str] = []
        for letter in IDENTIFIERS[: self.window]:
            with_letter = self._encode(prompt + letter)
            closed = self._encode(prompt + letter + "]")
            token = with_letter[-1]
            if (
                len(with_letter) != len(base) + 1
                or with_letter[: len(base)] != base
                or closed[: len(with_letter)] != with_letter
                or token in ids
                or token == tokenizer.unk_token_id
            ):
                failed.append(f"[{letter}]")
            ids.append(token)
        if failed:
            raise InputError(
                f"the tokenizer of {self.model_name} cannot write these identifiers as one "
                f"token after {PRIMER!r} at the end of the prompt: {', '.join(failed)}; a "
                f"window of {self.window} needs [A] to [{IDENTIFIERS[self.window - 1]}]"
            )
        return ids

    # ------------------------------------------------------------------ prompt

    @property
    def tokenizer(self) -> Any:
        return self.load()._tokenizer

    @property
    def model(self) -> Any:
        if self.engine == "vllm":
            raise InputError("the vllm engine holds its own model; this teacher has no transformers model")
        return self.load()._model

    @property
    def identifier_ids(self) -> list[int]:
        """Token ids of ``A``, ``B``, ... (the first ``window`` letters)."""
        return list(self.load()._identifier_ids)

    def _truncate(self, text: str, max_tokens: int) -> str:
        text = " ".join(text.split())
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > max_tokens:
            text = self.tokenizer.decode(ids[:max_tokens], skip_special_tokens=True).strip()
        return text

    def build_prompt(self, query: str, passages: Sequence[str]) -> str:
        """The prompt text for one window (passages already truncated), ending with ``[``."""
        k = len(passages)
        lines = [
            f"I will provide you with {k} passages, each indicated by an alphabetical "
            f"identifier []. Rank the passages based on their relevance to the search query: "
            f"{query}.",
            "",
        ]
        for letter, passage in zip(IDENTIFIERS, passages, strict=False):
            lines.append(f"[{letter}] {_unlabel(passage)}")
        lines += [
            "",
            f"Search Query: {query}.",
            f"Rank the {k} passages above based on their relevance to the search query. All "
            "the passages should be included and listed using identifiers, in descending order "
            f"of relevance. The output format should be [] > [], e.g., [B] > [A]. Only respond "
            "with the ranking results, do not say any word or explain.",
        ]
        user = "\n".join(lines)
        tokenizer = self.tokenizer if self._tokenizer is None else self._tokenizer
        if not tokenizer.chat_template:
            return f"{SYSTEM}\n\n{user}\n\nRanking: {PRIMER}"
        if self._system_role:
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
        else:
            messages = [{"role": "user", "content": f"{SYSTEM}\n\n{user}"}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text + PRIMER

    def _encode(self, prompt: str) -> list[int]:
        tokenizer = self._tokenizer
        ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if not tokenizer.chat_template and tokenizer.bos_token_id is not None:
            ids.insert(0, tokenizer.bos_token_id)
        return ids

    # ------------------------------------------------------------------ scoring

    def score_window(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """Raw first-token logits of ``[A]``, ``[B]``, ... for one window (one forward pass).

        ``query`` and ``passages`` are used as given (no truncation): :meth:`rank` truncates.
        """
        import torch

        if not 1 <= len(passages) <= self.window:
            raise InputError(f"a window holds 1 to {self.window} passages, got {len(passages)}")
        if self.engine == "vllm":
            return self._score_windows([(query, list(passages))])[0]
        model = self.model
        ids = self._encode(self.build_prompt(query, passages))
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit is not None and len(ids) > limit:
            raise InputError(
                f"the prompt of a {len(passages)}-passage window has {len(ids)} "
                f"tokens, more than {self.model_name} takes ({limit}); lower "
                "window or max_passage_tokens"
            )
        device = next(model.parameters()).device
        targets = torch.tensor(self._identifier_ids[: len(passages)], device=device)
        extra = {"logits_to_keep": 1} if self._logits_to_keep else {}
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([ids], device=device), use_cache=False, **extra)
            logits: torch.Tensor = out.logits[0, -1, targets].float()
        return logits.cpu().numpy().astype(np.float64)

    @property
    def batches_queries(self) -> bool:
        """Whether :meth:`rank_many` scores many queries' windows together (the vLLM engine); the
        score workflow then hands it a whole chunk of queries at once."""
        return self.engine == "vllm"

    def _score_windows(self, windows: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        """vLLM: many ``(query, window passages)`` in one batched request."""
        self.load()
        requests = [
            (self._encode(self.build_prompt(query, passages)), self._identifier_ids[: len(passages)])
            for query, passages in windows
        ]
        return self._scorer.score(requests)  # type: ignore[union-attr]

    def _check_texts(self, query: str, passages: Sequence[str]) -> None:
        if not query or not query.strip():
            raise InputError("empty query text")
        for i, passage in enumerate(passages):
            if not passage or not passage.strip():
                raise InputError(f"passage {i}: empty text")

    def rank_many(self, queries: Sequence[str], passage_lists: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """:meth:`rank` for many queries; on vLLM their windows are scored in lockstep, one
        batched request per window step (the scores equal :meth:`rank`'s on the same engine)."""
        if len(queries) != len(passage_lists):
            raise InputError(f"{len(queries)} queries but {len(passage_lists)} candidate lists")
        if self.engine != "vllm":
            return [self.rank(q, p) for q, p in zip(queries, passage_lists, strict=True)]
        for query, passages in zip(queries, passage_lists, strict=True):
            self._check_texts(query, passages)
        short_queries = [self._truncate(q, self.max_query_tokens) for q in queries]
        short = [[self._truncate(p, self.max_passage_tokens) for p in ps] for ps in passage_lists]

        def score(batch: list[tuple[int, list[int]]]) -> list[np.ndarray]:
            return self._score_windows([(short_queries[i], [short[i][j] for j in items]) for i, items in batch])

        ranked = sliding_window_rank_many(
            [len(p) for p in passage_lists], score, window=self.window, stride=self.stride
        )
        return [check_scores(scores, self.name) for _, scores in ranked]

    def rank(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """Scores for ``passages`` (in input order; input order = first-stage ranking).

        Sorting by descending score gives the sliding-window ranking; see the module
        docstring for how scores of different windows are made consistent.
        """
        if self.engine == "vllm":
            return self.rank_many([query], [passages])[0]
        self._check_texts(query, passages)
        if not passages:
            return np.zeros(0, dtype=np.float64)
        short_query = self._truncate(query, self.max_query_tokens)
        short = [self._truncate(p, self.max_passage_tokens) for p in passages]

        def score(items: list[int]) -> np.ndarray:
            return self.score_window(short_query, [short[i] for i in items])

        n_windows = len(sliding_windows(len(passages), self.window, self.stride))
        bar = None
        if self.show_progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_windows, desc="windows", leave=False)
        try:
            _, scores = sliding_window_rank(
                len(passages),
                score,
                window=self.window,
                stride=self.stride,
                progress=bar.update if bar is not None else None,
            )
        finally:
            if bar is not None:
                bar.close()
        return check_scores(scores, self.name)

    def config(self) -> dict[str, Any]:
        """Every setting that changes the scores (for job fingerprints); loads nothing."""
        return {
            "teacher": "listwise-llm",
            "model": self.model_name,
            "gguf_file": self.gguf_file,
            "window": self.window,
            "stride": self.stride,
            "max_passage_tokens": self.max_passage_tokens,
            "max_query_tokens": self.max_query_tokens,
            "dtype": None if self.dtype is None else str(self.dtype).removeprefix("torch."),
            "identifiers": "[A]..[Z]",
            "prompt_version": PROMPT_VERSION,
            "scale": self.scale.value,
            **({"engine": self.engine} if self.engine != "transformers" else {}),
        }

    def __repr__(self) -> str:
        return f"ListwiseLLMTeacher({self.model_name!r}, window={self.window}, stride={self.stride})"
