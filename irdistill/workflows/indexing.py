"""The index workflow: build a compressed index of a collection's corpus with a model, save it as a plain file.

``irdistill index`` calls :func:`build_index`. The kinds are found by name in :data:`BUILDERS`:

- ``ivfpq``: ``faiss.IndexIVFPQ`` (inner product) trained by faiss k-means on the dense model's
  document embeddings ``x_d``. A document is stored as its coarse list ``a(d) = argmax_c <x_d, c>``
  and ``M`` codes of the residual, and scored ``s(q, d) = <q, c_{a(d)}> + sum_m <q_m, B_m[b_m(d)]>``;
  a query scans only the ``nprobe`` lists whose centroids score highest (Jégou, Douze, Schmid,
  "Product quantization for nearest neighbor search", TPAMI 2011).
- ``pq``: ``faiss.IndexPQ``, the same codes without inverted lists (every document is scanned).
- ``distill-vq``: the same two faiss types, but the centroids ``c`` and codebooks ``B`` are learned
  by distilling the dense model's own scores ``t(q, d) = <q, x_d>`` on training queries: ListNet,
  ``KL(softmax(t(q, ·) / τ) || softmax(s(q, ·) / τ))`` over each batch's teacher top-k (Xiao et al.,
  arXiv 2204.00185; :func:`irdistill.students.vq.train_distill_vq`). No relevance labels are used.
- ``sparse``: the inverted index of a sparse student's document vectors (SPLADE, Formal et al.,
  arXiv 2109.10086; :class:`irdistill.indexes.sparse.SparseIndex`).

The output folder receives ``index.faiss`` (``faiss.read_index`` opens it) or ``index.npz`` (the
sparse index), ``doc_ids.txt`` (line ``i + 1`` is the document of index row ``i``) and
``index.json`` (kind, options as used, model, data set, dimension, ``ntotal``, bytes per vector,
training history). ``bytes_per_vector`` is the code a vector is stored as: ``m · nbits / 8`` for
the faiss kinds (inverted lists add an 8-byte id per vector, counted in ``index_bytes``), the
average CSR bytes (8 per non-zero weight) for ``sparse``. With ``evaluate=True`` the saved index is
read back and searched with the collection's queries (:class:`irdistill.retrieval.SavedIndexRetriever`):
``run.trec``, ``metrics.json`` and ``perf.json`` follow the layout of
``irdistill evaluate --out``, so ``irdistill compare`` reads the folder. Every file is written to
a staging folder first and moved into place only when all of them succeeded.

Reused: faiss (k-means, encoding, search, the file format) through
:mod:`irdistill.indexes.faiss_indexes` and :mod:`irdistill.students.vq`; sentence-transformers
through :class:`irdistill.encoding.DenseEncoder` (with its embedding cache) and
:mod:`irdistill.students.sparse`; ranx through :func:`irdistill.evaluation.evaluate_run`.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from irdistill.data.collection import Collection
from irdistill.errors import InputError
from irdistill.indexes.base import Index
from irdistill.registry import Registry

__all__ = [
    "BUILDERS",
    "BuiltIndex",
    "EVAL_METRICS",
    "all_build_options",
    "build_index",
    "build_options",
    "check_build_options",
]

logger = logging.getLogger(__name__)

EVAL_METRICS: tuple[str, ...] = ("ndcg@10", "recall@10", "recall@100")
"""Metrics that ``evaluate=True`` reports unless told otherwise."""

OUTPUT_FILES = (
    "index.faiss",
    "index.npz",
    "doc_ids.txt",
    "index.json",
    "run.trec",
    "metrics.json",
    "perf.json",
    "table.md",
)
"""Every file :func:`build_index` may write; those an earlier build left and this one did not
write are removed, so the folder never mixes two builds."""


@dataclass
class _Built:
    """What a builder returns: the index in memory and the options as used."""

    index: Index
    """An :class:`~irdistill.indexes.IVFPQIndex` / :class:`~irdistill.indexes.PQIndex`, or a
    :class:`~irdistill.indexes.SparseIndex`."""
    params: dict[str, Any]
    training: dict[str, Any] | None = None


Builder = Callable[..., _Built]
BUILDERS: Registry[Builder] = Registry("index kind")
"""Index kinds ``irdistill index`` builds; each builder's keyword-only parameters are its options."""


