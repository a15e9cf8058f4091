"""Dense encoding with a sentence-transformers model and an on-disk embedding cache.

The cache key covers the model (its name, and for a local folder the names, sizes and
modification times of its files), the texts (ids and contents) and every setting that changes
the vectors (max sequence length, normalisation, prompt side). A hit loads a ``.npy`` file and
never loads the model, so a cached re-run does not even import torch.

Reused: ``SentenceTransformer.encode_query`` / ``encode_document`` (length-sorted batching,
the model's own prompts and pooling).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from irdistill.errors import InputError
from irdistill.paths import atomic_path, cache_dir, model_fingerprint, resolve_model, write_text_atomic

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from irdistill.backends import ReducedChoice

logger = logging.getLogger(__name__)

Side = Literal["query", "document"]


def texts_fingerprint(ids: list[str], texts: list[str]) -> str:
    from irdistill.data.collection import add_to_fingerprint

    digest = hashlib.sha256()
    for rid, text in zip(ids, texts, strict=True):
        add_to_fingerprint(digest, rid, text)
    return digest.hexdigest()


@dataclass
class Encoded:
    """Embeddings of one list of texts and how they were obtained."""

    embeddings: np.ndarray
    seconds: float
    """Wall time of this call (a cache read when ``cached``)."""
    cached: bool
    encode_seconds: float
    """Wall time of the encoding itself (for a cache hit: of the run that filled the cache)."""

    @property
    def per_second(self) -> float:
        """Texts encoded per second of encoding."""
        n = len(self.embeddings)
        return n / self.encode_seconds if self.encode_seconds > 0 else float("inf")


CPU_TOKENS_PER_BATCH = 4096
"""On CPU a forward pass holds at most this many tokens of truncation length (32 texts at 128
tokens, 10 at all-mpnet-base-v2's 384): see :meth:`DenseEncoder.forward_batch_size`."""


class DenseEncoder:
    """A sentence-transformers bi-encoder, loaded on first use.

    Args:
        model: a local folder, a name under ``$IRDISTILL_MODELS`` or a hub id.
        batch_size: texts per forward pass (on CPU at most :data:`CPU_TOKENS_PER_BATCH` tokens of
            truncation length, :meth:`forward_batch_size`).
        max_seq_length: truncation length; ``None`` keeps the model's own.
        normalize: ``"auto"`` L2-normalises when the model's similarity is cosine, so inner
            product search equals cosine; ``True`` / ``False`` force it.
        device: torch device for the model; ``None`` lets sentence-transformers pick.
        backend: inference backend (:mod:`irdistill.backends`): ``torch`` (default), ``onnx``,
            ``onnx-O2``, ``onnx-int8``, ``openvino``, ``openvino-bf16``, ``auto`` or ``auto-bf16``. A
            backend other than torch is part of the cache key (torch's keys are those of earlier
            versions), with its precision when that is not fp32; ``auto-bf16`` is keyed by what it
            resolved to on this machine (:meth:`resolved_backend`), so bf16 and fp32 embeddings never
            share a cache entry.
        cache: read and write the embedding cache.
        cache_root: the cache folder (default ``$IRDISTILL_CACHE``).

    Example:
        >>> encoder = DenseEncoder("sentence-transformers/all-MiniLM-L6-v2")  # doctest: +SKIP
        >>> encoder.encode(["a", "b"], ["first text", "second"], side="document").embeddings.shape  # doctest: +SKIP
        (2, 384)
    """

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 64,
        max_seq_length: int | None = None,
        normalize: bool | Literal["auto"] = "auto",
        device: str | None = None,
        backend: str = "torch",
        cache: bool = True,
        cache_root: str | os.PathLike[str] | None = None,
        show_progress_bar: bool = True,
    ) -> None:
        from irdistill.backends import check_backend

        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.backend = str(check_backend(backend))
        self.name = model
        self.path = resolve_model(model)
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.normalize = normalize
        self.device = device
        self.cache = cache
        self.cache_root = Path(cache_root) if cache_root else cache_dir()
        self.show_progress_bar = show_progress_bar
        self._model: SentenceTransformer | None = None
        self._fingerprint: str | None = None
        self._reduced: ReducedChoice | None = None

    @classmethod
    def from_model(
        cls,
        model: SentenceTransformer,
        *,
        name: str = "in-memory model",
        batch_size: int = 64,
        normalize: bool | Literal["auto"] = "auto",
    ) -> DenseEncoder:
        """Wrap a model already in memory (e.g. one being trained): no cache, no progress bar."""
        encoder = cls.__new__(cls)
        encoder.name, encoder.path, encoder.batch_size = name, name, batch_size
        encoder.max_seq_length, encoder.normalize, encoder.device = None, normalize, None
        encoder.backend = "torch"
        encoder.cache, encoder.cache_root, encoder.show_progress_bar = False, cache_dir(), False
        encoder._model, encoder._fingerprint, encoder._reduced = model, None, None
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        return encoder

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            self._model = load_sentence_transformer(
                self.path, device=self.device, backend=self.resolved_backend(), cache_root=self.cache_root
            )
            if self.max_seq_length is not None:
                set_max_seq_length(self._model, self.max_seq_length)
        return self._model

    def resolved_backend(self) -> str:
        """:attr:`backend`, except that ``auto-bf16`` is decided here (once; the decision is cached per
        machine, :func:`irdistill.backends.decide_reduced`): ``openvino-bf16`` or ``auto``."""
        if self.backend != "auto-bf16":
            return self.backend
        if self._reduced is None:
            from irdistill.backends import decide_reduced

            self._reduced = decide_reduced(
                "sentence-transformer", self.path, device=self.device, cache_root=self.cache_root
            )
        return self._reduced.backend

    @property
    def precision_check(self) -> dict[str, Any] | None:
        """The reduced-precision backend's agreement with fp32 torch on the probe (Kendall τ, max
        |diff|), when ``auto-bf16`` chose one; ``None`` otherwise."""
        self.resolved_backend()
        return self._reduced.check if self._reduced is not None and self._reduced.backend != "auto" else None

    @property
    def backend_used(self) -> str:
        """The backend that encoded (``auto`` resolved), or the one asked for while the model is
        not loaded (every embedding came from the cache)."""
        from irdistill.backends import backend_of

        return backend_of(self._model) if self._model is not None else self.backend

    def _normalize(self) -> bool:
        if self.normalize == "auto":
            return str(self.model.similarity_fn_name) == "cosine"
        return bool(self.normalize)

    def cache_key(self, ids: list[str], texts: list[str], side: Side) -> str:
        return self._key(texts_fingerprint(ids, texts), side)

    def encode(self, ids: list[str], texts: list[str], side: Side) -> Encoded:
        """Encode ``texts`` (one per id) as queries or documents, through the cache."""
        if len(ids) != len(texts):
            raise InputError(f"{len(ids)} ids but {len(texts)} texts")
        for rid, text in zip(ids, texts, strict=True):
            if not text.strip():
                raise InputError(f"{side} {rid!r} has an empty text")
        start = time.perf_counter()
        path = self.cache_root / "embeddings" / f"{self.cache_key(ids, texts, side)}.npy"
        if self.cache and path.is_file():
            embeddings = np.load(path)
            meta = _read_meta(path)
            if embeddings.shape[0] == len(ids):
                logger.info("%d %s embeddings read from cache %s", len(ids), side, path)
                return Encoded(
                    embeddings,
                    time.perf_counter() - start,
                    cached=True,
                    encode_seconds=float(meta.get("encode_seconds", 0.0)),
                )
            logger.warning("cache file %s has %d rows, expected %d; re-encoding", path, embeddings.shape[0], len(ids))
        start = time.perf_counter()
        logger.info("encoding %d %ss with %s (batch size %d)", len(texts), side, self.name, self.forward_batch_size())
        embeddings = self.embed(texts, side, show_progress_bar=self.show_progress_bar)
        seconds = time.perf_counter() - start
        if self.cache:
            with atomic_path(path) as tmp:
                with tmp.open("wb") as handle:
                    np.save(handle, embeddings)
            self._write_meta(path, side, len(ids), seconds)
            logger.info("%d %s embeddings cached at %s", len(ids), side, path)
        return Encoded(embeddings, seconds, cached=False, encode_seconds=seconds)

    def encode_corpus(
        self, corpus: Any, *, block_rows: int = 65_536, rank: int | None = None, world_size: int | None = None
    ) -> Encoded:
        """Encode every document of ``corpus`` (a :class:`~irdistill.data.Collection` or its
        corpus) block by block into a memory-mapped ``.npy`` file, which is also the cache entry
        :meth:`encode` reads for the same ids and texts (same key).

        Blocks of ``block_rows`` documents are written into the file as they finish, each marked
        done atomically, so a stopped run resumes at the first unfinished block. Under torchrun
        (``RANK`` / ``WORLD_SIZE``, or the arguments) rank ``r`` encodes blocks ``r, r + W, ...``
        into the same file, waits until every block is marked, and rank 0 publishes the file;
        the result equals one process's. Returns the embeddings as a read-only memory map, so
        an 8.8M x 384 corpus costs page cache, not heap.
        """
        from irdistill.data.store import corpus_rows

        documents = getattr(corpus, "corpus", corpus)
        rows = corpus_rows(documents)
        n = len(documents)
        if not self.cache:  # a model in training: no file, the blocks in memory
            start = time.perf_counter()
            parts = [
                self.embed(rows.texts(range(first, min(first + block_rows, n))), "document")
                for first in range(0, n, block_rows)
            ]
            seconds = time.perf_counter() - start
            return Encoded(np.concatenate(parts), seconds, False, seconds)
        rank = int(os.environ.get("RANK", "0")) if rank is None else rank
        world = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
        fingerprint = getattr(documents, "fingerprint", None)
        if fingerprint is None:  # a dict corpus: the fingerprint Collection.corpus_fingerprint gives
            ids = list(documents)
            fingerprint = texts_fingerprint(ids, [documents[i].full_text() for i in ids])
        path = self.cache_root / "embeddings" / f"{self._key(fingerprint, 'document')}.npy"
        start = time.perf_counter()
        if path.is_file():
            embeddings = np.load(path, mmap_mode="r")
            if embeddings.shape[0] == n:
                meta = _read_meta(path)
                logger.info("%d document embeddings read from cache %s", n, path)
                return Encoded(embeddings, time.perf_counter() - start, True, float(meta.get("encode_seconds", 0.0)))
        partial, marks = path.with_suffix(".partial.npy"), path.with_suffix(".blocks")
        marks.mkdir(parents=True, exist_ok=True)
        blocks = range(0, n, block_rows)
        mine = [b for i, b in enumerate(blocks) if i % world == rank]
        if not partial.is_file():  # marks without their file (a removed cache): encode again
            for b in mine:
                (marks / f"{b}.done").unlink(missing_ok=True)
        todo = [b for b in mine if not (marks / f"{b}.done").is_file()]
        target = None
        for first in todo:
            texts = rows.texts(range(first, min(first + block_rows, n)))
            block = self.embed(texts, "document", show_progress_bar=self.show_progress_bar)
            if target is None:
                target = _open_partial(partial, n, block.shape[1])
            target[first : first + len(block)] = block
            target.flush()
            write_text_atomic(marks / f"{first}.done", "")
            logger.info("encoded documents %d-%d of %d", first, first + len(block), n)
        seconds = time.perf_counter() - start
        # wait for the other ranks' blocks (rank 0 removes the marks once it has published)
        while not path.is_file() and not all((marks / f"{b}.done").is_file() for b in blocks):
            time.sleep(0.2)
        if rank == 0:
            del target
            os.replace(partial, path)
            self._write_meta(path, "document", n, seconds)
            for mark in marks.iterdir():
                mark.unlink()
            marks.rmdir()
        while not path.is_file():
            time.sleep(0.2)
        return Encoded(np.load(path, mmap_mode="r"), time.perf_counter() - start, not todo, seconds)

    def _write_meta(self, path: Path, side: Side, count: int, seconds: float) -> None:
        """The ``.json`` beside a cache file: what made it and how long encoding took."""
        meta = {
            "model": self.name,
            "side": side,
            "count": count,
            "encode_seconds": seconds,
            "normalize": self._normalize(),
            "max_seq_length": self.model.max_seq_length,
            "backend": self.backend_used,
        }
        write_text_atomic(path.with_suffix(".json"), json.dumps(meta, indent=1))

    def _key(self, texts_key: str, side: Side) -> str:
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.path)
        settings: dict[str, Any] = {
            "model": self._fingerprint,
            "side": side,
            "max_seq_length": self.max_seq_length,
            "normalize": self.normalize,
            "texts": texts_key,
        }
        backend = self.resolved_backend()
        if backend != "torch":  # torch keeps the keys of the caches written before backends existed
            settings["backend"] = backend
            from irdistill.backends import parse_backend

            reduced = parse_backend(backend).quantization
            if reduced:  # the arithmetic the embeddings were computed in, named on its own
                settings["precision"] = reduced
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]

    def forward_batch_size(self) -> int:
        """Texts per forward pass: :attr:`batch_size`, capped on CPU at :data:`CPU_TOKENS_PER_BATCH`
        tokens of the model's truncation length.

        A transformer's forward pass holds each layer's attention scores, batch x heads x length^2,
        in host memory on CPU. all-mpnet-base-v2 at 384 tokens, encoding the 64 longest SciFact
        passages, took 2.15 GiB above the model in batches of 64, 1.13 GiB in 21s and 0.82 GiB in
        10s, each in 23-24 s.
        On a GPU, and for a static-embedding model (no attention, no length), :attr:`batch_size` is used
        as given.
        """
        model = self.model
        if getattr(getattr(model, "device", None), "type", "cpu") != "cpu":
            return self.batch_size
        length = model.max_seq_length or 512
        if not math.isfinite(length):  # StaticEmbedding: every token, and nothing quadratic in it
            return self.batch_size
        length = int(length)
        return max(1, min(self.batch_size, CPU_TOKENS_PER_BATCH // length))

    def embed(self, texts: list[str], side: Side, *, show_progress_bar: bool = False) -> np.ndarray:
        """Encode ``texts`` without the cache (ad hoc batches, e.g. candidate mining's queries):
        float32 rows, L2-normalised when :attr:`normalize` says so."""
        encode = self.model.encode_query if side == "query" else self.model.encode_document
        embeddings = encode(
            list(texts),
            batch_size=self.forward_batch_size(),
            show_progress_bar=show_progress_bar,
            convert_to_numpy=True,
            normalize_embeddings=self._normalize(),
        )
        return np.ascontiguousarray(embeddings, dtype=np.float32)


def _read_meta(path: Path) -> dict[str, Any]:
    meta_path = path.with_suffix(".json")
    return json.loads(meta_path.read_text()) if meta_path.is_file() else {}


def _open_partial(path: Path, rows: int, dim: int) -> np.memmap:
    """The block file being filled: created once (all ranks race to the same shape), then opened."""
    if not path.is_file():
        try:
            with path.open("xb"):
                pass
            np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim)).flush()
        except FileExistsError:
            pass
    for _ in range(600):  # another rank may still be writing the header
        try:
            array = np.load(path, mmap_mode="r+")
            if array.shape == (rows, dim):
                return array
        except (ValueError, OSError, EOFError):
            pass
        time.sleep(0.1)
    raise InputError(f"{path}: the partial embedding file has another shape; remove it and run again")


