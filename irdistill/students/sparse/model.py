"""Sparse students: build SPLADE and inference-free SPLADE, compute the IDF, load a student.

See :mod:`irdistill.students.sparse` for the models and the IDF formulas.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from irdistill.data.collection import Collection
from irdistill.errors import InputError
from irdistill.paths import resolve_model

if TYPE_CHECKING:
    from sentence_transformers import SparseEncoder

__all__ = [
    "UNSEEN_IDF",
    "IDF_FORMULAS",
    "build_splade_student",
    "build_inference_free_student",
    "compute_idf",
    "document_frequencies",
    "is_inference_free",
    "is_sparse_model",
    "load_sparse_student",
    "query_static_module",
    "student_idf",
]

logger = logging.getLogger(__name__)

IDFFormula = Literal["bm25", "log"]
IDF_FORMULAS = ("bm25", "log")


def _mlm_transformer(model: str | os.PathLike[str], max_seq_length: int | None) -> Any:
    """The masked-LM ``Transformer`` module (``transformer_task="fill-mask"``) of a model folder or hub id."""
    from sentence_transformers.sparse_encoder.modules import Transformer

    path = resolve_model(model)
    local = Path(path)
    if local.exists():
        config = local / "config.json"
        if not config.is_file():
            raise InputError(f"{path}: not a masked-LM model folder (no config.json)")
        try:
            architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
        except ValueError as err:
            raise InputError(f"{config}: not valid JSON ({err})") from None
        if architectures and not any(a.endswith("ForMaskedLM") for a in architectures):
            logger.warning(
                "%s is a %s, not a masked LM: its MLM head is newly initialised and the "
                "student needs training before it is useful",
                path,
                ", ".join(architectures),
            )
    try:
        return Transformer(path, transformer_task="fill-mask", max_seq_length=max_seq_length)
    except OSError as err:
        raise InputError(
            f"cannot load masked LM {path!r}: {err}. Give a local folder, put it under $IRDISTILL_MODELS, "
            "or check the hub id and network"
        ) from err


def _vocab_size(transformer: Any) -> int:
    return int(transformer.auto_model.config.vocab_size)


def build_splade_student(
    model: str | os.PathLike[str] = "splade-tiny",
    *,
    pooling: Literal["max", "sum"] = "max",
    activation: Literal["relu", "log1p_relu"] = "relu",
    max_seq_length: int | None = None,
    device: str | None = None,
) -> SparseEncoder:
    """A SPLADE student: masked LM + SPLADE pooling, the same tower for queries and documents.

    ``w_t = max_{i in text} log(1 + relu(logit_{i,t}))`` over the vocabulary (``pooling="max"``,
    SPLADE v2 / SPLADE++; ``"sum"`` is the original SPLADE).

    Args:
        model: a masked-LM folder, a name under ``$IRDISTILL_MODELS`` (``"splade-tiny"``) or a hub id.
        pooling: ``max`` or ``sum`` over the tokens.
        activation: ``relu`` (SPLADE) or ``log1p_relu`` (a second ``log1p``, OpenSearch v3 models).
        max_seq_length: truncation length; ``None`` keeps the tokenizer's own.
        device: torch device; ``None`` lets sentence-transformers pick.

    Example:
        >>> student = build_splade_student("splade-tiny")  # doctest: +SKIP
        >>> student.encode_document(["protein expression"]).shape  # doctest: +SKIP
        torch.Size([1, 30522])
    """
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    transformer = _mlm_transformer(model, max_seq_length)
    pool = SpladePooling(
        pooling_strategy=pooling, activation_function=activation, embedding_dimension=_vocab_size(transformer)
    )
    return SparseEncoder(modules=[transformer, pool], device=device, similarity_fn_name="dot")


def document_frequencies(
    texts: Sequence[str],
    tokenizer: Any,
    *,
    vocab_size: int | None = None,
    batch_size: int = 1024,
    show_progress_bar: bool = False,
) -> tuple[np.ndarray, int]:
    """``(df, N)``: per token id, the number of texts whose tokenization contains it, and the number
    of texts with at least one non-special token. Special tokens are not counted; texts are not
    truncated."""
    from tqdm.auto import tqdm

    size = vocab_size or len(tokenizer.get_vocab())
    special = np.asarray(sorted(set(tokenizer.all_special_ids or [])), dtype=np.int64)
    df = np.zeros(size, dtype=np.int64)
    n_docs = 0
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="document frequencies", disable=not show_progress_bar, unit="batch"):
        batch = list(texts[start : start + batch_size])
        encoded = tokenizer(
            batch,
            add_special_tokens=False,
            truncation=False,
            verbose=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        for ids in encoded:
            unique = np.unique(np.asarray(ids, dtype=np.int64))
            if len(special):
                unique = unique[~np.isin(unique, special)]
            if unique.size == 0:
                continue
            if unique[-1] >= size:
                raise InputError(f"tokenizer produced token id {int(unique[-1])} but the vocabulary has {size} entries")
            df[unique] += 1
            n_docs += 1
    return df, n_docs


UNSEEN_IDF = 1.0
"""The IDF of a (non-special) token that no document contains, on every path."""


def compute_idf(
    corpus: Collection | Sequence[str],
    tokenizer: Any,
    *,
    formula: IDFFormula = "bm25",
    vocab_size: int | None = None,
    batch_size: int = 1024,
    show_progress_bar: bool = False,
) -> torch.Tensor:
    """The IDF of every token of ``tokenizer``'s vocabulary over ``corpus`` (a float32 vector).

    ``bm25``: ``log(1 + (N - df + 0.5) / (df + 0.5))``; ``log``: ``max(0, log(N / (1 + df)))``.
    Special tokens get 0, tokens in no document :data:`UNSEEN_IDF`. See the module docstring for
    ``N`` and ``df``.
    """
    if formula not in IDF_FORMULAS:
        raise InputError(f"unknown IDF formula {formula!r}; known: {', '.join(IDF_FORMULAS)}")
    texts = corpus.doc_texts() if isinstance(corpus, Collection) else list(corpus)
    if not texts:
        raise InputError("cannot compute IDF from an empty corpus")
    df, n = document_frequencies(
        texts, tokenizer, vocab_size=vocab_size, batch_size=batch_size, show_progress_bar=show_progress_bar
    )
    if n == 0:
        raise InputError(f"none of the {len(texts)} corpus texts has a token: cannot compute IDF")
    dff = df.astype(np.float64)
    if formula == "bm25":
        idf = np.log1p((n - dff + 0.5) / (dff + 0.5))
    else:
        idf = np.maximum(0.0, np.log(n / (1.0 + dff)))
    idf[df == 0] = UNSEEN_IDF
    special = [i for i in set(tokenizer.all_special_ids or []) if i < len(idf)]
    idf[special] = 0.0
    logger.info(
        "IDF (%s) over %d documents; %d of %d vocabulary tokens occur", formula, n, int((df > 0).sum()), len(df)
    )
    return torch.tensor(idf, dtype=torch.float32)


def _idf_vector(idf: Any, tokenizer: Any, size: int) -> torch.Tensor:
    if isinstance(idf, Mapping):  # token -> weight, the idf.json layout of OpenSearch models
        vector = torch.full((size,), UNSEEN_IDF, dtype=torch.float32)
        vector[[i for i in set(tokenizer.all_special_ids or []) if i < size]] = 0.0
        for token, weight in idf.items():
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is None or token_id == tokenizer.unk_token_id and token != tokenizer.unk_token:
                raise InputError(f"IDF token {token!r} is not in the tokenizer's vocabulary")
            vector[token_id] = float(weight)
        return vector
    vector = torch.as_tensor(np.asarray(idf, dtype=np.float32))
    if vector.shape != (size,):
        raise InputError(f"IDF vector must have shape ({size},) (the vocabulary size), got {tuple(vector.shape)}")
    if not torch.isfinite(vector).all() or (vector < 0).any():
        raise InputError("IDF weights must be finite and non-negative")
    return vector.clone()


def build_inference_free_student(
    model: str | os.PathLike[str] = "splade-tiny",
    corpus: Collection | Sequence[str] | None = None,
    *,
    idf: Any = None,
    formula: IDFFormula = "bm25",
    trainable_idf: bool = False,
    pooling: Literal["max", "sum"] = "max",
    activation: Literal["relu", "log1p_relu"] = "relu",
    max_seq_length: int | None = None,
    device: str | None = None,
    show_progress_bar: bool = False,
) -> SparseEncoder:
    """An inference-free SPLADE student (Geng et al., arXiv 2411.04403).

    Documents: masked LM + SPLADE pooling, as :func:`build_splade_student`. Queries: tokenizer +
    IDF lookup, no transformer: sentence-transformers' ``SparseStaticEmbedding`` with the IDF as
    its weight (``q_t = idf(t)`` for each distinct token of the query, special tokens excluded).
    The towers sit in a ``Router`` (routes ``query`` and ``document``), so ``encode_query`` and
    ``encode_document`` pick the right one and the model saves and loads as one folder.

    Args:
        model: the masked LM of the document tower (folder, ``$IRDISTILL_MODELS`` name or hub id).
        corpus: texts (or a collection: its documents) the IDF is computed from.
        idf: instead of ``corpus``, a ready IDF: a vocabulary-sized vector or a ``{token: idf}``
            mapping (the ``idf.json`` of OpenSearch models; missing tokens get
            :data:`UNSEEN_IDF`, special tokens 0).
        formula: ``bm25`` or ``log`` (see :func:`compute_idf`).
        trainable_idf: let training update the query weights (the paper keeps them fixed).
        pooling, activation, max_seq_length, device: as in :func:`build_splade_student`.
    """
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import (
        Router,
        SparseStaticEmbedding,
        SpladePooling,
    )

    if (corpus is None) == (idf is None):
        raise InputError("give exactly one of corpus (to compute the IDF from) or idf")
    transformer = _mlm_transformer(model, max_seq_length)
    size = _vocab_size(transformer)
    tokenizer = transformer.tokenizer
    if len(tokenizer.get_vocab()) > size:
        raise InputError(f"the tokenizer has {len(tokenizer.get_vocab())} tokens but the masked LM only {size} outputs")
    if corpus is not None:
        weights = compute_idf(corpus, tokenizer, formula=formula, vocab_size=size, show_progress_bar=show_progress_bar)
    else:
        weights = _idf_vector(idf, tokenizer, size)
    query_tower = SparseStaticEmbedding(tokenizer=tokenizer, weight=weights, frozen=not trainable_idf)
    pool = SpladePooling(pooling_strategy=pooling, activation_function=activation, embedding_dimension=size)
    router = Router.for_query_document(query_modules=[query_tower], document_modules=[transformer, pool])
    return SparseEncoder(modules=[router], device=device, similarity_fn_name="dot")


def query_static_module(student: Any) -> Any:
    from sentence_transformers.sparse_encoder.modules import Router, SparseStaticEmbedding

    for module in student.children():
        if isinstance(module, Router):
            route = module.sub_modules["query"] if "query" in module.sub_modules else None
            if route is not None and len(route) and isinstance(route[0], SparseStaticEmbedding):
                return route[0]
    return None


def is_inference_free(student: Any) -> bool:
    """Whether the student's query tower is a static (IDF) lookup with no transformer."""
    return query_static_module(student) is not None


