"""irdistill: distill strong rankers into fast first-stage retrievers and compact indexes.

The names a script needs are here (loaded on first use, so ``import irdistill`` and
``irdistill --help`` stay instant: torch, sentence-transformers, faiss and ranx are imported
where they are used)::

    import irdistill

    test = irdistill.load_collection("beir/scifact/test")
    result = irdistill.evaluate_retrieval("sentence-transformers/all-MiniLM-L6-v2", test)
    student = irdistill.train_student(irdistill.TrainConfig(student=..., dataset=..., scores=..., out=...))
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_collection": "irdistill.data",
    "Collection": "irdistill.data",
    "evaluate_retrieval": "irdistill.evaluation",
    "evaluate_run": "irdistill.evaluation",
    "make_retriever": "irdistill.retrieval",
    "retrieve": "irdistill.retrieval",
    "mine_candidates": "irdistill.candidates",
    "build_teacher": "irdistill.teachers.factory",
    "score_candidates": "irdistill.workflows.scoring",
    "read_scores": "irdistill.scores",
    "TrainConfig": "irdistill.workflows.training",
    "train_student": "irdistill.workflows.training",
    "RunConfig": "irdistill.workflows.pipeline",
    "run_pipeline": "irdistill.workflows.pipeline",
    "build_index": "irdistill.workflows.indexing",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'irdistill' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
