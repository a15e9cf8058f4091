"""First-stage candidate generation (BM25 now; dense mining builds on the FAISS indexes)."""

from irdistill.candidates.bm25 import BM25Params, BM25Retriever

__all__ = ["BM25Params", "BM25Retriever"]
