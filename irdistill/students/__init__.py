"""Students: what the teachers' scores are distilled into.

``vq``: Distill-VQ (arXiv 2204.00185), IVF centroids and PQ codebooks learned from the dense
model's own scores and exported as a standard faiss index. Its names load on first use, so
``import irdistill.students`` does not import torch or faiss.

``static``: static-embedding students (one vector per token, a text the mean of its tokens'),
distilled from a transformer's vocabulary as model2vec does and trained like any dense student.

``sparse``: SPLADE and inference-free SPLADE students (arXiv 2109.10086, 2411.04403) built on
sentence-transformers' ``SparseEncoder``, an IDF-weighted FLOPS regulariser, a training helper and
the CSR encoder. Also loaded on first use. A sparse student is searched and evaluated through
:class:`irdistill.retrieval.SparseRetriever` and :func:`irdistill.evaluation.evaluate_retrieval`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_MODULE_OF = {
    **dict.fromkeys(
        ("DistillVQ", "faiss_codes", "listnet_loss", "save", "to_faiss", "train_distill_vq"), "irdistill.students.vq"
    ),
    **dict.fromkeys(("distill_static_embeddings", "is_static_model", "token_frequencies"), "irdistill.students.static"),
    **dict.fromkeys(
        (
            "IDFWeightedFlopsLoss",
            "SparseEncoded",
            "build_inference_free_student",
            "build_splade_student",
            "compute_idf",
            "encode_sparse",
            "is_inference_free",
            "is_sparse_model",
            "load_sparse_student",
            "student_idf",
            "train_sparse_student",
        ),
        "irdistill.students.sparse",
    ),
}

__all__ = list(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
