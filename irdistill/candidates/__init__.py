"""Candidate mining: each query's top-k negatives from a first-stage retriever, streamed.

The retrievers themselves (BM25, dense, sparse, saved indexes) live in :mod:`irdistill.retrieval`.
"""

from irdistill.candidates.mining import (
    FalseNegativeFilter,
    iter_candidates,
    mine_candidates,
    write_candidates,
)

__all__ = ["FalseNegativeFilter", "iter_candidates", "mine_candidates", "write_candidates"]