# ---------------------------------------------------------------------------------------------
# options


_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "m": (lambda v: v >= 1, ">= 1"),
    "nbits": (lambda v: 1 <= v <= 16, "in 1..16"),
    "nlist": (lambda v: v >= 1, ">= 1"),
    "nprobe": (lambda v: v >= 1, ">= 1"),
    "epochs": (lambda v: v >= 0, ">= 0"),
    "learning_rate": (lambda v: v > 0, "> 0"),
    "distill_batch_size": (lambda v: v >= 1, ">= 1"),
    "top_k": (lambda v: v >= 1, ">= 1"),
    "temperature": (lambda v: v > 0, "> 0"),
    "ivf_weight": (lambda v: v >= 0, ">= 0"),
    "reassign_every": (lambda v: v >= 1, ">= 1"),
    "train_device": (lambda v: v in ("auto", "cpu", "cuda"), "auto, cpu or cuda"),
    "max_active_dims": (lambda v: v >= 1, ">= 1"),
}


def build_options(kind: str) -> dict[str, Any]:
    """The options of an index kind with their defaults (unknown kinds list the known ones)."""
    builder = BUILDERS.get(kind)
    return {
        p.name: p.default
        for p in inspect.signature(builder).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def all_build_options() -> list[str]:
    """Every option some index kind takes (the union of the builders' keywords), in order."""
    names: dict[str, None] = {}
    for kind in BUILDERS.names():
        names.update(dict.fromkeys(build_options(kind)))
    return list(names)


def check_build_options(kind: str, options: Mapping[str, Any]) -> None:
    """Fail fast, before any data is read, on an unknown kind, an option the kind does not take,
    or a value out of range. ``None`` values stand for the default."""
    accepted = build_options(kind)
    for key, value in options.items():
        if key not in accepted:
            raise InputError(f"{kind} index has no option {key!r}; options: {', '.join(accepted)}")
        rule = _RULES.get(key)
        if value is not None and rule is not None and not rule[0](value):
            raise InputError(f"{kind}: {key} must be {rule[1]}, got {value!r}")
    if options.get("use_ivf") is False:
        for key in ("nlist", "nprobe"):
            if options.get(key) is not None:
                raise InputError(f"{kind}: {key} needs inverted lists, but use_ivf is false")


def _check_against_corpus(kind: str, options: Mapping[str, Any], n_docs: int, name: str) -> None:
    """The checks that need only the number of documents, before anything is encoded."""
    value = {**build_options(kind), **{k: v for k, v in options.items() if v is not None}}
    nlist, nbits = value.get("nlist"), value.get("nbits")
    if nlist is not None and value.get("use_ivf", True) and nlist > n_docs:
        raise InputError(
            f"{kind}: nlist={nlist} inverted lists but only {n_docs} documents in {name} "
            f"to train them on; use nlist <= {n_docs}"
        )
    if nbits is not None and 2**nbits > n_docs:
        raise InputError(
            f"{kind}: nbits={nbits} means {2**nbits} codewords per sub-quantizer but only "
            f"{n_docs} documents in {name} to train them on; use nbits <= {int(np.log2(n_docs))}"
        )


# ---------------------------------------------------------------------------------------------
# encoding, shared by the builders and the evaluation


class _Job:
    """The inputs of one build; loads the model and encodes the corpus once, on first use."""

    def __init__(
        self,
        kind: str,
        collection: Collection,
        model: str,
        *,
        train_queries: Collection | None,
        batch_size: int,
        max_seq_length: int | None,
        model_device: str | None,
        cache: bool,
        cache_dir: str | os.PathLike[str] | None,
        show_progress_bar: bool,
        backend: str = "torch",
    ) -> None:
        self.kind = kind
        self.collection = collection
        self.model = model
        self.train_queries = train_queries
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.model_device = model_device
        self.backend = backend
        self.cache = cache
        self.cache_dir = cache_dir
        self.show_progress_bar = show_progress_bar
        self.encode_seconds = 0.0
        self._encoder: Any = None
        self._student: Any = None
        self._docs: np.ndarray | None = None

    def encoder(self) -> Any:
        """The dense model's :class:`~irdistill.encoding.DenseEncoder` (with its cache)."""
        from irdistill.encoding import DenseEncoder

        if self._encoder is None:
            self._encoder = DenseEncoder(
                self.model,
                batch_size=self.batch_size,
                max_seq_length=self.max_seq_length,
                device=self.model_device,
                backend=self.backend,
                cache=self.cache,
                cache_root=self.cache_dir,
                show_progress_bar=self.show_progress_bar,
            )
        return self._encoder

    def dense(self, ids: list[str], texts: list[str], side: str) -> np.ndarray:
        encoded = self.encoder().encode(ids, texts, side=side)
        self.encode_seconds += encoded.seconds
        return encoded.embeddings

    def doc_embeddings(self) -> np.ndarray:
        if self._docs is None:
            encoded = self.encoder().encode_corpus(self.collection)  # blocks into the memory-mapped cache
            self.encode_seconds += encoded.seconds
            self._docs = encoded.embeddings
        return self._docs

    def train_query_embeddings(self) -> np.ndarray:
        train = self.train_queries
        if train is None or not train.queries:
            raise InputError("distill-vq needs training queries: give train_queries (e.g. the train split)")
        return self.dense(train.query_ids, train.query_texts(), "query")

    def sparse_student(self) -> Any:
        from irdistill.students.sparse import load_sparse_student

        if self._student is None:
            self._student = load_sparse_student(
                self.model, device=self.model_device, max_seq_length=self.max_seq_length, backend=self.backend
            )
        return self._student


def _default_m(m: int | None, dim: int) -> int:
    return m if m is not None else max(1, dim // 8)


# ---------------------------------------------------------------------------------------------
# the builders


@BUILDERS.register("ivfpq")
def _build_ivfpq(
    job: _Job, *, m: int | None = None, nbits: int = 8, nlist: int | None = None, nprobe: int | None = None
) -> _Built:
    """faiss IVF-PQ trained by k-means (``m=None``: dim / 8; ``nlist=None``: min(4 sqrt(n), n / 39))."""
    from irdistill.indexes.faiss_indexes import IVFPQIndex

    docs = job.doc_embeddings()
    index = IVFPQIndex(docs.shape[1], nlist=nlist, m=m, nbits=nbits, nprobe=nprobe, device="cpu")
    index.add(docs)
    raw = index.faiss_index
    raw.nprobe = index.nprobe = min(int(index.nprobe or 16), int(raw.nlist))
    return _Built(index, {"m": index.m, "nbits": index.nbits, "nlist": int(raw.nlist), "nprobe": int(raw.nprobe)})


@BUILDERS.register("pq")
def _build_pq(job: _Job, *, m: int | None = None, nbits: int = 8) -> _Built:
    """faiss PQ trained by k-means, no inverted lists (``m=None``: dim / 8)."""
    from irdistill.indexes.faiss_indexes import PQIndex

    docs = job.doc_embeddings()
    index = PQIndex(docs.shape[1], m=m, nbits=nbits, device="cpu")
    index.add(docs)
    return _Built(index, {"m": index.m, "nbits": index.nbits})


@BUILDERS.register("distill-vq")
def _build_distill_vq(
    job: _Job,
    *,
    m: int | None = None,
    nbits: int = 8,
    nlist: int | None = None,
    nprobe: int = 16,
    use_ivf: bool = True,
    epochs: int = 3,
    learning_rate: float = 1e-3,
    distill_batch_size: int = 64,
    top_k: int = 50,
    temperature: float = 0.05,
    ivf_weight: float = 0.0,
    reassign_every: int | None = None,
    pseudo_queries: bool = False,
    max_queries: int | None = None,
    seed: int = 1234,
    train_device: str = "cpu",
) -> _Built:
    """Distill-VQ: :func:`~irdistill.students.vq.train_distill_vq` on the training queries, then
    :func:`~irdistill.students.vq.to_faiss` (``IndexIVFPQ``, or ``IndexPQ`` when ``use_ivf`` is false)."""
    from irdistill.indexes import wrap_faiss_index
    from irdistill.students.vq import to_faiss, train_distill_vq

    docs = job.doc_embeddings()
    queries = job.train_query_embeddings()
    started = time.perf_counter()
    model = train_distill_vq(
        docs,
        queries,
        nlist=nlist,
        m=_default_m(m, docs.shape[1]),
        nbits=nbits,
        use_ivf=use_ivf,
        epochs=epochs,
        lr=learning_rate,
        batch_size=distill_batch_size,
        top_k=top_k,
        temperature=temperature,
        ivf_weight=ivf_weight,
        reassign_every=reassign_every,
        pseudo_queries=pseudo_queries,
        max_queries=max_queries,
        device=train_device,
        seed=seed,
        show_progress_bar=job.show_progress_bar,  # type: ignore[arg-type]
    )
    raw = to_faiss(model, docs, nprobe=nprobe)
    params: dict[str, Any] = {"m": model.m, "nbits": model.nbits, "use_ivf": model.use_ivf}
    if model.use_ivf:
        params.update(nlist=model.nlist, nprobe=int(raw.nprobe))
    params.update(
        epochs=epochs,
        learning_rate=learning_rate,
        distill_batch_size=distill_batch_size,
        top_k=top_k,
        temperature=temperature,
        ivf_weight=ivf_weight,
        reassign_every=reassign_every,
        pseudo_queries=pseudo_queries,
        max_queries=max_queries,
        seed=seed,
    )
    train = job.train_queries
    assert train is not None  # train_query_embeddings checked it
    training = {
        "queries": f"{train.name}/{train.split}",
        "num_queries": len(train.queries),
        "seconds": round(time.perf_counter() - started, 2),
        "history": model.history,
    }
    return _Built(wrap_faiss_index(raw, device="cpu"), params, training)


@BUILDERS.register("sparse")
def _build_sparse(job: _Job, *, max_active_dims: int | None = None) -> _Built:
    """The inverted index of a sparse student's document vectors (SPLADE or inference-free)."""
    from irdistill.indexes.sparse import SparseIndex
    from irdistill.students.sparse import encode_sparse

    docs = encode_sparse(
        job.sparse_student(),
        job.collection.doc_texts(),
        side="document",
        batch_size=job.batch_size,
        show_progress_bar=job.show_progress_bar,
        max_active_dims=max_active_dims,
        ids=job.collection.doc_ids,
    )
    job.encode_seconds += docs.seconds
    index = SparseIndex(docs.matrix.shape[1])
    index.add(docs.matrix)
    return _Built(index, {"max_active_dims": max_active_dims})


# ---------------------------------------------------------------------------------------------
# building, saving, evaluating


@dataclass
class BuiltIndex:
    """The result of :func:`build_index`."""

    kind: str
    path: Path
    """The index file (``index.faiss`` or ``index.npz``)."""
    info: dict[str, Any]
    """What ``index.json`` holds."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Filled when built with ``evaluate=True``."""

    def summary(self) -> str:
        """One line: file, size, and the metrics when evaluated."""
        info = self.info
        text = (
            f"{self.kind} index: {self.path} ({info['ntotal']} vectors, {info['bytes_per_vector']} bytes "
            f"per vector, {info['index_bytes'] / 2**20:.2f} MiB)"
        )
        if self.metrics:
            text += "; " + ", ".join(f"{name} {value:.4f}" for name, value in self.metrics.items())
        return text


def _search_depth(metrics: Sequence[str], k: int | None) -> int:
    if k is not None:
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        return k
    cutoffs = [int(m.partition("@")[2]) for m in metrics if "@" in m]
    return max(cutoffs) if len(cutoffs) == len(metrics) else 1000


def _save(built: _Built, folder: Path) -> Path:
    path = folder / f"index{built.index.file_suffix}"
    built.index.save(path)
    return path


def _evaluate(folder: Path, job: _Job, names: list[str], k: int) -> dict[str, float]:
    """Search the staged index folder with the collection's queries, as a reader of the folder
    would (:class:`~irdistill.retrieval.SavedIndexRetriever`); write run, metrics and perf files."""
    from irdistill.evaluation import evaluate_retrieval
    from irdistill.retrieval import SavedIndexRetriever

    dense = job.kind != "sparse"
    retriever = SavedIndexRetriever(
        folder,
        encoder=job.encoder() if dense else None,
        sparse_student=None if dense else job.sparse_student(),
        batch_size=job.batch_size,
        show_progress_bar=job.show_progress_bar,
    )
    result = evaluate_retrieval(
        retriever, job.collection, k=k, metrics=names, out=folder, show_progress_bar=job.show_progress_bar
    )
    return result.metrics


def _publish(staging: Path, folder: Path) -> None:
    """Move the staged files into ``folder``; drop our files an earlier build left there."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {p.name for p in staging.iterdir()}
    for name in OUTPUT_FILES:
        if name not in written and (folder / name).is_file():
            logger.info("removing %s from an earlier build", folder / name)
            (folder / name).unlink()
    for name in sorted(written - {"index.json"}) + ["index.json"]:  # index.json last: the build is complete
        os.replace(staging / name, folder / name)


def build_index(
    kind: str,
    collection: Collection,
    model: str,
    out: str | os.PathLike[str],
    *,
    options: Mapping[str, Any] | None = None,
    train_queries: Collection | None = None,
    batch_size: int = 64,
    max_seq_length: int | None = None,
    model_device: str | None = None,
    backend: str = "torch",
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    evaluate: bool = False,
    metrics: Sequence[str] = EVAL_METRICS,
    k: int | None = None,
    show_progress_bar: bool = True,
) -> BuiltIndex:
    """Index ``collection``'s corpus with ``model`` and write the index to the folder ``out``.

    Args:
        kind: ``distill-vq``, ``ivfpq``, ``pq`` or ``sparse`` (see the module docstring).
        collection: the documents to index (and, with ``evaluate``, the queries to search).
        model: a sentence-transformers model for the faiss kinds (folder, ``$IRDISTILL_MODELS``
            name or hub id); a sparse student (or a masked LM, used as SPLADE) for ``sparse``.
        out: the output folder.
        options: the kind's options (:func:`build_options`): ``m``, ``nbits``, ``nlist``,
            ``nprobe``; for Distill-VQ also ``epochs``, ``learning_rate``, ``top_k`` ...;
            ``max_active_dims`` for sparse. ``None`` values take the default.
        train_queries: the queries whose teacher top-k drive Distill-VQ (only their texts are
            used, no labels), e.g. the train split of the same data set.
        batch_size, max_seq_length, model_device: encoding settings.
        backend: the encoder's inference backend (:mod:`irdistill.backends`; default torch).
        cache, cache_dir: the dense embedding cache (:class:`irdistill.encoding.DenseEncoder`).
        evaluate: read the saved index back, search the collection's queries and write
            ``run.trec``, ``metrics.json`` and ``perf.json``.
        metrics: ranx metric strings for ``evaluate``.
        k: documents retrieved per query for ``evaluate``; ``None``: the largest metric cutoff.

    Example:
        >>> from irdistill.data import load_collection
        >>> scifact = load_collection("beir/scifact/test")  # doctest: +SKIP
        >>> built = build_index("distill-vq", scifact, "sentence-transformers/all-MiniLM-L6-v2",
        ...                     "runs/dvq", options={"m": 48}, evaluate=True,
        ...                     train_queries=load_collection("beir/scifact/train"))  # doctest: +SKIP
        >>> built.info["bytes_per_vector"], sorted(built.metrics)  # doctest: +SKIP
        (48, ['ndcg@10', 'recall@10', 'recall@100'])
    """
    from irdistill.evaluation.metrics import parse_metrics
    from irdistill.paths import staging_dir, write_text_atomic

    started = time.perf_counter()
    kind = kind.lower()
    given = {key: value for key, value in (options or {}).items() if value is not None}
    check_build_options(kind, given)
    if not collection.corpus:
        raise InputError(f"collection {collection.name} has no documents")
    name = f"{collection.name}/{collection.split}" if collection.split else collection.name
    _check_against_corpus(kind, given, len(collection.corpus), name)
    if train_queries is not None and kind != "distill-vq":
        raise InputError(f"train_queries only drive distill-vq, not a {kind} index")
    if kind == "distill-vq" and (train_queries is None or not train_queries.queries):
        raise InputError("distill-vq needs training queries: give train_queries (e.g. the train split)")
    names = parse_metrics(metrics) if evaluate else []
    depth = _search_depth(names, k) if evaluate else 0
    if evaluate and not collection.queries:
        raise InputError(f"collection {name} has no queries to evaluate with")
    doc_ids = collection.doc_ids
    bad = next((d for d in doc_ids if not d or any(c.isspace() for c in d)), None)
    if bad is not None:
        raise InputError(f"document id {bad!r} is empty or holds white space: doc_ids.txt and TREC runs need one token")
    if evaluate and train_queries is not None:
        shared = set(train_queries.queries) & set(collection.queries)
        if shared:
            logger.warning(
                "%d of the %d evaluation queries also trained the Distill-VQ index: the metrics are optimistic",
                len(shared),
                len(collection.queries),
            )

    job = _Job(
        kind,
        collection,
        model,
        train_queries=train_queries,
        batch_size=batch_size,
        max_seq_length=max_seq_length,
        model_device=model_device,
        cache=cache,
        cache_dir=cache_dir,
        show_progress_bar=show_progress_bar,
        backend=backend,
    )
    built = BUILDERS.get(kind)(job, **given)
    folder = Path(out)
    staging = staging_dir(folder)
    try:
        path = _save(built, staging)
        write_text_atomic(staging / "doc_ids.txt", "\n".join(doc_ids) + "\n")
        info: dict[str, Any] = {
            "kind": kind,
            "file": path.name,
            **built.index.describe(),
            "index_bytes": path.stat().st_size,
            "params": built.params,
            "model": model,
            "dataset": collection.name,
            "split": collection.split,
            "corpus_fingerprint": collection.corpus_fingerprint(),
            "doc_ids": "doc_ids.txt",
        }
        if built.training is not None:
            info["training"] = built.training
        if backend != "torch":
            info["backend"] = backend
        write_text_atomic(staging / "index.json", json.dumps(info, indent=2) + "\n")
        values = _evaluate(staging, job, names, depth) if evaluate else {}
        info["encode_seconds"] = round(job.encode_seconds, 2)
        info["seconds"] = round(time.perf_counter() - started, 2)
        write_text_atomic(staging / "index.json", json.dumps(info, indent=2) + "\n")
        _publish(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = BuiltIndex(kind, folder / path.name, info, values)
    logger.info("%s", result.summary())
    return result
