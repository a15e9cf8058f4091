"""Sparse students: SPLADE and inference-free SPLADE, their regulariser, training and evaluation.

Two students, both :class:`sentence_transformers.SparseEncoder` models that score ``s(q, d) = q · d``
over the vocabulary ``V`` of a masked-LM tokenizer:

- **SPLADE** (Formal et al., SPLADE v2, arXiv 2109.10086): query and document go through the same
  masked LM; the term weights are max-pooled ``w_t = max_i log(1 + relu(logit_{i,t}))``.
- **Inference-free SPLADE** (Geng et al., arXiv 2411.04403): documents as in SPLADE, queries
  without any transformer: ``q_t = idf(t)`` for each token ``t`` of the tokenized query (once,
  however often it occurs), 0 elsewhere; so ``s(q, d) = sum_{t in q} idf(t) · w_d(t)``.

The IDF is computed from a corpus over the tokenizer's vocabulary, with the BM25 (Lucene) form that
the paper's authors use in their reference code (``get_idf.py`` of
``zhichao-aws/opensearch-sparse-model-tuning-sample``)::

    idf(t) = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5))          (formula="bm25", default)
    idf(t) = max(0, log(N / (1 + df(t))))                           (formula="log")

``N``: documents with at least one non-special token; ``df(t)``: documents whose (untruncated,
special-token-free) tokenization contains ``t``. Special tokens get ``idf = 0``; tokens that occur
in no document get :data:`UNSEEN_IDF` = 1.0, the default of the reference code, on every path (a
computed IDF and an ``idf.json`` mapping that leaves tokens out alike), so a query term the
documents only reach by expansion still counts, without the largest weight of all.

Reused from sentence-transformers 6.2: ``SparseEncoder``; the modules ``Transformer``
(``transformer_task="fill-mask"``, the MLM head), ``SpladePooling`` (max pooling of
``log(1 + relu(·))``), ``SparseStaticEmbedding`` (the IDF lookup query tower, initialised with the
IDF vector and frozen by default) and ``Router.for_query_document`` (asymmetric towers); the losses
``SpladeLoss`` (main loss + document / query regularisers), ``FlopsLoss``, ``SparseMarginMSELoss``,
``SparseDistillKLDivLoss``; ``SparseEncoderTrainer`` with ``router_mapping`` for the two towers.
Written here: the IDF computation, an optional IDF-weighted FLOPS regulariser
(sentence-transformers 6.2's ``FlopsLoss`` only takes a threshold), batched CSR encoding and the
evaluation with :class:`irdistill.indexes.sparse.SparseIndex`.

The IDF-aware penalty of arXiv 2411.04403 is what an inference-free student gets by default: the
frozen IDF query tower plus plain FLOPS on the documents. The paper's authors ship it that way in
sentence-transformers (a frozen ``SparseStaticEmbedding`` query route and ``FlopsLoss``; OpenSearch's
post on their sentence-transformers integration says so). Since ``s(q, d) = sum_{t in q} idf(t)
w_d(t)``, the ranking loss pulls on ``w_d(t)`` ``idf(t)`` times harder, while FLOPS pushes every
token alike. In terms of what a token adds to the score, ``c_t = idf(t) · w_d(t)``, plain FLOPS on
``w`` is FLOPS on ``c / idf``: common (low-IDF) tokens are penalised more, rare ones less.
:class:`IDFWeightedFlopsLoss` (``flops_weights=``) divides by the IDF once more; it is an
irdistill variant for ablations, not the paper's loss.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from irdistill.data.collection import Collection
from irdistill.errors import InputError
from irdistill.paths import resolve_model, save_model_atomic

if TYPE_CHECKING:
    import datasets
    from sentence_transformers import SparseEncoder

__all__ = [
    "IDFWeightedFlopsLoss",
    "SparseEncoded",
    "build_inference_free_student",
    "build_splade_student",
    "compute_idf",
    "document_frequencies",
    "encode_sparse",
    "is_inference_free",
    "load_sparse_student",
    "student_idf",
    "train_sparse_student",
]

logger = logging.getLogger(__name__)

Side = Literal["query", "document"]
IDFFormula = Literal["bm25", "log"]
SparseLoss = Literal["margin-mse", "kl"]
IDF_FORMULAS = ("bm25", "log")
SPARSE_LOSSES = ("margin-mse", "kl")


# --------------------------------------------------------------------------------------------
# building and loading students
# --------------------------------------------------------------------------------------------


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
            logger.warning("%s is a %s, not a masked LM: its MLM head is newly initialised and the "
                           "student needs training before it is useful", path, ", ".join(architectures))
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
    pool = SpladePooling(pooling_strategy=pooling, activation_function=activation,
                         embedding_dimension=_vocab_size(transformer))
    return SparseEncoder(modules=[transformer, pool], device=device, similarity_fn_name="dot")


def document_frequencies(
    texts: Sequence[str], tokenizer: Any, *, vocab_size: int | None = None, batch_size: int = 1024,
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
        batch = list(texts[start:start + batch_size])
        encoded = tokenizer(batch, add_special_tokens=False, truncation=False, verbose=False,
                            return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        for ids in encoded:
            unique = np.unique(np.asarray(ids, dtype=np.int64))
            if len(special):
                unique = unique[~np.isin(unique, special)]
            if unique.size == 0:
                continue
            if unique[-1] >= size:
                raise InputError(f"tokenizer produced token id {int(unique[-1])} but the vocabulary has "
                                 f"{size} entries")
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
    df, n = document_frequencies(texts, tokenizer, vocab_size=vocab_size, batch_size=batch_size,
                                 show_progress_bar=show_progress_bar)
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
    logger.info("IDF (%s) over %d documents; %d of %d vocabulary tokens occur", formula, n,
                int((df > 0).sum()), len(df))
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
        raise InputError(f"the tokenizer has {len(tokenizer.get_vocab())} tokens but the masked LM only "
                         f"{size} outputs")
    if corpus is not None:
        weights = compute_idf(corpus, tokenizer, formula=formula, vocab_size=size,
                              show_progress_bar=show_progress_bar)
    else:
        weights = _idf_vector(idf, tokenizer, size)
    query_tower = SparseStaticEmbedding(tokenizer=tokenizer, weight=weights, frozen=not trainable_idf)
    pool = SpladePooling(pooling_strategy=pooling, activation_function=activation, embedding_dimension=size)
    router = Router.for_query_document(query_modules=[query_tower], document_modules=[transformer, pool])
    return SparseEncoder(modules=[router], device=device, similarity_fn_name="dot")


def _query_static_module(student: Any) -> Any:
    from sentence_transformers.sparse_encoder.modules import Router, SparseStaticEmbedding

    for module in student.children():
        if isinstance(module, Router):
            route = module.sub_modules["query"] if "query" in module.sub_modules else None
            if route is not None and len(route) and isinstance(route[0], SparseStaticEmbedding):
                return route[0]
    return None


def is_inference_free(student: Any) -> bool:
    """Whether the student's query tower is a static (IDF) lookup with no transformer."""
    return _query_static_module(student) is not None


