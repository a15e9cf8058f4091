"""Collections from ir_datasets ids (``beir/scifact/test``, ``msmarco-passage/dev/small``).

ir_datasets downloads and caches the files on first use; this module only converts its
iterators into a :class:`~irdistill.data.Collection`.
"""

from __future__ import annotations

import logging

from tqdm.auto import tqdm

from irdistill.data.collection import Collection, reconcile_qrels
from irdistill.data.store import STORE_VERSION, CorpusStore, build_corpus_store, store_folder
from irdistill.errors import InputError, MissingDependencyError

logger = logging.getLogger(__name__)


def load_ir_datasets(dataset_id: str, show_progress_bar: bool = True) -> Collection:
    try:
        import ir_datasets
    except ImportError as err:  # pragma: no cover - it is a core dependency
        raise MissingDependencyError("ir_datasets is needed: pip install ir-datasets") from err
    try:
        dataset = ir_datasets.load(dataset_id)
    except KeyError:
        raise InputError(
            f"{dataset_id!r} is neither a folder, a data set under $IRDISTILL_DATA, nor an "
            "ir_datasets id (see https://ir-datasets.com)"
        ) from None
    for need in ("docs", "queries", "qrels"):
        if not getattr(dataset, f"has_{need}")():
            raise InputError(f"ir_datasets {dataset_id!r} has no {need}; name a split, e.g. {dataset_id}/test")
    logger.info("loading %s through ir_datasets", dataset_id)
    # splits share their parent's documents, so they share one store
    folder = store_folder(f"irds-{ir_datasets.docs_parent_id(dataset_id)}-v{STORE_VERSION}")
    if (folder / "meta.json").is_file():
        corpus = CorpusStore(folder)
    else:
        docs = tqdm(dataset.docs_iter(), desc="docs", disable=not show_progress_bar, total=dataset.docs_count())
        corpus = build_corpus_store(
            ((doc.doc_id, getattr(doc, "title", "") or "", getattr(doc, "text", "") or "") for doc in docs),
            folder,
            source=f"ir_datasets {dataset_id}",
            replace=False,
        )
    all_queries = {q.query_id: q.text for q in dataset.queries_iter()}
    qrels: dict[str, dict[str, int]] = {}
    for qrel in dataset.qrels_iter():
        qrels.setdefault(qrel.query_id, {})[qrel.doc_id] = int(qrel.relevance)
    qrels = reconcile_qrels(qrels, all_queries, corpus, f"ir_datasets {dataset_id}")
    queries = {qid: text for qid, text in all_queries.items() if qid in qrels}
    for qid, text in queries.items():
        if not text.strip():
            raise InputError(f"ir_datasets {dataset_id}: query {qid!r} has an empty text")
    parts = dataset_id.split("/")
    return Collection(corpus, queries, qrels, name=dataset_id, split=parts[-1] if len(parts) > 2 else "")
