"""Teacher scores at rest: the Parquet table, its checks, and its conversions.

- :mod:`irdistill.scores.table`: the schema, :func:`read_scores` / :func:`validate_scores`, one
  teacher's scores (:func:`select_teacher`, :func:`scores_by_query`), runs.
- :mod:`irdistill.scores.msmarco`: the MS MARCO teacher-score TSV layout, both ways.
- :mod:`irdistill.scores.hf`: the Margin-MSE dataset of sentence-transformers.

The scoring job that writes a store is a workflow: :mod:`irdistill.workflows.scoring`.
"""

from __future__ import annotations

from irdistill.scores.hf import to_hf_dataset
from irdistill.scores.msmarco import export_msmarco_tsv, import_msmarco_scores, import_msmarco_tsv
from irdistill.scores.table import (
    SCHEMA,
    SCORES_NAME,
    read_scores,
    rows_by_query,
    scores_by_query,
    scores_to_run,
    select_teacher,
    validate_scores,
)

__all__ = [
    "SCHEMA",
    "SCORES_NAME",
    "read_scores",
    "validate_scores",
    "scores_to_run",
    "select_teacher",
    "scores_by_query",
    "rows_by_query",
    "export_msmarco_tsv",
    "import_msmarco_tsv",
    "import_msmarco_scores",
    "to_hf_dataset",
]