def student_idf(student: Any) -> torch.Tensor | None:
    """The query-side IDF vector of an inference-free student (a detached copy), else ``None``."""
    module = _query_static_module(student)
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


def load_sparse_student(model: str | os.PathLike[str] | SparseEncoder, *, device: str | None = None,
                        max_seq_length: int | None = None) -> SparseEncoder:
    """A ``SparseEncoder`` folder (or hub id) as is, or a bare masked LM as a SPLADE student."""
    from sentence_transformers import SparseEncoder

    if isinstance(model, SparseEncoder):
        return model
    path = resolve_model(model)
    local = Path(path)
    if local.is_dir() and (local / "modules.json").is_file():
        if not _is_sparse_folder(local):
            raise InputError(f"{path}: a dense sentence-transformers model, not a sparse encoder (no SPLADE "
                             "pooling or static sparse module); build a student from its masked LM instead")
        try:
            student = SparseEncoder(path, device=device)
        except OSError as err:
            raise InputError(f"cannot load sparse model {path!r}: {err}") from err
        if max_seq_length is not None:
            student.max_seq_length = max_seq_length
        return student
    return build_splade_student(path, max_seq_length=max_seq_length, device=device)


# --------------------------------------------------------------------------------------------
# an IDF-weighted FLOPS regulariser (ablation; the paper's IDF-aware penalty needs none)
# --------------------------------------------------------------------------------------------


