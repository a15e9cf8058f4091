"""irdistill: distill strong rankers into fast first-stage retrievers and compact indexes.

Heavy libraries (torch, sentence-transformers, faiss, ranx) are imported where used, so
``import irdistill`` and ``irdistill --help`` stay instant.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
