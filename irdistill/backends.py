"""Inference backends for every model irdistill runs forward-only: torch, ONNX Runtime, OpenVINO.

A backend is named by one string, parsed in one place (:func:`parse_backend`):

================  =====================================================================
``torch``         the default; the only backend training uses
``onnx``          ONNX Runtime, the graph as exported (``pip install "irdistill[onnx]"``)
``onnx-O1`` ..    ONNX Runtime after its graph optimisations, levels named as Optimum names them:
``onnx-O4``       O1 basic, O2 + transformer fusions, O3 + approximate GELU, O4 + fp16 (GPU)
``onnx-int8``     ONNX Runtime, weights quantised to int8 dynamically (no calibration data);
                  reported as reduced precision and never chosen by ``auto``
``openvino``      OpenVINO, fp32 (``pip install "irdistill[openvino]"``)
``openvino-bf16`` OpenVINO computing in bf16 (AMX / AVX-512 BF16 CPUs only); reduced
                  precision, never chosen by ``auto``
``auto``          the fastest installed, unquantised backend whose scores on a fixed probe
                  reproduce fp32 torch within ``tolerance`` (max |score difference| <= 1e-4);
                  the choice is logged and kept in the cache
``auto-bf16``     ``openvino-bf16`` where this CPU computes bf16 natively and the model's
                  ranking on the probe keeps Kendall τ >= 0.98 with fp32 torch (the check is
                  logged, cached per machine and model, and carried into a teacher's score-store
                  fingerprint); otherwise what ``auto`` picks, with a log line saying why.
                  What the main and quick recipes' teachers encode with: 2.85x torch fp32 on
                  all-mpnet-base-v2 on an AVX-512 BF16 CPU
================  =====================================================================

The graphs are irdistill's own exports (:mod:`irdistill.runtimes`: ``torch.onnx.export`` of the
Hugging Face model inside a sentence-transformers model, ONNX Runtime's optimiser and dynamic
quantiser, OpenVINO's converter), not sentence-transformers' ``backend=`` option: that one goes
through Optimum, whose releases pin a transformers older than sentence-transformers 6 accepts.
What this module adds: one name for a backend and its variant, the install command when a backend
is missing, graphs kept in ``$IRDISTILL_CACHE/backends/<key>/`` (keyed like the embedding cache:
the model's files, the model kind, the backend and the library versions; each file written under
a temporary name and renamed, so a stopped export leaves nothing half-written), and ``auto``'s
fidelity check.

Example:
    >>> from irdistill.backends import load_model
    >>> model = load_model("cross-encoder", "cross-encoder/ms-marco-MiniLM-L6-v2", backend="onnx")  # doctest: +SKIP
    >>> backend_of(model)  # doctest: +SKIP
    'onnx'
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from irdistill.errors import InputError, MissingDependencyError

__all__ = [
    "BACKEND_CHOICES",
    "BACKEND_HELP",
    "BackendSpec",
    "MissingBackendError",
    "Trial",
    "auto_candidates",
    "backend_of",
    "check_backend",
    "choose_backend",
    "installed_backends",
    "load_model",
    "parse_backend",
    "probe_scores",
]

logger = logging.getLogger(__name__)

Kind = Literal["sentence-transformer", "cross-encoder", "sparse-encoder"]
KINDS: tuple[str, ...] = ("sentence-transformer", "cross-encoder", "sparse-encoder")
LEVELS = ("O1", "O2", "O3", "O4")
BACKEND_CHOICES = (
    "torch",
    "onnx",
    *(f"onnx-{level}" for level in LEVELS),
    "onnx-int8",
    "openvino",
    "openvino-bf16",
    "auto",
    "auto-bf16",
)
BACKEND_HELP = (
    "inference backend: torch (default), onnx, onnx-O1..onnx-O4 (graph optimisation level), onnx-int8 "
    "(dynamic int8, reduced precision), openvino, openvino-bf16 (reduced precision), auto (fastest installed "
    "one that matches torch within 1e-4), or auto-bf16 (openvino-bf16 where the CPU has native bf16 and the "
    "ranking on a probe keeps Kendall tau >= 0.98 with fp32, else auto); "
    'onnx and openvino need pip install "irdistill[onnx]" / "irdistill[openvino]"'
)
DEFAULT_TOLERANCE = 1e-4
MIN_REDUCED_TAU = 0.98
"""``auto-bf16`` takes a reduced-precision backend only when the model's Kendall τ with fp32 torch over
the probe's scores (:func:`precision_check`) is at least this."""