def student_idf(student: Any) -> torch.Tensor | None:
    """The query-side IDF vector of an inference-free student (a detached copy), else ``None``."""
    module = query_static_module(student)
    return None if module is None else module.weight.detach().clone()


_SPARSE_MODULES = ("SpladePooling", "SparseStaticEmbedding", "SparseAutoEncoder", "IDF")


def _is_sparse_folder(folder: Path) -> bool:
    """A saved ``SparseEncoder`` folder: its config says so, or a module (or route) is sparse."""
    config = folder / "config_sentence_transformers.json"
    try:
        if config.is_file() and json.loads(config.read_text(encoding="utf-8")).get("model_type") == "SparseEncoder":
            return True
    except ValueError as err:
        raise InputError(f"{config}: not valid JSON ({err})") from None
    texts = [(folder / "modules.json").read_text(encoding="utf-8")]
    if (folder / "router_config.json").is_file():
        texts.append((folder / "router_config.json").read_text(encoding="utf-8"))
    return any(name in text for text in texts for name in _SPARSE_MODULES)


def is_sparse_model(model: str | os.PathLike[str]) -> bool:
    """Whether a model folder (or ``$IRDISTILL_MODELS`` name) holds a saved sparse student."""
    folder = Path(resolve_model(str(model)))
    return folder.is_dir() and (folder / "modules.json").is_file() and _is_sparse_folder(folder)


