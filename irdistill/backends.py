"""Inference backends for every model irdistill runs forward-only: torch, ONNX Runtime, OpenVINO.

A backend is named by one string, parsed in one place (:func:`parse_backend`):

================  =====================================================================
``torch``         the default; the only backend training uses
``onnx``          ONNX Runtime, the graph as exported (``pip install "irdistill[onnx]"``)
``onnx-O1`` ..    ONNX Runtime after Optimum's graph optimisation level O1 .. O4 (O3 approximates
``onnx-O4``       GELU, O4 adds fp16 and needs a GPU)
``onnx-int8``     ONNX Runtime, weights quantised to int8 dynamically (no calibration data);
                  reported as quantised and never chosen by ``auto``
``openvino``      OpenVINO (``pip install "irdistill[openvino]"``)
``auto``          the fastest installed, unquantised backend whose scores on a fixed probe
                  reproduce fp32 torch within ``tolerance`` (max |score difference| <= 1e-4);
                  the choice is logged and kept in the cache
================  =====================================================================

Reused from sentence-transformers (3.2+): ``SentenceTransformer`` / ``CrossEncoder`` /
``SparseEncoder`` with ``backend="onnx" | "openvino"`` (the export itself is Optimum's),
``export_optimized_onnx_model`` and ``export_dynamic_quantized_onnx_model``. What this module
adds: one name for a backend and its variant, the install command when a backend is missing,
exports kept in ``$IRDISTILL_CACHE/backends/<key>/`` (keyed like the embedding cache: the
model's files, the model kind, the backend and the library versions; written to a staging folder
and renamed, so a stopped export leaves nothing half-written), and ``auto``'s fidelity check.

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
import platform
import shutil
import statistics
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
BACKEND_CHOICES = ("torch", "onnx", *(f"onnx-{level}" for level in LEVELS), "onnx-int8", "openvino", "auto")
BACKEND_HELP = (
    "inference backend: torch (default), onnx, onnx-O1..onnx-O4 (graph optimisation level), onnx-int8 "
    "(dynamic int8, quantised), openvino, or auto (fastest installed one that matches torch within 1e-4); "
    'onnx and openvino need pip install "irdistill[onnx]" / "irdistill[openvino]"'
)
DEFAULT_TOLERANCE = 1e-4


class MissingBackendError(InputError, MissingDependencyError):
    """A requested backend whose packages are not installed (or do not import); the message
    carries the ``pip install`` command. Both an :class:`InputError` and a
    :class:`MissingDependencyError`, so either handler turns it into one readable line."""


@dataclass(frozen=True)
class BackendSpec:
    """A parsed backend name: the runtime, its graph optimisation level, its quantisation."""

    name: str
    """``torch``, ``onnx``, ``openvino`` or ``auto``."""
    optimization: str | None = None
    """``O1`` .. ``O4`` (ONNX only)."""
    quantization: str | None = None
    """``int8`` (ONNX only, dynamic)."""

    @property
    def quantized(self) -> bool:
        return self.quantization is not None

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
    if lowered == "onnx-int8":
        return BackendSpec("onnx", quantization="int8")
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
    "onnx": _Runtime("onnx", ("onnxruntime", "optimum.onnxruntime"), "onnx", ("onnxruntime", "optimum-onnx")),
    "openvino": _Runtime("openvino", ("openvino", "optimum.intel.openvino"), "openvino", ("openvino", "optimum-intel")),
}


@cache
def _import_problem(name: str) -> str | None:
    """``None`` when every module of runtime ``name`` imports, else the first import error.

    The imports are really done (not only looked up): an installed but incompatible Optimum
    (e.g. one that needs an older transformers) fails here, not in the middle of a job.
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
    spec = parse_backend(value)
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
    for dist in ("sentence-transformers", "transformers", *RUNTIMES[name].distributions):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "?"
    return out