class MissingBackendError(InputError, MissingDependencyError):
    """A requested backend whose packages are not installed (or do not import); the message
    carries the ``pip install`` command. Both an :class:`InputError` and a
    :class:`MissingDependencyError`, so either handler turns it into one readable line."""


@dataclass(frozen=True)
class BackendSpec:
    """A parsed backend name: the runtime, its graph optimisation level, its reduced precision."""

    name: str
    """``torch``, ``onnx``, ``openvino`` or ``auto``."""
    optimization: str | None = None
    """``O1`` .. ``O4`` (ONNX only)."""
    quantization: str | None = None
    """``int8`` (ONNX, dynamic weight quantisation) or ``bf16`` (OpenVINO's inference precision):
    numerics other than fp32."""

    @property
    def quantized(self) -> bool:
        """Whether scores differ from fp32 by design (int8 or bf16): reported so, never ``auto``'s."""
        return self.quantization is not None and self.name != "auto"

    def __str__(self) -> str:
        suffix = self.optimization or self.quantization
        return f"{self.name}-{suffix}" if suffix else self.name


def parse_backend(value: str | BackendSpec | None) -> BackendSpec:
    """``"onnx-O2"`` -> ``BackendSpec("onnx", optimization="O2")``; unknown names list the known ones."""
    if isinstance(value, BackendSpec):
        return value
    text = (value or "torch").strip()
    lowered = text.lower()
    if lowered in ("torch", "onnx", "openvino", "auto"):
        return BackendSpec(lowered)
    if lowered == "auto-bf16":
        return BackendSpec("auto", quantization="bf16")
    if lowered == "onnx-int8":
        return BackendSpec("onnx", quantization="int8")
    if lowered == "openvino-bf16":
        return BackendSpec("openvino", quantization="bf16")
    if lowered.startswith("onnx-") and lowered[5:].upper() in LEVELS:
        return BackendSpec("onnx", optimization=lowered[5:].upper())
    raise InputError(f"unknown backend {text!r}; known: {', '.join(BACKEND_CHOICES)}")


@dataclass(frozen=True)
class _Runtime:
    """What a runtime needs installed, and the extra that installs it."""

    name: str
    modules: tuple[str, ...]
    extra: str
    distributions: tuple[str, ...]

    def install(self, gpu: bool = False) -> str:
        extra = f"{self.extra}-gpu" if gpu and self.name == "onnx" else self.extra
        return f'pip install "irdistill[{extra}]"'


RUNTIMES = {
    "onnx": _Runtime("onnx", ("onnxruntime", "onnx"), "onnx", ("onnxruntime", "onnx")),
    "openvino": _Runtime("openvino", ("openvino", "onnx"), "openvino", ("openvino", "onnx")),
}


@cache
def _import_problem(name: str) -> str | None:
    """``None`` when every module of runtime ``name`` imports, else the first import error.

    The imports are really done (not only looked up): an installed but broken runtime (e.g. one
    built against another numpy) fails here, not in the middle of a job.
    """
    for module in RUNTIMES[name].modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            return f"{module} does not import ({err})"
    return None


def installed_backends() -> list[str]:
    """The runtimes that import here, ``torch`` first."""
    return ["torch", *(name for name in RUNTIMES if _import_problem(name) is None)]


def check_backend(value: str | BackendSpec | None, *, what: str = "--backend") -> BackendSpec:
    """Parse ``value`` and, for an explicit ONNX / OpenVINO request, check its packages import.

    Raises:
        InputError: an unknown name.
        MissingBackendError: a requested runtime that is not installed, with the install command.
    """
    try:
        spec = parse_backend(value)
    except InputError as err:
        raise InputError(f"{what}: {err}") from None
    if spec.name in RUNTIMES:
        problem = _import_problem(spec.name)
        if problem:
            raise MissingBackendError(
                f"{what} {spec}: the {spec.name} backend is not installed ({problem}): "
                f"{RUNTIMES[spec.name].install()}"
                + (f" (on a GPU: {RUNTIMES['onnx'].install(gpu=True)})" if spec.name == "onnx" else "")
            )
    if spec.optimization == "O4":
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"{what} {spec}: O4 casts to fp16 and needs a GPU; use onnx-O1 .. onnx-O3 on a CPU")
    if spec.name == "openvino" and spec.quantization == "bf16":
        from irdistill.runtimes import openvino_bf16_problem

        problem = openvino_bf16_problem()
        if problem:
            raise InputError(f"{what} {spec}: {problem}; use openvino (fp32) or onnx-int8")
    return spec


