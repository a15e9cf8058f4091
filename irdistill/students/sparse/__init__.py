"""Sparse students: SPLADE and inference-free SPLADE, their IDF, training and CSR encoding.

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
Written here: the IDF computation (:mod:`.model`), an optional IDF-weighted FLOPS regulariser
(:class:`irdistill.losses.flops.IDFWeightedFlopsLoss`; sentence-transformers 6.2's ``FlopsLoss``
only takes a threshold), the trainer call (:mod:`.training`) and batched CSR encoding
(:mod:`.encoding`). Retrieval and evaluation: :class:`irdistill.retrieval.SparseRetriever`.

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

from irdistill.losses.flops import IDFWeightedFlopsLoss
from irdistill.students.sparse.encoding import SparseEncoded, encode_sparse
from irdistill.students.sparse.model import (
    IDF_FORMULAS,
    UNSEEN_IDF,
    build_inference_free_student,
    build_splade_student,
    compute_idf,
    document_frequencies,
    is_inference_free,
    is_sparse_model,
    load_sparse_student,
    student_idf,
)
from irdistill.students.sparse.training import SPARSE_LOSSES, train_sparse_student

__all__ = [
    "IDF_FORMULAS",
    "SPARSE_LOSSES",
    "UNSEEN_IDF",
    "IDFWeightedFlopsLoss",
    "SparseEncoded",
    "build_inference_free_student",
    "build_splade_student",
    "compute_idf",
    "document_frequencies",
    "encode_sparse",
    "is_inference_free",
    "is_sparse_model",
    "load_sparse_student",
    "student_idf",
    "train_sparse_student",
]