class IDFWeightedFlopsLoss(nn.Module):
    r"""FLOPS with a per-token penalty that falls as IDF rises (an irdistill variant, off by default).

    For a batch of ``N`` document vectors ``w^{(d_i)}`` over the vocabulary ``V``:

        ``ℓ = sum_{j in V} ( (1/N) sum_{i=1..N} w_j^{(d_i)} / max(idf(t_j), ε) )^2``

    i.e. sentence-transformers' ``FlopsLoss`` (``sum_j (mean_i w_j^{(d_i)})^2``, Paria et al.,
    arXiv 2004.05665) on the document vectors divided term-wise by the (floored) IDF, so frequent,
    low-IDF tokens (long posting lists) are penalised more and rare ones less. Special tokens (IDF 0)
    get the largest weight, ``1/ε``.

    .. note::
        This is *not* the IDF-aware penalty of Geng et al. (arXiv 2411.04403): there the IDF enters
        through the inference-free student's IDF query tower, with plain FLOPS on the documents (see
        the module docstring), which is :func:`train_sparse_student`'s default for such a student.
        With an IDF query tower this class counts the IDF a second time; use it to ablate how
        strongly common tokens are pushed out, or to give a siamese SPLADE an IDF-shaped penalty.

    Use it as the ``document_regularizer`` of ``SpladeLoss`` (as :func:`train_sparse_student` does
    with ``flops_weights``); like ``FlopsLoss`` it is not a loss on its own.

    Args:
        model: the student (kept for symmetry with ``FlopsLoss``).
        idf: vocabulary-sized IDF vector (e.g. :func:`compute_idf` or :func:`student_idf`).
        min_idf: the floor ``ε`` of the IDF, so the penalty weight is at most ``1/ε``.
        threshold: as ``FlopsLoss``: only documents with more than this many non-zeros count.

    References:
        Geng, Ru, Yang: Towards Competitive Search Relevance For Inference-Free Learned Sparse
        Retrievers, arXiv 2411.04403. Paria et al.: Minimizing FLOPs to Learn Efficient Sparse
        Representations, arXiv 2004.05665.

    Example:
        >>> import torch
        >>> reg = IDFWeightedFlopsLoss(None, torch.tensor([0.0, 0.5, 1.0, 2.0]), min_idf=0.5)
        >>> w = torch.tensor([[1.0, 0.0, 2.0, 4.0], [0.0, 2.0, 0.0, 0.0]])
        >>> float(reg.compute_loss_from_embeddings(w))  # (1·2/2)² + (2·2/2)² + (2/2)² + (4·0.5/2)²
        7.0
    """

    def __init__(self, model: Any, idf: Any, *, min_idf: float = 0.5, threshold: float | None = None) -> None:
        super().__init__()
        if min_idf <= 0:
            raise InputError(f"min_idf must be > 0, got {min_idf}")
        values = torch.as_tensor(np.asarray(idf.detach().cpu() if hasattr(idf, "detach") else idf,
                                            dtype=np.float32))
        if values.ndim != 1 or not torch.isfinite(values).all():
            raise InputError(f"idf must be a finite 1-D vector, got shape {tuple(values.shape)}")
        self.model = model
        self.min_idf = float(min_idf)
        self.threshold = threshold
        self.register_buffer("penalty", 1.0 / values.clamp(min=self.min_idf), persistent=False)

    def forward(self, sentence_features: Any, labels: Any = None) -> Tensor:
        raise NotImplementedError("IDFWeightedFlopsLoss is a regulariser: use it as the document_regularizer "
                                  "of sentence_transformers' SpladeLoss")

    def compute_loss_from_embeddings(self, embeddings: Tensor) -> Tensor:
        if embeddings.shape[-1] != self.penalty.shape[0]:
            raise InputError(f"IDFWeightedFlopsLoss: embeddings have {embeddings.shape[-1]} dimensions but the "
                             f"IDF vector {self.penalty.shape[0]}")
        if embeddings.is_sparse:
            embeddings = embeddings.to_dense()
        if self.threshold is not None:
            active = (embeddings != 0).sum(dim=1)
            embeddings = embeddings * (active > self.threshold).to(embeddings.dtype).unsqueeze(1)
        penalty = self.penalty.to(device=embeddings.device, dtype=embeddings.dtype)
        return torch.sum(torch.mean(embeddings * penalty, dim=0) ** 2)

    def get_config_dict(self) -> dict[str, Any]:
        return {"min_idf": self.min_idf, "threshold": self.threshold}

    @property
    def citation(self) -> str:
        return """
@article{geng2024competitive,
    title={Towards Competitive Search Relevance For Inference-Free Learned Sparse Retrievers},
    author={Geng, Zhichao and Ru, Dongyu and Yang, Yang},
    journal={arXiv preprint arXiv:2411.04403},
    year={2024}
}
"""


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


