"""Evaluation: the retrieval harness, ranx metrics, run comparison with significance tests (over
queries, and over queries and seeds)."""

from irdistill.evaluation.compare import (
    Comparison,
    RunEntry,
    SeededComparison,
    compare_runs,
    compare_seeded,
    load_run_entry,
    write_comparison,
    write_seeded_comparison,
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
from irdistill.evaluation.seeds import SeedComparison, compare_over_seeds, holm

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
    "SeededComparison",
    "compare_seeded",
    "write_seeded_comparison",
    "SeedComparison",
    "compare_over_seeds",
    "holm",
]
