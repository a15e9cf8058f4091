"""Query generators: synthetic queries for the passages of a corpus that has no judgements.

A generator turns passages into queries; every query keeps its source passage, which becomes the
query's pseudo-positive (GPL, arXiv 2112.07577). Three generators need no model, for comparison and
for machines without a language model; the fourth asks any Hugging Face causal LM:

==============  ==============================================================================
``title``       the passage's title (one query per titled passage)
``sentence``    a sentence drawn from the passage (inverse cloze task, arXiv 1906.00300)
``span``        a run of ``min_words`` to ``max_words`` consecutive words of the passage
``llm``         a causal LM, prompted with few-shot (passage, query) examples in the style of
                Promptagator (arXiv 2209.11755); batched ``generate`` with its KV cache, sampling
==============  ==============================================================================

Every generator is deterministic given its ``seed`` and the passage ids of a call, so a chunk
generated again after an interruption holds the same queries (:mod:`irdistill.generation.store`).
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from irdistill.data.collection import Document
from irdistill.errors import InputError
from irdistill.registry import Registry

logger = logging.getLogger(__name__)

__all__ = [
    "GENERATORS",
    "LLMQueryGenerator",
    "QueryGenerator",
    "SentenceGenerator",
    "SpanGenerator",
    "TitleGenerator",
    "build_generator",
    "clean_query",
]

GENERATORS: Registry[Any] = Registry("query generator")


class QueryGenerator(Protocol):
    """What the generation job needs: a name, settings for the job's fingerprint, and queries."""

    name: str

    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings that change the queries (part of the job's fingerprint)."""
        ...

    def generate(self, passages: Sequence[tuple[str, Document]], per_passage: int, seed: int) -> list[list[str]]:
        """Up to ``per_passage`` queries for each ``(pid, document)``, in the order given."""
        ...


def passage_rng(seed: int, pid: str) -> random.Random:
    """A random stream of its own for each passage: the draws do not depend on the chunking."""
    digest = hashlib.blake2b(f"{seed}\x00{pid}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


_SENTENCE_END = re.compile(r"(?<!\b[A-Z]\.)(?<=[.!?])\s+(?=[A-Z0-9(\"'])")


def sentences(text: str) -> list[str]:
    """The sentences of ``text``: split after ``.``, ``!`` or ``?`` before a capital, digit or bracket
    (not after an initial such as ``S.``)."""
    return [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def clean_query(text: str, max_words: int = 64) -> str:
    """A generated text cut to its query: first line, no ``Query:`` label, quotes or list marks.

    Returns ``""`` when nothing usable is left, or when the text is longer than ``max_words``.
    """
    for line in text.strip().splitlines():
        line = line.strip()
        if line:
            break
    else:
        return ""
    line = re.sub(r"^(?:\d+[.)]|[-*•])\s+", "", line)
    line = re.sub(r"^(?:search\s+)?(?:query|question|claim)\s*\d*\s*:\s*", "", line, flags=re.IGNORECASE)
    line = line.strip().strip("\"'“”‘’`").strip()
    words = line.split()
    if not words or len(words) > max_words:
        return ""
    return " ".join(words)


def _distinct(queries: list[str], limit: int) -> list[str]:
    """The first ``limit`` queries that differ after case and white-space folding."""
    seen: set[str] = set()
    out = []
    for query in queries:
        key = " ".join(query.lower().split())
        if query and key not in seen:
            seen.add(key)
            out.append(query)
        if len(out) == limit:
            break
    return out


@GENERATORS.register("title")
class TitleGenerator:
    """The passage's title as its query; passages without a title get none."""

    name = "title"

    def config(self) -> dict[str, Any]:
        return {"generator": self.name}

    def generate(self, passages: Sequence[tuple[str, Document]], per_passage: int, seed: int) -> list[list[str]]:
        return [_distinct([clean_query(doc.title)], 1) if doc.title.strip() else [] for _, doc in passages]


@GENERATORS.register("sentence")
class SentenceGenerator:
    """Sentences drawn from the passage's text, as in the inverse cloze task (arXiv 1906.00300).

    Args:
        min_words: sentences shorter than this are not drawn.
    """

    name = "sentence"

    def __init__(self, *, min_words: int = 4) -> None:
        if min_words < 1:
            raise InputError(f"sentence generator: min_words must be >= 1, got {min_words}")
        self.min_words = min_words

    def config(self) -> dict[str, Any]:
        return {"generator": self.name, "min_words": self.min_words}

    def generate(self, passages: Sequence[tuple[str, Document]], per_passage: int, seed: int) -> list[list[str]]:
        out = []
        for pid, doc in passages:
            pool = [s for s in sentences(doc.text) if len(s.split()) >= self.min_words]
            rng = passage_rng(seed, pid)
            rng.shuffle(pool)
            out.append(_distinct([clean_query(s) for s in pool], per_passage))
        return out


@GENERATORS.register("span")
class SpanGenerator:
    """Runs of ``min_words`` to ``max_words`` consecutive words of the passage's text."""

    name = "span"

    def __init__(self, *, min_words: int = 5, max_words: int = 15) -> None:
        if not 1 <= min_words <= max_words:
            raise InputError(f"span generator: need 1 <= min_words <= max_words, got {min_words}, {max_words}")
        self.min_words, self.max_words = min_words, max_words

    def config(self) -> dict[str, Any]:
        return {"generator": self.name, "min_words": self.min_words, "max_words": self.max_words}

    def generate(self, passages: Sequence[tuple[str, Document]], per_passage: int, seed: int) -> list[list[str]]:
        out = []
        for pid, doc in passages:
            words = doc.text.split()
            rng = passage_rng(seed, pid)
            drawn = []
            for _ in range(2 * per_passage):  # a few spare draws for duplicates
                if len(words) < self.min_words:
                    break
                length = rng.randint(self.min_words, min(self.max_words, len(words)))
                start = rng.randint(0, len(words) - length)
                drawn.append(" ".join(words[start : start + length]))
            out.append(_distinct(drawn, per_passage))
        return out


INSTRUCTION = "Write a search query that the passage answers. Reply with the query only, on one line."


@GENERATORS.register("llm")
class LLMQueryGenerator:
    """Queries written by a causal language model from a few-shot prompt (Promptagator style).

    The prompt holds an instruction, the recipe's examples (``{"passage": ..., "query": ...}``, the
    handful of pairs Promptagator asks a user to write; none is allowed) and the passage, cut to
    ``max_passage_tokens``. A chat model gets one user turn per example and the example's query as
    the assistant's reply, then the passage; a model without a chat template gets the same as plain
    text ending with ``Query:``. Passages are generated ``batch_size`` at a time (left padding, the KV
    cache of ``transformers`` ``generate``); ``per_passage`` samples each, and the first line of
    each sample, cleaned (:func:`clean_query`), is the query. Reuses the model loading of the
    listwise LLM teacher (a folder, a ``$IRDISTILL_MODELS`` name, a hub id or a GGUF file).

    Args:
        model: the causal LM.
        gguf_file: the GGUF file in the model folder, when several.
        examples: few-shot ``(passage, query)`` pairs, as dicts with those two keys.
        instruction: the task's wording, first in the prompt.
        max_passage_tokens: passages (and example passages) cut to this many tokens.
        max_new_tokens: length limit of a generated query, in tokens.
        temperature: sampling temperature; ``0`` decodes greedily (``per_passage`` must be 1).
        top_p: nucleus sampling.
        batch_size: passages per ``generate`` call.
        chat: use the tokenizer's chat template (default: when it has one); ``False`` for a base
            model whose GGUF carries a template anyway.
        device, dtype: where and in what precision the model runs (default: CPU or the rank's GPU,
            the checkpoint's dtype).

    References:
        Dai et al., "Promptagator: Few-shot Dense Retrieval From 8 Examples", arXiv 2209.11755;
        Wang et al., "GPL: Generative Pseudo Labeling", arXiv 2112.07577.
    """

    def __init__(
        self,
        model: str,
        *,
        gguf_file: str | None = None,
        examples: Sequence[Mapping[str, str]] = (),
        instruction: str = INSTRUCTION,
        max_passage_tokens: int = 256,
        max_new_tokens: int = 32,
        temperature: float = 0.7,
        top_p: float = 0.95,
        batch_size: int = 16,
        chat: bool | None = None,
        device: str | None = None,
        dtype: Any = None,
    ) -> None:
        from irdistill.llm import locate_causal_lm

        for i, example in enumerate(examples):
            if not isinstance(example, Mapping) or set(example) != {"passage", "query"}:
                raise InputError(f"llm generator: example {i + 1} must have exactly the keys passage and query")
            if not str(example["passage"]).strip() or not str(example["query"]).strip():
                raise InputError(f"llm generator: example {i + 1} has an empty passage or query")
        for key, value in (("max_passage_tokens", max_passage_tokens), ("max_new_tokens", max_new_tokens)):
            if value < 1:
                raise InputError(f"llm generator: {key} must be >= 1, got {value}")
        if batch_size < 1 or temperature < 0 or not 0 < top_p <= 1:
            raise InputError(
                f"llm generator: need batch_size >= 1, temperature >= 0 and 0 < top_p <= 1, got "
                f"{batch_size}, {temperature}, {top_p}"
            )
        self.model_name = str(model)
        self.path, self.gguf_file = locate_causal_lm(self.model_name, gguf_file)
        self.name = f"llm:{self.model_name.rstrip('/').split('/')[-1]}"
        self.examples = [{"passage": str(e["passage"]), "query": str(e["query"])} for e in examples]
        self.instruction = instruction
        self.max_passage_tokens, self.max_new_tokens = max_passage_tokens, max_new_tokens
        self.temperature, self.top_p, self.batch_size = temperature, top_p, batch_size
        self.chat, self.device, self.dtype = chat, device, dtype
        self._lm: Any = None

    def config(self) -> dict[str, Any]:
        return {
            "generator": "llm",
            "model": self.model_name,
            "gguf_file": self.gguf_file,
            "examples": self.examples,
            "instruction": self.instruction,
            "max_passage_tokens": self.max_passage_tokens,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "chat": self.chat,
        }

    @property
    def lm(self) -> Any:
        """The loaded :class:`irdistill.llm.CausalLM` (on first use)."""
        if self._lm is None:
            from irdistill.llm import load_causal_lm

            self._lm = load_causal_lm(self.path, self.gguf_file, device=self.device, dtype=self.dtype)
            self._lm.tokenizer.padding_side = "left"
        return self._lm

    def _cut(self, text: str) -> str:
        tokenizer = self.lm.tokenizer
        text = " ".join(text.split())
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > self.max_passage_tokens:
            text = tokenizer.decode(ids[: self.max_passage_tokens], skip_special_tokens=True).strip()
        return text

    def _uses_chat(self) -> bool:
        return bool(self.lm.tokenizer.chat_template) and self.chat is not False

    def build_prompt(self, passage: str) -> str:
        """The prompt text for one passage (already cut), ending where the query begins."""
        lm = self.lm
        examples = [(self._cut(e["passage"]), e["query"]) for e in self.examples]
        if self.chat and not lm.tokenizer.chat_template:
            raise InputError(f"llm generator: chat is true but {self.model_name} has no chat template")
        if not lm.tokenizer.chat_template or self.chat is False:
            parts = [self.instruction, ""]
            for text, query in examples:
                parts += [f"Passage: {text}", f"Query: {query}", ""]
            parts += [f"Passage: {passage}", "Query:"]
            return "\n".join(parts)
        messages: list[dict[str, str]] = []
        if lm.system_role:
            messages.append({"role": "system", "content": self.instruction})
        for i, (text, query) in enumerate([*examples, (passage, None)]):
            lead = self.instruction + "\n\n" if i == 0 and not lm.system_role else ""
            messages.append({"role": "user", "content": f"{lead}Passage: {text}"})
            if query is not None:
                messages.append({"role": "assistant", "content": query})
        return lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, passages: Sequence[tuple[str, Document]], per_passage: int, seed: int) -> list[list[str]]:
        import torch

        if self.temperature == 0 and per_passage > 1:
            raise InputError("llm generator: temperature 0 (greedy) gives one query a passage; set per_passage: 1")
        lm = self.lm
        out: list[list[str]] = []
        for start in range(0, len(passages), self.batch_size):
            batch = passages[start : start + self.batch_size]
            # one seed a batch, from its first passage: a resumed chunk samples the same queries
            torch.manual_seed(passage_rng(seed, batch[0][0]).getrandbits(63))
            prompts = [self.build_prompt(self._cut(doc.full_text())) for _, doc in batch]
            encoded = lm.tokenizer(
                prompts, return_tensors="pt", padding=True, add_special_tokens=not self._uses_chat()
            ).to(lm.model.device)
            sampling = (
                {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}
                if self.temperature > 0
                else {"do_sample": False}
            )
            with torch.inference_mode():
                generated = lm.model.generate(
                    **encoded,
                    max_new_tokens=self.max_new_tokens,
                    num_return_sequences=per_passage,
                    pad_token_id=lm.tokenizer.pad_token_id,
                    **sampling,
                )
            texts = lm.tokenizer.batch_decode(generated[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
            for i in range(len(batch)):
                own = texts[i * per_passage : (i + 1) * per_passage]
                out.append(_distinct([clean_query(t) for t in own], per_passage))
        return out


def build_generator(spec: str | Mapping[str, Any]) -> QueryGenerator:
    """A generator from a name (``title``, ``sentence``, ``span``) or a dict
    (``{generator: llm, model: ..., examples: [...], ...}``); unknown options raise."""
    options = {"generator": spec} if isinstance(spec, str) else dict(spec)
    name = options.pop("generator", None)
    if not name:
        raise InputError("generate: the generator is not named (generator: title | sentence | span | llm)")
    cls = GENERATORS.get(str(name))
    try:
        return cls(**options)
    except TypeError as err:
        raise InputError(f"generate: generator {name}: {err}") from None