def _training_columns(dataset: datasets.Dataset) -> tuple[list[str], int]:
    columns = list(dataset.column_names)
    where = "training dataset"
    for needed in ("query", "positive", "label"):
        if needed not in columns:
            raise InputError(f"{where} has no {needed!r} column; expected query, positive, negative(s), label "
                             f"(as irdistill.scores.hf.to_hf_dataset writes), got {', '.join(columns)}")
    negatives = [c for c in columns if c.startswith("negative")]
    if not negatives:
        raise InputError(f"{where} needs at least one negative column (negative, negative_1, ...) besides "
                         f"query, positive and label; got {', '.join(columns)}")
    ignored = [c for c in columns if c not in ("query", "positive", "label", *negatives)]
    if ignored:
        logger.info("training dataset: columns %s are not model inputs and are left out", ", ".join(ignored))
    if len(dataset) == 0:
        raise InputError(f"{where} is empty")
    return ["query", "positive", *negatives, "label"], len(negatives)


def _kl_labels(dataset: datasets.Dataset, n_neg: int) -> datasets.Dataset:
    """Margins ``t(q,p+) - t(q,n_i)`` -> scores ``[0, -m_1, .., -m_n]`` (softmax is shift invariant)."""
    first = dataset[0]["label"]
    width = 1 if np.isscalar(first) else len(first)
    if width == n_neg + 1:
        return dataset
    if width != n_neg:
        raise InputError(f"labels must hold {n_neg} margins or {n_neg + 1} teacher scores per row, got {width}")

    def convert(batch: dict[str, list[Any]]) -> dict[str, list[list[float]]]:
        rows = [[m] if np.isscalar(m) else m for m in batch["label"]]
        return {"label": [[0.0, *(-float(x) for x in row)] for row in rows]}

    return dataset.map(convert, batched=True, desc="margins -> teacher scores")