def export_dir(kind: str, path: str, name: str, cache_root: str | os.PathLike[str] | None = None) -> Path:
    """``$IRDISTILL_CACHE/backends/<key>``: where ``path``'s export to runtime ``name`` is kept.

    The key covers the model's files (names, sizes, mtimes, as the embedding cache's), the model
    kind, the runtime and the versions that make the graph, so a retrained model or an upgrade
    exports again."""
    from irdistill.paths import cache_dir, model_fingerprint

    settings = json.dumps(
        {"model": model_fingerprint(path), "kind": kind, "backend": name, "versions": _versions(name)}, sort_keys=True
    )
    key = hashlib.sha256(settings.encode()).hexdigest()[:32]
    return (Path(cache_root) if cache_root else cache_dir()) / "backends" / key


def _int8_config() -> str:
    """The dynamic int8 configuration sentence-transformers names for this CPU."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "avx2"
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def _file_name(spec: BackendSpec) -> str:
    if spec.name == "openvino":
        return "openvino/openvino_model.xml"
    if spec.optimization:
        return f"onnx/model_{spec.optimization}.onnx"
    if spec.quantization:
        return f"onnx/model_qint8_{_int8_config()}.onnx"
    return "onnx/model.onnx"


def _load(kind: str, path: str, spec: BackendSpec, device: str | None, **kwargs: Any) -> Any:
    cls = _model_class(kind)
    if spec.name == "torch":
        return cls(path, device=device, **kwargs)
    return cls(path, device=device, backend=spec.name, **kwargs)


def _runtime_device(spec: BackendSpec, device: str | None) -> str | None:
    """ONNX Runtime runs on CUDA only with the CUDA provider (onnxruntime-gpu); without it the
    model is kept on the CPU rather than failing on ``.to("cuda")``."""
    if spec.name == "onnx":
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            if device is not None and device.startswith("cuda"):
                logger.warning("onnxruntime has no CUDA provider (pip install onnxruntime-gpu): running on the CPU")
            return "cpu"
    return device


def _export(kind: str, path: str, spec: BackendSpec, folder: Path) -> None:
    """Export ``path`` to ``folder`` (the plain graph) and the variant ``spec`` names, each once."""
    from irdistill.paths import save_model_atomic, staging_dir

    base = BackendSpec(spec.name)
    if not (folder / _file_name(base)).is_file():
        start = time.perf_counter()
        logger.info("exporting %s to %s (once; kept in %s)", path, spec.name, folder)
        model = _load(kind, path, base, "cpu")
        meta = {"source": path, "kind": kind, "backend": spec.name, "versions": _versions(spec.name)}
        save_model_atomic(model, folder, extra_files={"irdistill_backend.json": json.dumps(meta, indent=1)})
        logger.info("exported %s to %s in %.1f s", path, spec.name, time.perf_counter() - start)
    target = folder / _file_name(spec)
    if target.is_file():
        return
    from sentence_transformers import backend as st_backend

    start = time.perf_counter()
    model = _load(kind, str(folder), base, "cpu", model_kwargs={"file_name": _file_name(base)})
    tmp = staging_dir(folder.parent / f"{folder.name}-{spec}")
    try:
        if spec.optimization:
            st_backend.export_optimized_onnx_model(model, spec.optimization, str(tmp))
        else:
            st_backend.export_dynamic_quantized_onnx_model(model, _int8_config(), str(tmp))
        made = tmp / _file_name(spec)
        if not made.is_file():
            found = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*.onnx"))
            raise RuntimeError(f"the {spec} export wrote {found}, not {_file_name(spec)}")
        os.replace(made, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("exported %s as %s in %.1f s", path, spec, time.perf_counter() - start)


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

    ``torch`` loads as sentence-transformers always has. ONNX and OpenVINO models are exported
    once into the cache (:func:`export_dir`) and loaded from there afterwards; ``auto`` runs
    :func:`resolve_auto` (its result is cached too). The backend used is recorded on the model
    (:func:`backend_of`).

    Args:
        kind: ``sentence-transformer``, ``cross-encoder`` or ``sparse-encoder``.
        path: a local folder or a hub id (already resolved through ``$IRDISTILL_MODELS``).
        backend: a name :func:`parse_backend` reads.
        device: torch device (ONNX Runtime: the CPU unless onnxruntime-gpu is installed).
        cache_root: the cache folder (default ``$IRDISTILL_CACHE``).
        tolerance: ``auto``'s largest allowed |score difference| from fp32 torch.
        kwargs: passed to the model class (e.g. ``trust_remote_code``).
    """
    spec = check_backend(backend)
    if spec.name == "auto":
        return resolve_auto(kind, path, device=device, cache_root=cache_root, tolerance=tolerance, **kwargs).model
    if spec.name == "torch":
        model = _load(kind, path, spec, device, **kwargs)
    else:
        folder = export_dir(kind, path, spec.name, cache_root)
        _export(kind, path, spec, folder)
        model_kwargs = {**kwargs.pop("model_kwargs", {}), "file_name": _file_name(spec)}
        model = _load(kind, str(folder), spec, _runtime_device(spec, device), model_kwargs=model_kwargs, **kwargs)
    model._irdistill_backend = str(spec)
    if spec.quantized:
        logger.info("%s runs on %s: int8-quantised weights, scores differ from fp32", path, spec)
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
    """Measure every :func:`auto_candidates` backend on a fixed probe, keep the fastest within
    ``tolerance`` of fp32 torch, log the table and cache the decision (same model files, kind,
    device, installed runtimes and thread count: no second measurement)."""
    import torch

    from irdistill.paths import cache_dir, model_fingerprint, write_text_atomic

    candidates = auto_candidates()
    key = hashlib.sha256(
        json.dumps(
            {
                "model": model_fingerprint(path),
                "kind": kind,
                "device": device,
                "candidates": [str(c) for c in candidates],
                "versions": {n: _versions(n) for n in installed_backends() if n != "torch"},
                "threads": torch.get_num_threads(),
                "tolerance": tolerance,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:32]
    record = (Path(cache_root) if cache_root else cache_dir()) / "backends" / f"auto-{key}.json"
    if record.is_file():
        saved = json.loads(record.read_text(encoding="utf-8"))
        spec = parse_backend(saved["backend"])
        logger.info("auto backend for %s: %s (decided earlier, %s)", path, spec, record)
        model = load_model(kind, path, backend=spec, device=device, cache_root=cache_root, **kwargs)
        return AutoResolution(model, spec, [Trial(**t) for t in saved["trials"]])
    reference_model = load_model(kind, path, backend="torch", device=device, **kwargs)
    reference = probe_scores(kind, reference_model, PROBE_QUERIES, PROBE_DOCUMENTS)
    models: dict[str, Any] = {"torch": reference_model}

    def measure(spec: BackendSpec) -> Trial:
        try:
            model = models.get(str(spec)) or load_model(
                kind, path, backend=spec, device=device, cache_root=cache_root, **kwargs
            )
            scores = probe_scores(kind, model, PROBE_QUERIES, PROBE_DOCUMENTS)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                probe_scores(kind, model, PROBE_QUERIES, PROBE_DOCUMENTS)
                times.append(time.perf_counter() - start)
        except (RuntimeError, ValueError, OSError, ImportError) as err:  # an export or runtime that fails
            logger.warning("auto: %s failed on %s (%s); not a candidate", spec, path, err)
            return Trial(str(spec), None, None, error=f"{type(err).__name__}: {err}")
        models[str(spec)] = model
        return Trial(str(spec), statistics.median(times), float(np.max(np.abs(scores - reference))))

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
    write_text_atomic(
        record,
        json.dumps(
            {"model": path, "kind": kind, "backend": str(spec), "trials": [asdict(t) for t in trials]}, indent=1
        ),
    )
    model = models[str(spec)]
    model._irdistill_backend = str(spec)
    return AutoResolution(model, spec, trials)
