"""Static-embedding students: one trained vector per token, a text the mean of its tokens' vectors.

A static student encodes without a transformer (sentence-transformers' ``StaticEmbedding``, an
``nn.EmbeddingBag``), so it is tens to hundreds of times faster than MiniLM on a CPU, at a cost in
quality that distillation is meant to win back. It starts from a transformer's own knowledge, as
model2vec does (Tulkens and van Dongen, 2024, https://github.com/MinishLab/model2vec):

1. every token of the transformer's vocabulary is passed through it alone (``[CLS] t [SEP]``),
   and the model's own pooling of that input is the token's vector;
2. the vectors are centred and reduced by PCA to ``dims`` dimensions;
3. each is weighted by ``a / (a + p(t))``, ``p(t)`` the token's frequency (smooth inverse
   frequency, Arora et al., ICLR 2017), so frequent tokens weigh less in a text's mean. The
   frequencies are counted on ``texts`` (the corpus the student will index, no labels) where
   given, else read from the vocabulary's order as a Zipf rank, model2vec's approximation.

The result is a sentence-transformers folder (``StaticEmbedding`` then ``Normalize``: cosine, like
the transformer students) that :func:`irdistill.workflows.training.train_student` trains with any
dense loss, and the harness evaluates like any dense model. Static students need a learning rate
orders of magnitude above a transformer's (each step moves the rows of the tokens it sees).

The distillation is written here rather than taken from model2vec's ``distill`` extra, which pins
``transformers < 5.4``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from irdistill.encoding import is_static_model
from irdistill.errors import InputError

__all__ = ["distill_static_embeddings", "is_static_model", "token_frequencies"]

logger = logging.getLogger(__name__)

UNUSED = re.compile(r"^\[unused\d+\]$")
"""Placeholder tokens of BERT vocabularies: never produced by the tokenizer, left at zero."""


def token_frequencies(tokenizer: Any, texts: Iterable[str], vocab_size: int, batch: int = 1024) -> np.ndarray:
    """How often each token id occurs in ``texts`` under ``tokenizer`` (a ``tokenizers.Tokenizer``),
    without special tokens, as the static model will tokenise them."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    chunk: list[str] = []

    def flush() -> None:
        for encoding in tokenizer.encode_batch(chunk, add_special_tokens=False):
            np.add.at(counts, np.asarray(encoding.ids, dtype=np.int64), 1)
        chunk.clear()

    for text in texts:
        chunk.append(text)
        if len(chunk) == batch:
            flush()
    if chunk:
        flush()
    return counts


def _token_vectors(model: Any, ids: np.ndarray, batch_size: int, show_progress_bar: bool) -> np.ndarray:
    """The transformer's pooled vector of each token alone, ``[CLS] t [SEP]`` (or the tokenizer's
    own special tokens), through every module before its normalisation."""
    import torch
    from sentence_transformers.sentence_transformer.modules import Normalize
    from tqdm.auto import tqdm

    hf_tokenizer = model.tokenizer
    bos, eos = hf_tokenizer.cls_token_id, hf_tokenizer.sep_token_id
    if bos is None or eos is None:
        bos, eos = hf_tokenizer.bos_token_id, hf_tokenizer.eos_token_id
    modules = []
    for module in model:
        if isinstance(module, Normalize):
            break
        modules.append(module)
    out = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(ids), batch_size), disable=not show_progress_bar, desc="token vectors"):
            chunk = torch.as_tensor(ids[start : start + batch_size], dtype=torch.long)[:, None]
            parts = [chunk]
            if bos is not None:
                parts.insert(0, torch.full_like(chunk, bos))
            if eos is not None:
                parts.append(torch.full_like(chunk, eos))
            input_ids = torch.cat(parts, dim=1)
            features: dict[str, Any] = {
                "input_ids": input_ids,
                "attention_mask": torch.ones_like(input_ids),
                "token_type_ids": torch.zeros_like(input_ids),
            }
            for module in modules:
                features = module(features)
            out.append(features["sentence_embedding"].float().numpy())
    return np.concatenate(out)


def distill_static_embeddings(
    model: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    dims: int | None = 256,
    texts: Iterable[str] | None = None,
    sif_coefficient: float = 1e-4,
    batch_size: int = 512,
    show_progress_bar: bool = False,
) -> Path:
    """Distil transformer ``model`` (folder, ``$IRDISTILL_MODELS`` name or hub id) into a static
    student saved at ``out``; returns ``out``. See the module's text for the steps.

    Args:
        dims: PCA dimensions (``None``: the transformer's own, rotated but not reduced).
        texts: texts to count token frequencies on (the corpus the student will serve); ``None``:
            the vocabulary's order as a Zipf rank.
        sif_coefficient: ``a`` of the weight ``a / (a + p(t))``; ``0`` turns the weighting off.
        batch_size: tokens per forward pass.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding

    from irdistill.encoding import load_sentence_transformer
    from irdistill.paths import resolve_model, save_model_atomic

    if dims is not None and dims < 1:
        raise InputError(f"static student: dims must be >= 1, got {dims}")
    if sif_coefficient < 0:
        raise InputError(f"static student: sif_coefficient must be >= 0, got {sif_coefficient}")
    teacher = load_sentence_transformer(str(resolve_model(str(model))), device="cpu")
    if is_static_model(teacher):
        raise InputError(f"{model}: already a static-embedding model; distil from a transformer")
    hf_tokenizer = teacher.tokenizer
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise InputError(f"{model}: a static student needs a fast (Rust) tokenizer; this one is not")
    vocab = backend.get_vocab(with_added_tokens=True)
    size = max(vocab.values()) + 1
    special = set(getattr(hf_tokenizer, "all_special_ids", []) or [])
    unk = getattr(hf_tokenizer, "unk_token_id", None)
    keep = np.array(
        sorted(i for t, i in vocab.items() if not UNUSED.match(t) and (i not in special or i == unk)), dtype=np.int64
    )
    logger.info("static student from %s: %d of %d tokens through the model", model, len(keep), size)
    vectors = _token_vectors(teacher, keep, batch_size, show_progress_bar)
    centred = vectors - vectors.mean(axis=0)
    width = centred.shape[1] if dims is None else min(dims, centred.shape[1])
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    reduced = centred @ components[:width].T
    if sif_coefficient > 0:
        if texts is not None:
            counts = token_frequencies(backend, texts, size)[keep].astype(np.float64)
            p = (counts + 1) / (counts.sum() + len(keep))  # add-one: a token the texts lack is rare, not absent
        else:
            p = 1.0 / np.arange(1, len(keep) + 1, dtype=np.float64)  # the vocabulary's order as a Zipf rank
            p /= p.sum()
        reduced *= (sif_coefficient / (sif_coefficient + p))[:, None]
    weights = np.zeros((size, width), dtype=np.float32)
    weights[keep] = reduced.astype(np.float32)
    static = StaticEmbedding(hf_tokenizer, embedding_weights=weights, base_model=str(model))
    student = SentenceTransformer(modules=[static, Normalize()], device="cpu", similarity_fn_name="cosine")
    record = {
        "irdistill_static.json": json.dumps(
            {
                "distilled_from": str(model),
                "dims": width,
                "tokens": int(len(keep)),
                "vocabulary": int(size),
                "sif_coefficient": sif_coefficient,
                "frequencies": "texts" if texts is not None else "zipf-rank",
            },
            indent=1,
        )
        + "\n"
    }
    save_model_atomic(student, Path(out), record)
    return Path(out)