def backend_of(model: Any) -> str:
    """The backend a model was loaded with (``onnx-int8``, ``openvino``, ``torch`` ...)."""
    label = getattr(model, "_irdistill_backend", None)
    if label:
        return str(label)
    get = getattr(model, "get_backend", None)
    return str(get()) if callable(get) else "torch"


def _model_class(kind: str) -> Any:
    import sentence_transformers as st

    classes = {
        "sentence-transformer": st.SentenceTransformer,
        "cross-encoder": st.CrossEncoder,
        "sparse-encoder": st.SparseEncoder,
    }
    if kind not in classes:
        raise InputError(f"unknown model kind {kind!r}; known: {', '.join(classes)}")
    return classes[kind]


def _versions(name: str) -> dict[str, str]:
    out = {}
    for dist in ("torch", "sentence-transformers", "transformers", *RUNTIMES[name].distributions):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "?"
    return out


def export_dir(kind: str, path: str, name: str, cache_root: str | os.PathLike[str] | None = None) -> Path:
    """``$IRDISTILL_CACHE/backends/<key>``: where ``path``'s graphs for runtime ``name`` are kept.

    The key covers the model's files (names, sizes, mtimes, as the embedding cache's), the model
    kind, the runtime and the versions that make the graph (torch, transformers, the runtime), so a
    retrained model or an upgrade exports again."""
    from irdistill.paths import cache_dir, model_fingerprint

    settings = json.dumps(
        {"model": model_fingerprint(path), "kind": kind, "backend": name, "versions": _versions(name)}, sort_keys=True
    )
    key = hashlib.sha256(settings.encode()).hexdigest()[:32]
    return (Path(cache_root) if cache_root else cache_dir()) / "backends" / key


def _file_name(spec: BackendSpec) -> str:
    if spec.name == "openvino":
        return "openvino/openvino_model.xml"
    if spec.optimization:
        return f"onnx/model_{spec.optimization}.onnx"
    if spec.quantization:
        return "onnx/model_qint8_per_channel.onnx"
    return "onnx/model.onnx"


def _load(kind: str, path: str, device: str | None, **kwargs: Any) -> Any:
    return _model_class(kind)(path, device=device, **kwargs)


