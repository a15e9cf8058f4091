"""Score tables as the Hugging Face dataset sentence-transformers' ``MarginMSELoss`` trains on."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from irdistill.data.collection import Collection, Qrels
from irdistill.errors import InputError, MissingDependencyError
from irdistill.scores.table import PathLike, rows_by_query, scores_table, select_teacher

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

__all__ = ["to_hf_dataset"]


def to_hf_dataset(
    scores: PathLike | pa.Table,
    collection: Collection,
    qrels: Qrels | None = None,
    *,
    negatives_per_query: int = 1,
    seed: int = 0,
    teacher: str | None = None,
) -> datasets.Dataset:
    """A Margin-MSE training set for sentence-transformers' ``MarginMSELoss``.

    One row per (query, judged-relevant scored passage); each row takes
    ``negatives_per_query`` different passages, drawn uniformly without replacement (seeded
    NumPy generator, queries in score-table order) from the query's scored passages that are
    not judged relevant. Queries with no scored positive or too few negatives are skipped (and
    counted in the log).

    Columns (in this order, as the loss reads them):

    +------------------------------------------------+---------------------------------------------+
    | columns                                        | ``label``                                   |
    +================================================+=============================================+
    | ``query, positive, negative_1 .. negative_n``  | ``[t(q, p+) - t(q, n_i) for i in 1..n]``    |
    +------------------------------------------------+---------------------------------------------+

    Texts are the query text and ``Document.full_text()``; ``t`` is the teacher's raw score.
    The label is always a list of ``n`` margins, the layout ``MarginMSELoss`` (ST >= 3)
    accepts for one or several negatives.

    Args:
        scores: teacher-score Parquet path (or job folder) or table.
        collection: the texts.
        qrels: relevance judgements; default ``collection.qrels``.
        negatives_per_query: ``n``, the negatives per row.
        seed: seed of the negative sampling.
        teacher: which teacher's scores; required when the scores hold several.

    Raises:
        MissingDependencyError: ``datasets`` is not installed.
    """
    try:
        import datasets
    except ImportError as err:
        raise MissingDependencyError(
            "to_hf_dataset needs the Hugging Face datasets library: pip install datasets"
        ) from err
    if not isinstance(negatives_per_query, int) or negatives_per_query < 1:
        raise InputError(f"negatives_per_query must be a positive integer, got {negatives_per_query!r}")
    table, name = select_teacher(scores_table(scores), teacher)
    qrels = collection.qrels if qrels is None else qrels
    where = collection.label
    rng = np.random.default_rng(seed)
    n = negatives_per_query
    columns: dict[str, list[Any]] = {
        "query": [],
        "positive": [],
        **{f"negative_{i}": [] for i in range(1, n + 1)},
        "label": [],
    }
    skipped = 0
    for qid, rows in rows_by_query(table).items():
        if qid not in collection.queries:
            raise InputError(
                f"scores of teacher {name}: query id {qid!r} is not among the queries of collection {where}"
            )
        for pid, _ in rows:
            if pid not in collection.corpus:
                raise InputError(
                    f"scores of teacher {name}: passage id {pid!r} (query {qid!r}) "
                    f"is not in the corpus of collection {where}"
                )
        judged = qrels.get(qid, {})
        positives = [(pid, s) for pid, s in rows if judged.get(pid, 0) > 0]
        negatives = [(pid, s) for pid, s in rows if judged.get(pid, 0) <= 0]
        if not positives or len(negatives) < n:
            skipped += 1
            continue
        query = collection.queries[qid]
        for pid, pos_score in positives:
            picked = [negatives[i] for i in rng.choice(len(negatives), size=n, replace=False)]
            columns["query"].append(query)
            columns["positive"].append(collection.corpus[pid].full_text())
            for i, (neg, _) in enumerate(picked, start=1):
                columns[f"negative_{i}"].append(collection.corpus[neg].full_text())
            columns["label"].append([pos_score - neg_score for _, neg_score in picked])
    if not columns["query"]:
        raise InputError(
            f"no training rows: no query of teacher {name}'s scores has a judged-"
            f"relevant scored passage and {n} non-relevant ones"
        )
    logger.info(
        "Margin-MSE dataset: %d rows, %d negatives each (%d queries skipped: no scored "
        "positive or fewer than %d negatives)",
        len(columns["query"]),
        n,
        skipped,
        n,
    )
    return datasets.Dataset.from_dict(columns)
