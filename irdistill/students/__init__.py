"""Students: what the teachers' scores are distilled into.

``vq``: Distill-VQ (arXiv 2204.00185), IVF centroids and PQ codebooks learned from the dense
model's own scores and exported as a standard faiss index. Its names load on first use, so
``import irdistill.students`` does not import torch or faiss.

``sparse``: SPLADE and inference-free SPLADE students (arXiv 2109.10086, 2411.04403) built on
sentence-transformers' ``SparseEncoder``, an IDF-weighted FLOPS regulariser, a training helper and
the CSR encoder. Also loaded on first use. A sparse student is searched and evaluated through
:class:`irdistill.retrieval.SparseRetriever` and :func:`irdistill.evaluation.evaluate_retrieval`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from irdistill.students.sparse import (
        IDFWeightedFlopsLoss,
        SparseEncoded,
        build_inference_free_student,
        build_splade_student,
        compute_idf,
        encode_sparse,
        is_inference_free,
        load_sparse_student,
        student_idf,
        train_sparse_student,
    )
    from irdistill.students.vq import (
        DistillVQ,
        faiss_codes,
        listnet_loss,
        save,
        to_faiss,
        train_distill_vq,
    )

_SPARSE = (
    "IDFWeightedFlopsLoss",
    "SparseEncoded",
    "build_inference_free_student",
    "build_splade_student",
    "compute_idf",
    "encode_sparse",
    "is_inference_free",
    "load_sparse_student",
    "student_idf",
    "train_sparse_student",
)

__all__ = [
    "DistillVQ",
    "faiss_codes",
    "listnet_loss",
    "save",
    "to_faiss",
    "train_distill_vq",
    "IDFWeightedFlopsLoss",
    "SparseEncoded",
    "build_inference_free_student",
    "build_splade_student",
    "compute_idf",
    "encode_sparse",
    "is_inference_free",
    "load_sparse_student",
    "student_idf",
    "train_sparse_student",
]


def __getattr__(name: str) -> Any:
    if name in _SPARSE:
        from irdistill.students import sparse

        return getattr(sparse, name)
    if name in __all__:
        from irdistill.students import vq

        return getattr(vq, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