def train_sparse_student(
    student: SparseEncoder,
    train_dataset: datasets.Dataset,
    *,
    loss: SparseLoss = "margin-mse",
    flops_weights: Any = None,
    document_regularizer_weight: float = 3e-5,
    query_regularizer_weight: float | None | Literal["auto"] = "auto",
    min_idf: float = 0.5,
    temperature: float = 2.0,
    epochs: float = 1.0,
    max_steps: int = -1,
    batch_size: int = 16,
    lr: float = 2e-5,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    seed: int = 42,
    logging_steps: int = 50,
    learning_rate_mapping: dict[str, float] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    show_progress_bar: bool = True,
) -> SparseEncoder:
    """Distil a teacher into a sparse student with ``SparseEncoderTrainer`` (in place; returns it).

    The loss is ``SpladeLoss(main, λ_d · R_d(documents) + λ_q · R_q(queries))``:

    - main ``margin-mse``: ``SparseMarginMSELoss``, ``mean((s(q,p+) - s(q,n_i)) - label_i)^2``
      (Hofstätter et al., arXiv 2010.02666); ``kl``: ``SparseDistillKLDivLoss`` over
      ``[p+, n_1..n_n]`` with the teacher distribution ``softmax([0, -m_1, .., -m_n] / T)``
      rebuilt from the margins (softmax ignores a shift, so margins suffice);
    - ``R_d``: ``FlopsLoss`` on positives and negatives, or :class:`IDFWeightedFlopsLoss` when
      ``flops_weights`` is given; ``R_q``: ``FlopsLoss`` on queries, off for an inference-free
      student (its queries are not learned). For an inference-free student the default (plain
      FLOPS under the IDF query tower) is the IDF-aware penalty of arXiv 2411.04403.

    Inputs (``irdistill.scores.hf.to_hf_dataset``):

    +------------------------------------------------+---------------------------------------------+
    | columns                                        | ``label``                                   |
    +================================================+=============================================+
    | ``query, positive, negative_1 .. negative_n``  | ``[t(q, p+) - t(q, n_i) for i in 1..n]``    |
    |                                                | (or ``[t(q,p+), t(q,n_1), ..]``)            |
    +------------------------------------------------+---------------------------------------------+

    Args:
        student: from :func:`build_splade_student` or :func:`build_inference_free_student`.
        train_dataset: a ``datasets.Dataset`` with the columns above.
        loss: ``margin-mse`` or ``kl``.
        flops_weights: ``None`` for plain FLOPS on documents (the paper's IDF-aware penalty when
            the student is inference-free); an IDF vector (vocabulary-sized) for the extra
            :class:`IDFWeightedFlopsLoss`; ``"idf"`` for that with the student's own query IDF.
        document_regularizer_weight: ``λ_d``.
        query_regularizer_weight: ``λ_q``; ``"auto"``: ``None`` for an inference-free student,
            ``5e-5`` for SPLADE.
        min_idf: floor of the IDF in :class:`IDFWeightedFlopsLoss`.
        temperature: of the KL loss, student and teacher (sentence-transformers' default 2.0;
            match it to the spread of the teacher margins).
        epochs, max_steps, batch_size, lr, warmup_steps, weight_decay, seed, logging_steps: as in
            ``SparseEncoderTrainingArguments`` (``max_steps > 0`` overrides ``epochs``).
        learning_rate_mapping: parameter-name regex -> learning rate (e.g. a larger one for a
            trainable IDF: ``{r"sub_modules\\.query": 1e-2}``).
        output_dir: when given, the trained student is saved there (atomically, on success).
        show_progress_bar: the trainer's tqdm bars.

    Example:
        >>> student = build_inference_free_student("splade-tiny", corpus=collection)  # doctest: +SKIP
        >>> ds = to_hf_dataset("scores.parquet", collection)  # doctest: +SKIP
        >>> train_sparse_student(student, ds, max_steps=100)  # doctest: +SKIP
    """
    from sentence_transformers.sparse_encoder import (
        SparseEncoderTrainer,
        SparseEncoderTrainingArguments,
    )
    from sentence_transformers.sparse_encoder.losses import (
        SparseDistillKLDivLoss,
        SparseMarginMSELoss,
        SpladeLoss,
    )

    if loss not in SPARSE_LOSSES:
        raise InputError(f"unknown sparse loss {loss!r}; known: {', '.join(SPARSE_LOSSES)}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    columns, n_neg = _training_columns(train_dataset)
    dataset = train_dataset.select_columns(columns)
    inference_free = is_inference_free(student)

    if loss == "kl":
        dataset = _kl_labels(dataset, n_neg)
        main: nn.Module = SparseDistillKLDivLoss(student, temperature=temperature)
    else:
        main = SparseMarginMSELoss(student)

    if isinstance(flops_weights, str):
        if flops_weights != "idf":
            raise InputError(f"flops_weights must be None, an IDF vector or 'idf', got {flops_weights!r}")
        flops_weights = student_idf(student)
        if flops_weights is None:
            raise InputError("flops_weights='idf' needs an inference-free student (an IDF query tower); "
                             "pass an IDF vector, e.g. compute_idf(corpus, tokenizer)")
    document_regularizer = (IDFWeightedFlopsLoss(student, flops_weights, min_idf=min_idf)
                            if flops_weights is not None else None)
    if query_regularizer_weight == "auto":
        query_regularizer_weight = None if inference_free else 5e-5
    elif inference_free and query_regularizer_weight is not None:
        if not _query_static_module(student).weight.requires_grad:
            logger.warning("query_regularizer_weight=%s has no effect: the inference-free student's IDF "
                           "query weights are frozen", query_regularizer_weight)
    objective = SpladeLoss(student, loss=main, document_regularizer_weight=document_regularizer_weight,
                           query_regularizer_weight=query_regularizer_weight,
                           document_regularizer=document_regularizer)

    router_mapping = ({c: ("query" if c == "query" else "document") for c in columns if c != "label"}
                      if inference_free else {})
    with tempfile.TemporaryDirectory(prefix="irdistill-sparse-") as scratch:
        args = SparseEncoderTrainingArguments(
            output_dir=scratch, num_train_epochs=epochs, max_steps=max_steps,
            per_device_train_batch_size=batch_size, learning_rate=lr, warmup_steps=warmup_steps,
            weight_decay=weight_decay, seed=seed, logging_steps=logging_steps, save_strategy="no",
            report_to="none", disable_tqdm=not show_progress_bar, router_mapping=router_mapping,
            learning_rate_mapping=learning_rate_mapping or {},
        )
        trainer = SparseEncoderTrainer(model=student, args=args, train_dataset=dataset, loss=objective)
        result = trainer.train()
    logger.info("sparse student trained: %d steps, training loss %.4f", result.global_step, result.training_loss)
    if output_dir is not None:
        save_model_atomic(student, output_dir)
        logger.info("sparse student saved to %s", output_dir)
    return student


# --------------------------------------------------------------------------------------------
# encoding into CSR and evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class SparseEncoded:
    """Sparse vectors of one list of texts, as a ``(n, V)`` CSR matrix."""

    matrix: sp.csr_matrix
    seconds: float

    @property
    def avg_nnz(self) -> float:
        """Average number of non-zero terms per text."""
        return self.matrix.nnz / self.matrix.shape[0] if self.matrix.shape[0] else 0.0

    @property
    def per_second(self) -> float:
        return self.matrix.shape[0] / self.seconds if self.seconds > 0 else float("inf")


def _to_csr(embeddings: Any) -> sp.csr_matrix:
    if getattr(embeddings, "is_sparse", False):
        coo = embeddings.detach().coalesce().cpu()
        rows, cols = coo.indices().numpy()
        values = coo.values().float().numpy()
        matrix = sp.csr_matrix((values, (rows, cols)), shape=tuple(coo.shape), dtype=np.float32)
    else:
        dense = embeddings.detach().float().cpu().numpy() if hasattr(embeddings, "detach") else np.asarray(embeddings)
        matrix = sp.csr_matrix(dense, dtype=np.float32)
    matrix.eliminate_zeros()
    return matrix


def encode_sparse(
    model: SparseEncoder,
    texts: Sequence[str],
    *,
    side: Side = "document",
    batch_size: int = 32,
    show_progress_bar: bool = True,
    max_active_dims: int | None = None,
    ids: Sequence[str] | None = None,
) -> SparseEncoded:
    """Encode ``texts`` as queries or documents into a CSR matrix (rows in input order).

    Texts are sorted by length (longest first, as sentence-transformers does) so batches pad
    little; each batch's sparse tensor is converted to CSR at once, so memory stays ``O(nnz)``.

    Args:
        model: a ``SparseEncoder`` (SPLADE or inference-free).
        side: ``query`` (``encode_query``, the query route) or ``document``.
        batch_size: texts per forward pass.
        max_active_dims: keep only the largest weights per text (``None``: the model's setting).
        ids: names of the texts, for error messages.
    """
    from tqdm.auto import tqdm

    if side not in ("query", "document"):
        raise InputError(f"side must be query or document, got {side!r}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            name = ids[i] if ids is not None else f"#{i}"
            raise InputError(f"{side} {name!r} has an empty text")
    n = len(texts)
    if n == 0:
        raise InputError(f"no {side} texts to encode")
    encode = model.encode_query if side == "query" else model.encode_document
    order = np.argsort([-len(t) for t in texts], kind="stable")
    parts: list[sp.csr_matrix] = []
    start = time.perf_counter()
    starts = range(0, n, batch_size)
    for b in tqdm(starts, desc=f"encode {side}s", disable=not show_progress_bar, unit="batch"):
        batch = [texts[i] for i in order[b:b + batch_size]]
        embeddings = encode(batch, batch_size=len(batch), show_progress_bar=False, convert_to_tensor=True,
                            convert_to_sparse_tensor=True, max_active_dims=max_active_dims)
        parts.append(_to_csr(embeddings))
    seconds = time.perf_counter() - start
    stacked = sp.vstack(parts, format="csr", dtype=np.float32)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    matrix = stacked[inverse]
    matrix.sort_indices()
    encoded = SparseEncoded(matrix, seconds)
    logger.info("%d %s texts encoded in %.1fs (%.1f/s), %.1f non-zeros each", n, side, seconds,
                encoded.per_second, encoded.avg_nnz)
    return encoded