def rank_device(device: str | None = None) -> str | None:
    """The torch device a model should load on: ``device`` when given; else, with CUDA, this
    process's own GPU (``cuda:$LOCAL_RANK`` under torchrun, so ranks do not all load on GPU 0);
    else ``None`` (the library picks, e.g. CPU or MPS)."""
    if device is not None:
        return device
    import torch

    if not torch.cuda.is_available():
        return None
    local = os.environ.get("LOCAL_RANK")
    return f"cuda:{int(local)}" if local is not None and local.isdigit() else "cuda"


def load_sentence_transformer(
    path: str,
    device: str | None = None,
    *,
    backend: str = "torch",
    cache_root: str | os.PathLike[str] | None = None,
) -> SentenceTransformer:
    """Load a sentence-transformers model from a folder or the hub, with a clear error, on
    ``backend`` (:func:`irdistill.backends.load_model`)."""
    from irdistill.backends import load_model

    local = Path(path)
    if local.exists() and not (local / "config.json").is_file() and not (local / "modules.json").is_file():
        raise InputError(f"{path}: not a model folder (no config.json or modules.json)")
    try:
        return load_model(
            "sentence-transformer", path, backend=backend, device=rank_device(device), cache_root=cache_root
        )
    except OSError as err:
        raise InputError(
            f"cannot load model {path!r}: {err}. Give a local folder, put it under "
            "$IRDISTILL_MODELS, or check the hub id and network"
        ) from err


