"""Sparse teacher: a learned sparse retriever's dot product of query and passage term weights.

The sparse half of the heterogeneous dense + sparse ensemble teacher of Geng et al.
(arXiv 2411.04403), where a siamese SPLADE and a dense bi-encoder are normalised per query and
averaged (``teachers/ensemble_splade_mpnet.yaml``). Any sentence-transformers ``SparseEncoder``
works: SPLADE, inference-free, or a bare masked LM taken as SPLADE (see
:func:`irdistill.students.sparse.load_sparse_student`).

Passages are encoded once per distinct text and kept in memory as CSR rows, so the many pairs that
share a passage or a query cost one encoding each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from irdistill.teachers.base import (
    TEACHERS,
    PointwiseTeacher,
    ScoreScale,
    check_pairs,
    check_scores,
)


@TEACHERS.register("sparse")
class SparseTeacher(PointwiseTeacher):
    """``s(q, p) = w(q) · w(p)`` over the vocabulary, with a sentence-transformers ``SparseEncoder``.

    Args:
        model: a ``SparseEncoder`` folder or hub id, or a masked LM (taken as a SPLADE model).
        batch_size: encoding batch size.
        max_seq_length: truncate texts to this many tokens (default: the model's own limit).
        device: ``cpu``, ``cuda`` ... (default: sentence-transformers' choice).
        backend: ``torch`` (default), ``onnx``, ``onnx-int8``, ``openvino``, ``auto`` ... (:mod:`irdistill.backends`).
        show_progress_bar: progress bars while encoding.

    Example:
        >>> teacher = SparseTeacher("naver/splade-v3")  # doctest: +SKIP
        >>> teacher.score(["what causes fever"], ["Fever is caused by ..."])  # doctest: +SKIP
    """

    scale = ScoreScale.DOT

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 32,
        max_seq_length: int | None = None,
        device: str | None = None,
        backend: str = "torch",
        show_progress_bar: bool = False,
    ) -> None:
        from irdistill.backends import backend_of
        from irdistill.encoding import rank_device
        from irdistill.students.sparse import load_sparse_student

        self.model_name = model
        self.name = f"sparse:{model.rstrip('/').split('/')[-1]}"
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.show_progress_bar = show_progress_bar
        # this rank's own GPU under torchrun (cuda:$LOCAL_RANK), as the dense and cross-encoder teachers
        self.model = load_sparse_student(
            model, device=rank_device(device), max_seq_length=max_seq_length, backend=backend
        )
        self.backend = backend_of(self.model)
        self._memo: dict[str, dict[str, Any]] = {"query": {}, "document": {}}

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"teacher": "sparse", "model": self.model_name}
        if self.max_seq_length is not None:
            out["max_seq_length"] = self.max_seq_length
        if self.backend != "torch":  # absent for torch: earlier score stores still resume
            out["backend"] = self.backend
        from irdistill.backends import fingerprint_check, precision_check_of

        check = fingerprint_check(precision_check_of(self.model))
        if check is not None:  # auto-bf16 chose reduced precision: its probe agreement is part of the identity
            out["precision_check"] = check
        return out

    def _rows(self, texts: Sequence[str], side: str) -> Any:
        import scipy.sparse as sp

        from irdistill.students.sparse import encode_sparse

        memo = self._memo[side]
        missing = list(dict.fromkeys(t for t in texts if t not in memo))
        if missing:
            encoded = encode_sparse(
                self.model,
                missing,
                side=side,
                batch_size=self.batch_size,  # type: ignore[arg-type]
                show_progress_bar=self.show_progress_bar,
            )
            for i, text in enumerate(missing):
                memo[text] = encoded.matrix[i]
        return sp.vstack([memo[t] for t in texts], format="csr")

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        check_pairs(queries, passages)
        if not queries:
            return np.zeros(0)
        q = self._rows(queries, "query")
        p = self._rows(passages, "document")
        scores = np.asarray(q.multiply(p).sum(axis=1), dtype=np.float64).ravel()
        return check_scores(scores, self.name)
