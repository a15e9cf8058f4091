"""Training queries for a corpus without judgements: generators, the resumable generation job and the
round-trip filter (GPL, arXiv 2112.07577; Promptagator, arXiv 2209.11755)."""

from irdistill.generation.generators import (
    GENERATORS,
    LLMQueryGenerator,
    QueryGenerator,
    SentenceGenerator,
    SpanGenerator,
    TitleGenerator,
    build_generator,
    clean_query,
)
from irdistill.generation.store import (
    QUERIES_NAME,
    SCHEMA,
    ClozeCorpus,
    filter_queries,
    generate_queries,
    merge_query_shards,
    pseudo_collection,
    read_queries,
    round_trip_filter,
    sample_passages,
    unpatched,
)

__all__ = [
    "GENERATORS",
    "ClozeCorpus",
    "QUERIES_NAME",
    "SCHEMA",
    "LLMQueryGenerator",
    "QueryGenerator",
    "SentenceGenerator",
    "SpanGenerator",
    "TitleGenerator",
    "build_generator",
    "clean_query",
    "filter_queries",
    "generate_queries",
    "merge_query_shards",
    "pseudo_collection",
    "read_queries",
    "round_trip_filter",
    "sample_passages",
    "unpatched",
]