def _export(model: Any, kind: str, path: str, spec: BackendSpec, folder: Path) -> Path:
    """The graph file ``spec`` runs, made once in ``folder``: the traced fp32 graph first, then the
    variant (optimised, quantised or OpenVINO IR) from it. Returns the file."""
    from irdistill import runtimes

    plain = folder / "onnx" / "model.onnx"
    if not plain.is_file():
        start = time.perf_counter()
        logger.info("exporting %s to ONNX (once; kept in %s)", path, folder)
        runtimes.export_graph(model, plain)
        meta = {"source": path, "kind": kind, "backend": spec.name, "versions": _versions(spec.name)}
        (folder / "irdistill_backend.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        logger.info("exported %s in %.1f s", path, time.perf_counter() - start)
    target = folder / _file_name(spec)
    if target.is_file():
        return target
    start = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    if spec.name == "openvino":
        runtimes.to_openvino(plain, target)
    elif spec.optimization:
        runtimes.optimise_graph(plain, target, spec.optimization, runtimes.transformer_module(model).model.config)
    else:
        runtimes.quantise_graph(plain, target)
    logger.info("exported %s as %s in %.1f s", path, spec, time.perf_counter() - start)
    return target


def load_model(
    kind: Kind,
    path: str,
    *,
    backend: str | BackendSpec | None = "torch",
    device: str | None = None,
    cache_root: str | os.PathLike[str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    **kwargs: Any,
) -> Any:
    """A ``SentenceTransformer``, ``CrossEncoder`` or ``SparseEncoder`` on ``backend``.

    ``torch`` loads as sentence-transformers always has. For ONNX Runtime and OpenVINO the model is
    loaded as usual, its Hugging Face model is exported once into the cache (:func:`export_dir`,
    :mod:`irdistill.runtimes`) and then replaced by the graph: tokenisation, pooling and score
    activation stay sentence-transformers'. ``auto`` runs :func:`resolve_auto` (its result is cached
    too). The backend used is recorded on the model (:func:`backend_of`).

    Args:
        kind: ``sentence-transformer``, ``cross-encoder`` or ``sparse-encoder``.
        path: a local folder or a hub id (already resolved through ``$IRDISTILL_MODELS``).
        backend: a name :func:`parse_backend` reads.
        device: torch device (ONNX Runtime: CUDA only with onnxruntime-gpu; OpenVINO: the CPU).
        cache_root: the cache folder (default ``$IRDISTILL_CACHE``).
        tolerance: ``auto``'s largest allowed |score difference| from fp32 torch.
        kwargs: passed to the model class (e.g. ``trust_remote_code``).
    """
    spec = check_backend(backend)
    if spec.name == "auto" and spec.quantization == "bf16":
        chosen = decide_reduced(kind, path, device=device, cache_root=cache_root)
        if chosen.backend == "auto":
            return resolve_auto(kind, path, device=device, cache_root=cache_root, tolerance=tolerance, **kwargs).model
        model = load_model(kind, path, backend=chosen.backend, device=device, cache_root=cache_root, **kwargs)
        model._irdistill_precision_check = chosen.check
        return model
    if spec.name == "auto":
        return resolve_auto(kind, path, device=device, cache_root=cache_root, tolerance=tolerance, **kwargs).model
    if spec.name == "torch":
        model = _load(kind, path, device, **kwargs)
    else:
        from irdistill import runtimes

        model = _load(kind, path, "cpu", **kwargs)
        graph = _export(model, kind, path, spec, export_dir(kind, path, spec.name, cache_root))
        precision = spec.quantization if spec.name == "openvino" and spec.quantization else "f32"
        runtimes.attach(model, runtimes.load_graph(graph, spec.name, device=device, precision=precision))
        if device is not None and str(device).startswith("cuda") and spec.name == "onnx":
            model.to(device)  # the features follow the model's device; the graph runs where its provider is
    model._irdistill_backend = str(spec)
    if spec.quantized:
        what = "int8-quantised weights" if spec.quantization == "int8" else f"{spec.quantization} arithmetic"
        logger.info("%s runs on %s: %s, scores differ from fp32", path, spec, what)
    return model


# ---------------------------------------------------------------------------------------------
# auto: the fastest installed backend that reproduces fp32 torch

PROBE_QUERIES = (
    "what causes high blood pressure in adults",
    "protein expression in tumour cells",
    "how do vaccines train the immune system",
    "effect of a low drug dose",
)
PROBE_DOCUMENTS = (
    "Hypertension in adults is linked to salt intake, age, weight and genetic factors that raise vascular resistance.",
    "High protein expression in tumour cells increases the risk that the cancer spreads.",
    "Vaccines expose the immune system to an antigen so that memory cells respond faster to a later infection.",
    "A low dose of the drug had no measurable effect on blood pressure in the trial.",
    "The study results show the model data.",
    "Gene expression levels decrease in mouse brain cells after the treatment, as the figures show in detail "
    "for each of the twelve regions that were sampled at three time points.",
)


TIMING_WORDS = 200
"""Words of each timing document: passage-length inputs, where the backends' speeds differ (on
the short fidelity probe, per-call overheads decide and the ranking of backends can invert)."""


def timing_probe(documents: int = 16) -> tuple[list[str], list[str]]:
    """What ``auto`` times: two queries and ``documents`` passage-length texts (for a cross-encoder,
    their 32 pairs), made from the probe sentences, so the same on every machine."""
    words = " ".join(PROBE_DOCUMENTS).split()
    texts = []
    for i in range(documents):
        rotated = words[i % len(words) :] + words[: i % len(words)]
        texts.append(" ".join((rotated * (TIMING_WORDS // len(rotated) + 1))[:TIMING_WORDS]))
    return list(PROBE_QUERIES[:2]), texts


def probe_scores(kind: str, model: Any, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
    """Scores of every (query, document) pair, as the model's users compute them: the cross-encoder's
    raw logits, the bi-encoder's similarity of query and document embeddings, the sparse dot product."""
    import torch

    if kind == "cross-encoder":
        pairs = [(q, d) for q in queries for d in documents]
        features = model.tokenizer(
            [q for q, _ in pairs],
            [d for _, d in pairs],
            truncation=True,
            max_length=model.max_seq_length,
            padding=True,
            return_tensors="pt",
        )
        with torch.inference_mode():
            logits = model.transformers_model(**features).logits
        return np.asarray(logits.float().cpu().numpy(), dtype=np.float64).reshape(len(pairs), -1)[:, 0]
    if kind == "sentence-transformer":
        normalize = str(model.similarity_fn_name) == "cosine"
        q = model.encode_query(list(queries), convert_to_numpy=True, normalize_embeddings=normalize)
        d = model.encode_document(list(documents), convert_to_numpy=True, normalize_embeddings=normalize)
        return (q.astype(np.float64) @ d.astype(np.float64).T).ravel()
    q = model.encode_query(list(queries), convert_to_tensor=True).to_dense().double().cpu()
    d = model.encode_document(list(documents), convert_to_tensor=True).to_dense().double().cpu()
    return (q @ d.T).numpy().ravel()


@dataclass
class Trial:
    """One candidate backend on the probe: its speed and its largest difference from fp32 torch."""

    backend: str
    seconds: float | None
    """Median wall time of one probe pass (``None``: it failed to load or run)."""
    max_abs_diff: float | None
    error: str | None = None

    def within(self, tolerance: float) -> bool:
        return self.seconds is not None and self.max_abs_diff is not None and self.max_abs_diff <= tolerance


def auto_candidates(installed: Sequence[str] | None = None) -> list[BackendSpec]:
    """What ``auto`` tries: torch and the installed unquantised runtimes (never ``onnx-int8``;
    never O3, whose GELU approximation, or O4, whose fp16, leave fp32's tolerance by design)."""
    installed = installed_backends() if installed is None else list(installed)
    out = [BackendSpec("torch")]
    if "onnx" in installed:
        out += [BackendSpec("onnx"), BackendSpec("onnx", optimization="O2")]
    if "openvino" in installed:
        out.append(BackendSpec("openvino"))
    return out


def choose_backend(
    candidates: Sequence[BackendSpec], measure: Callable[[BackendSpec], Trial], tolerance: float = DEFAULT_TOLERANCE
) -> tuple[BackendSpec, list[Trial]]:
    """The fastest candidate whose probe scores are within ``tolerance`` of fp32 torch.

    Quantised candidates are skipped whatever the list says; torch (the reference, difference 0)
    is the fallback when nothing else qualifies. ``measure`` runs one candidate (tests give a fake).
    """
    trials: list[Trial] = []
    best: tuple[float, BackendSpec] | None = None
    for spec in candidates:
        if spec.quantized or spec.name == "auto":
            logger.info("auto: %s is never chosen (quantised or not a backend)", spec)
            continue
        trial = measure(spec)
        trials.append(trial)
        if trial.within(tolerance) and (best is None or trial.seconds < best[0]):  # type: ignore[operator]
            best = (trial.seconds, spec)  # type: ignore[assignment]
    return (best[1] if best else BackendSpec("torch")), trials


@dataclass
class AutoResolution:
    model: Any
    backend: BackendSpec
    trials: list[Trial]


def resolve_auto(
    kind: Kind,
    path: str,
    *,
    device: str | None = None,
    cache_root: str | os.PathLike[str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    repeats: int = 3,
    **kwargs: Any,
) -> AutoResolution:
    """Measure every :func:`auto_candidates` backend, keep the fastest within ``tolerance`` of fp32
    torch (scores: the fidelity probe; speed: the fastest of ``repeats`` passes over
    :func:`timing_probe`'s passage-length texts, after a warm-up pass), log the table and cache the
    decision (same model files, kind, device, installed runtimes, thread count and timing probe: no
    second measurement). A model of an architecture already decided (:func:`architecture_fingerprint`:
    the same config and modules, other weights, e.g. a student fine-tuned from a model ``auto`` ran
    before) takes that choice after its own fidelity check, without timing the candidates again."""
    import torch

    from irdistill.paths import cache_dir, model_fingerprint, write_text_atomic

    candidates = auto_candidates()
    settings = {
        "kind": kind,
        "device": device,
        "candidates": [str(c) for c in candidates],
        "versions": {n: _versions(n) for n in installed_backends() if n != "torch"},
        "threads": torch.get_num_threads(),
        "tolerance": tolerance,
        "timing": {"words": TIMING_WORDS, "documents": len(timing_probe()[1])},
    }
    folder = (Path(cache_root) if cache_root else cache_dir()) / "backends"

    def record_for(identity: dict[str, Any], prefix: str) -> Path:
        key = hashlib.sha256(json.dumps({**settings, **identity}, sort_keys=True).encode()).hexdigest()[:32]
        return folder / f"{prefix}-{key}.json"

    record = record_for({"model": model_fingerprint(path)}, "auto")
    if record.is_file():
        saved = json.loads(record.read_text(encoding="utf-8"))
        spec = parse_backend(saved["backend"])
        logger.info("auto backend for %s: %s (decided earlier, %s)", path, spec, record)
        model = load_model(kind, path, backend=spec, device=device, cache_root=cache_root, **kwargs)
        return AutoResolution(model, spec, [Trial(**t) for t in saved["trials"]])
    reference_model = load_model(kind, path, backend="torch", device=device, **kwargs)
    reference = probe_scores(kind, reference_model, PROBE_QUERIES, PROBE_DOCUMENTS)
    architecture = architecture_fingerprint(reference_model)
    shared = record_for({"architecture": architecture}, "auto-architecture") if architecture else None
    if shared is not None and shared.is_file():
        reused = _reuse_decision(kind, path, shared, record, reference, tolerance, device, cache_root, **kwargs)
        if reused is not None:
            return reused
    models: dict[str, Any] = {"torch": reference_model}

    def measure(spec: BackendSpec) -> Trial:
        try:
            model = models.get(str(spec)) or load_model(
                kind, path, backend=spec, device=device, cache_root=cache_root, **kwargs
            )
            scores = probe_scores(kind, model, PROBE_QUERIES, PROBE_DOCUMENTS)
            timing_queries, timing_documents = timing_probe()
            probe_scores(kind, model, timing_queries, timing_documents)  # warm-up (first-shape work)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                probe_scores(kind, model, timing_queries, timing_documents)
                times.append(time.perf_counter() - start)
        except (RuntimeError, ValueError, OSError, ImportError) as err:  # an export or runtime that fails
            logger.warning("auto: %s failed on %s (%s); not a candidate", spec, path, err)
            return Trial(str(spec), None, None, error=f"{type(err).__name__}: {err}")
        models[str(spec)] = model
        # the fastest pass: on a shared machine the slower ones measure the neighbours
        return Trial(str(spec), min(times), float(np.max(np.abs(scores - reference))))

    spec, trials = choose_backend(candidates, measure, tolerance)
    for trial in trials:
        logger.info(
            "auto: %-9s %s",
            trial.backend,
            trial.error
            or f"{1000 * trial.seconds:.1f} ms per probe, max |diff| {trial.max_abs_diff:.2e}"
            + ("" if trial.within(tolerance) else f" > {tolerance:g}: rejected"),
        )
    logger.info("auto backend for %s: %s (fastest within %g of fp32 torch)", path, spec, tolerance)
    decision = json.dumps(
        {"model": path, "kind": kind, "backend": str(spec), "trials": [asdict(t) for t in trials]}, indent=1
    )
    write_text_atomic(record, decision)
    if shared is not None:
        write_text_atomic(shared, decision)
    model = models[str(spec)]
    model._irdistill_backend = str(spec)
    return AutoResolution(model, spec, trials)


SHAPE_FIELDS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "hidden_act",
    "vocab_size",
    "max_position_embeddings",
    "position_embedding_type",
    "type_vocab_size",
    "num_labels",
)
"""The Hugging Face config fields that set a transformer's work per token (its speed on each backend)."""


def architecture_fingerprint(model: Any) -> str | None:
    """What ``auto``'s timing depends on, without the weights, from a loaded sentence-transformers
    model: the Hugging Face model class, its config's shape fields (:data:`SHAPE_FIELDS`) and the
    module classes. Read from the loaded model, not its files, so that a student fine-tuned from
    another model and saved by a newer library (other config defaults, renamed module paths, its
    training's sequence length) has its base's: which runtime is fastest depends on the kernels an
    architecture runs, not on where texts are cut. ``None`` when the model has no such transformer."""
    from irdistill import runtimes

    try:
        hf_model = runtimes.transformer_module(model).model
    except (InputError, AttributeError, TypeError, ValueError, IndexError):
        return None
    config = hf_model.config
    parts = {
        "class": type(hf_model).__name__,
        "config": {field: getattr(config, field, None) for field in SHAPE_FIELDS},
        "modules": [type(module).__name__ for module in model] if hasattr(model, "__iter__") else [],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _reuse_decision(
    kind: Kind,
    path: str,
    shared: Path,
    record: Path,
    reference: np.ndarray,
    tolerance: float,
    device: str | None,
    cache_root: str | os.PathLike[str] | None,
    **kwargs: Any,
) -> AutoResolution | None:
    """``auto``'s choice for another model of ``path``'s architecture, taken without timing the
    candidates again when ``path``'s own probe scores on it stay within ``tolerance`` of fp32 torch
    (fidelity is checked per model; only the speed ranking is shared), and then kept as ``path``'s own
    decision in ``record``, naming the model it came from. ``None``: measure afresh."""
    from irdistill.paths import write_text_atomic

    saved = json.loads(shared.read_text(encoding="utf-8"))
    spec = parse_backend(saved["backend"])
    try:
        model = load_model(kind, path, backend=spec, device=device, cache_root=cache_root, **kwargs)
        difference = float(np.max(np.abs(probe_scores(kind, model, PROBE_QUERIES, PROBE_DOCUMENTS) - reference)))
    except (RuntimeError, ValueError, OSError, ImportError) as err:
        logger.warning("auto: %s failed on %s (%s); measuring every candidate", spec, path, err)
        return None
    if difference > tolerance:
        logger.info(
            "auto: %s differs by %.2e on %s (> %g): measuring every candidate", spec, difference, path, tolerance
        )
        return None
    logger.info(
        "auto backend for %s: %s (the choice for %s, same architecture; max |diff| %.2e here)",
        path,
        spec,
        saved.get("model", "?"),
        difference,
    )
    write_text_atomic(
        record, json.dumps({**saved, "model": path, "kind": kind, "reused_from": saved.get("model")}, indent=1)
    )
    return AutoResolution(model, spec, [Trial(**t) for t in saved["trials"]])


# ---------------------------------------------------------------------------------------------
# auto-bf16: reduced precision where the CPU computes it natively and the ranking survives it

REDUCED_BACKEND = "openvino-bf16"
"""The reduced-precision backend ``auto-bf16`` considers (OpenVINO's CPU plugin computing in bf16)."""


@dataclass(frozen=True)
class ReducedChoice:
    """What ``auto-bf16`` decided for one model on this machine."""

    backend: str
    """:data:`REDUCED_BACKEND`, or ``auto`` (the fp32-faithful choice) when it did not qualify."""
    reason: str
    check: dict[str, Any] | None
    """:func:`precision_check`'s record of the reduced backend (``None`` where it could not run)."""


def reduced_precision_problem() -> str | None:
    """``None`` when :data:`REDUCED_BACKEND` can run here, else why not (OpenVINO missing, or a CPU
    without native bf16, where OpenVINO would quietly compute fp32 under a bf16 label)."""
    problem = _import_problem("openvino")
    if problem:
        return f"the openvino backend is not installed ({problem}; {RUNTIMES['openvino'].install()})"
    from irdistill.runtimes import openvino_bf16_problem

    return openvino_bf16_problem()


def precision_check(
    kind: Kind, path: str, backend: str = REDUCED_BACKEND, *, cache_root: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """How far ``backend`` moves ``path``'s scores from fp32 torch on the fixed probe (every
    :data:`PROBE_QUERIES` x :data:`PROBE_DOCUMENTS` pair): Kendall's τ-b between the two score lists
    (1: the same order) and the largest |score difference|.

    Computed once per model, backend, library versions and CPU bf16 instructions, and kept in
    ``$IRDISTILL_CACHE/backends/check-<key>.json`` (so a resumed job or a second teacher reads it
    without loading a model)."""
    from scipy.stats import kendalltau

    from irdistill.paths import cache_dir, model_fingerprint, write_text_atomic
    from irdistill.precision import cpu_bf16_instructions

    spec = parse_backend(backend)
    identity = {
        "model": model_fingerprint(path),
        "kind": kind,
        "backend": str(spec),
        "versions": _versions(spec.name) if spec.name in RUNTIMES else {},
        "cpu_bf16": cpu_bf16_instructions(),
        "probe": [list(PROBE_QUERIES), list(PROBE_DOCUMENTS)],
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
    record = (Path(cache_root) if cache_root else cache_dir()) / "backends" / f"check-{key}.json"
    if record.is_file():
        return dict(json.loads(record.read_text(encoding="utf-8")))
    start = time.perf_counter()
    fp32 = load_model(kind, path, backend="torch", device="cpu")
    reference = probe_scores(kind, fp32, PROBE_QUERIES, PROBE_DOCUMENTS)
    del fp32
    model = load_model(kind, path, backend=spec, cache_root=cache_root)
    scores = probe_scores(kind, model, PROBE_QUERIES, PROBE_DOCUMENTS)
    check = {
        "backend": str(spec),
        "reference": "torch fp32",
        "kendall_tau": round(float(kendalltau(reference, scores).statistic), 4),
        "max_abs_diff": float(np.max(np.abs(scores - reference))),
        "pairs": len(reference),
        "cpu_bf16": identity["cpu_bf16"],
    }
    write_text_atomic(record, json.dumps(check, indent=1))
    logger.info("precision check of %s on %s done in %.1f s: %s", spec, path, time.perf_counter() - start, check)
    return check


def decide_reduced(
    kind: Kind, path: str, *, device: str | None = None, cache_root: str | os.PathLike[str] | None = None
) -> ReducedChoice:
    """``auto-bf16``'s decision for ``path`` on this machine: :data:`REDUCED_BACKEND` when it runs here
    and :func:`precision_check` gives Kendall τ >= :data:`MIN_REDUCED_TAU`, else ``auto``. Logged."""
    if device is not None and str(device).startswith("cuda"):
        choice = ReducedChoice("auto", f"{REDUCED_BACKEND} runs on the CPU, not on {device}", None)
    elif (problem := reduced_precision_problem()) is not None:
        choice = ReducedChoice("auto", problem, None)
    else:
        check = precision_check(kind, path, REDUCED_BACKEND, cache_root=cache_root)
        summary = (
            f"Kendall τ {check['kendall_tau']:.4f} with fp32 torch over {check['pairs']} probe pairs, "
            f"max |diff| {check['max_abs_diff']:.2e}"
        )
        if check["kendall_tau"] >= MIN_REDUCED_TAU:
            choice = ReducedChoice(REDUCED_BACKEND, summary, check)
        else:
            choice = ReducedChoice("auto", f"{summary} < {MIN_REDUCED_TAU}", check)
    if choice.backend == "auto":
        logger.info("auto-bf16 for %s: %s; using auto (fp32-faithful backends)", path, choice.reason)
    else:
        logger.info("auto-bf16 for %s: %s (%s)", path, choice.backend, choice.reason)
    return choice


def fingerprint_check(check: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of a :func:`precision_check` record that goes into a score store's fingerprint: the
    reference, Kendall τ to 3 decimals and the probe's size (not the raw difference, whose last digits
    vary with the CPU's kernels while the ranking does not)."""
    if check is None:
        return None
    tau = round(float(check["kendall_tau"]), 3)
    return {"reference": check["reference"], "kendall_tau": tau, "pairs": check["pairs"]}


def precision_check_of(model: Any) -> dict[str, Any] | None:
    """The precision check of a model ``auto-bf16`` loaded on a reduced-precision backend, else ``None``."""
    return getattr(model, "_irdistill_precision_check", None)