def load_sparse_student(
    model: str | os.PathLike[str] | SparseEncoder,
    *,
    device: str | None = None,
    max_seq_length: int | None = None,
    backend: str = "torch",
) -> SparseEncoder:
    """A ``SparseEncoder`` folder (or hub id) as is, or a bare masked LM as a SPLADE student.

    ``backend`` (:mod:`irdistill.backends`) serves saved ``SparseEncoder`` folders and hub ids;
    a bare masked LM is built as a torch student (save it, then load the folder on another backend).
    """
    from sentence_transformers import SparseEncoder

    from irdistill.backends import check_backend, load_model

    if isinstance(model, SparseEncoder):
        return model
    path = resolve_model(model)
    local = Path(path)
    if local.is_dir() and (local / "modules.json").is_file():
        if not _is_sparse_folder(local):
            raise InputError(
                f"{path}: a dense sentence-transformers model, not a sparse encoder (no SPLADE "
                "pooling or static sparse module); build a student from its masked LM instead"
            )
        try:
            student = load_model("sparse-encoder", path, backend=backend, device=device)
        except OSError as err:
            raise InputError(f"cannot load sparse model {path!r}: {err}") from err
        if max_seq_length is not None:
            student.max_seq_length = max_seq_length
        return student
    if str(check_backend(backend)) != "torch":
        raise InputError(
            f"{path}: backend {backend} needs a saved SparseEncoder folder; this is a bare masked LM, which "
            "is built as a torch SPLADE student (save it with .save(folder), then load that folder)"
        )
    return build_splade_student(path, max_seq_length=max_seq_length, device=device)