def is_static_model(model: Any) -> bool:
    """Whether a SentenceTransformer encodes with a ``StaticEmbedding`` (no transformer)."""
    return len(model) > 0 and type(model[0]).__name__ == "StaticEmbedding"


def set_max_seq_length(model: Any, length: int) -> bool:
    """Truncate ``model``'s inputs at ``length`` tokens; returns whether it truncates at all. A
    static-embedding model (:func:`is_static_model`) averages every token of a text and has no
    length to set: it is left as it is (logged once per model)."""
    if is_static_model(model):
        if not getattr(model, "_irdistill_length_noted", False):
            logger.info("static-embedding model: every token is averaged, max_seq_length %d does not apply", length)
            model._irdistill_length_noted = True
        return False
    model.max_seq_length = length
    return True


# config attributes that hold the probability of dropping an attention weight, by model family
_ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")


def set_attention_dropout(model: Any, p: float) -> int:
    """Set the probability of dropping an attention weight in training to ``p`` in every
    self-attention layer of ``model`` (a SentenceTransformer or a Hugging Face model) and in its
    config, so a saved or resumed model keeps it; returns the number of layers changed.

    At ``p = 0`` PyTorch's scaled-dot-product attention takes its fused kernel in training too;
    with ``p > 0`` it falls back to the unfused path, which draws a random mask for every
    attention probability (24 % of a CPU step of the main job's student,
    eval/results/precision_steps.md). Hidden-state dropout is left as it is. Raises
    :class:`InputError` when ``model`` has no self-attention layer with a dropout to set.
    """
    import torch

    if not 0.0 <= p < 1.0:
        raise InputError(f"attention dropout must be in [0, 1), got {p}")
    changed = 0
    configs: dict[int, Any] = {}
    for module in model.modules():
        name = type(module).__name__
        dropout = getattr(module, "dropout", None)
        if name.endswith("SelfAttention") and isinstance(dropout, torch.nn.Dropout):
            dropout.p = p
            changed += 1
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            configs[id(config)] = config
    if not changed:
        raise InputError(
            f"{type(model).__name__}: no self-attention layer with a dropout module found, so the attention "
            "dropout cannot be set; leave it at the model's own"
        )
    for config in configs.values():
        for key in _ATTENTION_DROPOUT_KEYS:
            if isinstance(getattr(config, key, None), float):
                setattr(config, key, p)
    logger.info("attention dropout set to %g in %d self-attention layers", p, changed)
    return changed
