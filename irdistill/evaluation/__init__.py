"""Evaluation: the retrieval harness, ranx metrics, run comparison with significance tests."""

from irdistill.evaluation.compare import (
    Comparison,
    RunEntry,
    compare_runs,
    load_run_entry,
    write_comparison,
)
from irdistill.evaluation.harness import EvaluationResult, Performance, evaluate_retrieval
from irdistill.evaluation.metrics import (
    DEFAULT_METRICS,
    evaluate_run,
    paired_t_test,
    parse_metric,
    parse_metrics,
    per_query_scores,
)

__all__ = [
    "Comparison",
    "RunEntry",
    "compare_runs",
    "load_run_entry",
    "write_comparison",
    "DEFAULT_METRICS",
    "EvaluationResult",
    "Performance",
    "evaluate_retrieval",
    "evaluate_run",
    "paired_t_test",
    "parse_metric",
    "parse_metrics",
    "per_query_scores",
]
