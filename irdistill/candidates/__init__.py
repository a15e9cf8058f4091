"""First-stage candidate generation (BM25 now; dense mining builds on the FAISS indexes)."""

from irdistill.candidates.bm25 import BM25Params, BM25Retriever
from irdistill.candidates.mining import (
    FalseNegativeFilter,
    iter_candidates,
    mine_candidates,
    write_candidates,
)

__all__ = ["BM25Params", "BM25Retriever", "FalseNegativeFilter", "iter_candidates", "mine_candidates", "write_candidates"]
