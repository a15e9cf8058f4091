"""ONNX graphs of sentence-transformers models, and the runtimes that execute them in place of torch.

irdistill exports the Hugging Face model inside a ``SentenceTransformer``, ``CrossEncoder`` or
``SparseEncoder`` itself (``torch.onnx.export``) and runs the graph with ONNX Runtime or OpenVINO,
without Optimum: Optimum's releases pin transformers versions that the current sentence-transformers
cannot load, so a user could not install both. Everything around the model (tokenizer, pooling,
normalisation, SPLADE pooling, prompts, the score head's activation) stays sentence-transformers':
only the module's ``model`` is replaced by a graph model (:func:`graph_model_class`) that takes the same tensors and
returns the same output key.

The files of one export (all in one folder, see :func:`irdistill.backends.export_dir`):

=====================================  ===================================================
``onnx/model.onnx``                    the graph as traced (fp32)
``onnx/model_O1.onnx`` .. ``_O4``      after ONNX Runtime's graph optimisations: O1 the
                                       basic ones; O2 adds the transformer fusions
                                       (attention, skip layer norm, bias GELU); O3 also
                                       approximates GELU; O4 also casts to fp16 (GPU)
``onnx/model_qint8.onnx``              MatMul weights quantised to int8, activations
                                       quantised per batch at run time (dynamic)
``openvino/openvino_model.xml``        OpenVINO IR converted from ``model.onnx``, fp32
                                       weights kept (no fp16 compression)
=====================================  ===================================================

Example:
    >>> from sentence_transformers import CrossEncoder  # doctest: +SKIP
    >>> model = CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2")  # doctest: +SKIP
    >>> export_graph(model, "ce/onnx/model.onnx")  # doctest: +SKIP
    >>> attach(model, load_graph("ce/onnx/model.onnx", "onnx"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from irdistill.errors import InputError
from irdistill.paths import write_text_atomic

__all__ = [
    "attach",
    "export_graph",
    "GraphOutput",
    "graph_model_class",
    "graph_signature",
    "is_graph_model",
    "load_graph",
    "openvino_bf16_problem",
    "optimise_graph",
    "quantise_graph",
    "to_openvino",
]

logger = logging.getLogger(__name__)

OPSET = 17
"""LayerNormalization is one ONNX op from opset 17 on; ONNX Runtime 1.17+ and OpenVINO read it."""

# ONNX Runtime's transformer optimiser knows these encoder families under the name "bert" (their
# attention and layer-norm subgraphs have BERT's shape once traced).
ORT_MODEL_TYPES = {
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "camembert": "bert",
    "distilbert": "bert",
    "electra": "bert",
    "mpnet": "bert",
    "ernie": "bert",
    "modernbert": "bert",
}


def transformer_module(model: Any) -> Any:
    """The sentence-transformers module that holds the Hugging Face model (the first one).

    Raises:
        InputError: a model without the sentence-transformers 6 ``Transformer`` layout, or one whose
            text forward is not the model's ``forward``.
    """
    try:
        module = model[0]
    except (TypeError, IndexError, KeyError):
        module = None
    config = getattr(module, "modality_config", None)
    if module is None or not hasattr(module, "model") or not isinstance(config, dict) or "text" not in config:
        raise InputError(
            f"{type(model).__name__}: the onnx and openvino backends need sentence-transformers>=6 "
            "(a first Transformer module with a modality_config); use backend torch"
        )
    if config["text"].get("method") != "forward":
        raise InputError(f"{type(model).__name__}: its text path calls {config['text'].get('method')!r}, not forward")
    return module


def _output_name(module: Any) -> str:
    name = module.modality_config["text"]["method_output_name"]
    if not isinstance(name, str):  # a path into nested outputs: not one graph output
        raise InputError(f"the model's output {name!r} is nested; the onnx and openvino backends need one output")
    return name


def _sample_features(model: Any, module: Any) -> dict[str, Any]:
    """Two padded examples of the tensors the model's forward receives (pairs for a cross-encoder)."""
    tokenizer = model.tokenizer
    first = ["protein expression in tumour cells", "a short one"]
    second = ["the cells express the protein at high levels in every sample", "b"]
    paired = type(model).__name__ == "CrossEncoder"
    features = tokenizer(first, second if paired else None, padding=True, return_tensors="pt")
    params = module.model_forward_params
    return {k: v for k, v in features.items() if params is None or k in params}


def graph_signature(model: Any) -> dict[str, Any]:
    """Input names, output name and output rank of the graph :func:`export_graph` makes of ``model``."""
    module = transformer_module(model)
    return _signature(module, _sample_features(model, module))


def _signature(module: Any, features: dict[str, Any]) -> dict[str, Any]:
    import torch

    name = _output_name(module)
    with torch.inference_mode():
        output = module.model(**features, return_dict=True)[name]
    return {"inputs": list(features), "output": name, "rank": output.dim()}


def _traced(hf_model: Any, names: Sequence[str], output: str) -> Any:
    """``hf_model`` called with positional tensors (what the exporter traces), returning ``output``."""
    import torch

    class Traced(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = hf_model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, tensors, strict=True)), return_dict=True)[output]

    return Traced().eval()


@contextmanager
def _eager_attention(hf_model: Any) -> Iterator[None]:
    """Trace attention as the explicit matmul-softmax-matmul of the "eager" implementation, the
    subgraph ONNX Runtime fuses into its ``Attention`` op (a traced SDPA call is not fused: it stays
    a dozen ops with NaN guards). The model's implementation is restored afterwards."""
    config = getattr(hf_model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    setter = getattr(hf_model, "set_attn_implementation", None)
    if before in (None, "eager") or not callable(setter):
        yield
        return
    setter("eager")
    try:
        yield
    finally:
        setter(before)


def export_graph(model: Any, target: str | os.PathLike[str]) -> dict[str, Any]:
    """Trace ``model``'s Hugging Face model into an fp32 ONNX graph at ``target`` (batch and sequence
    length dynamic) and write its signature beside it (``<target>.json``); returns the signature.

    The file is written under a temporary name and renamed, so a stopped export leaves nothing that
    a later load would take for a graph.
    """
    import torch

    module = transformer_module(model)
    features = _sample_features(model, module)
    signature = _signature(module, features)
    names, output = signature["inputs"], signature["output"]
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes[output] = {0: "batch", 1: "sequence"} if signature["rank"] == 3 else {0: "batch"}
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    traced = _traced(module.model, names, output)
    attention = _eager_attention(module.model)
    try:
        with attention, warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on Python control flow in transformers
            torch.onnx.export(
                traced,
                tuple(features[name] for name in names),
                str(partial),
                input_names=list(names),
                output_names=[output],
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        # the signature first: a graph file is only ever seen with the signature its loader reads
        write_text_atomic(target.with_name(target.name + ".json"), json.dumps(signature, indent=1))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return signature


def read_signature(graph: str | os.PathLike[str]) -> dict[str, Any]:
    """The signature :func:`export_graph` wrote beside the plain graph ``onnx/model.onnx``."""
    graph = Path(graph)
    plain = graph.parent.parent / "onnx" / "model.onnx"
    return json.loads(plain.with_name(plain.name + ".json").read_text(encoding="utf-8"))


def _replace_into(target: Path, write: Callable[[Path], None]) -> None:
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial{target.suffix}")
    try:
        write(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def optimise_graph(source: Path, target: Path, level: str, config: Any) -> None:
    """ONNX Runtime's optimisation ``level`` (O1 .. O4, as Optimum names them) of ``source``.

    Raises:
        InputError: O2 .. O4 on an architecture ONNX Runtime's transformer fusions do not know.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    if level == "O1":
        optimised = optimize_model(str(source), opt_level=1, only_onnxruntime=True)
    else:
        model_type = ORT_MODEL_TYPES.get(str(getattr(config, "model_type", "")))
        if model_type is None:
            raise InputError(
                f"onnx-{level}: ONNX Runtime has no transformer fusions for model type "
                f"{getattr(config, 'model_type', '?')!r} (known: {', '.join(sorted(ORT_MODEL_TYPES))}); "
                "use onnx or onnx-O1"
            )
        options = FusionOptions(model_type)
        options.enable_gelu_approximation = level in ("O3", "O4")
        optimised = optimize_model(
            str(source),
            model_type=model_type,
            num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
            hidden_size=int(getattr(config, "hidden_size", 0) or 0),
            optimization_options=options,
            opt_level=1,
            use_gpu=level == "O4",
        )
        if level == "O4":
            optimised.convert_float_to_float16(keep_io_types=True)
    _replace_into(target, lambda path: optimised.save_model_to_file(str(path)))


def quantise_graph(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of ``source``'s MatMul weights, one scale per output channel
    (activations quantised per batch at run time: no calibration data); attention and the rest stay
    fp32. Per-channel weights keep the ranking much closer to fp32 than one scale per matrix at the
    same speed: on 1,000 SciFact pairs of the fine-tuned MiniLM cross-encoder, Kendall tau 0.954
    against 0.881, both about 1.9x fp32 ONNX (2 threads); ``eval/results/bench_teacher_scoring.md``
    has the int8 row against ``CrossEncoder.predict``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _replace_into(
        target,
        lambda path: quantize_dynamic(
            str(source), str(path), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8, per_channel=True
        ),
    )


def to_openvino(source: Path, target: Path) -> None:
    """OpenVINO IR (``.xml`` + ``.bin``) of the ONNX graph ``source``, weights kept in fp32."""
    import openvino

    model = openvino.convert_model(str(source))
    weights = target.with_suffix(".bin")
    partial = target.with_name(f".{target.stem}.{os.getpid()}.partial.xml")
    try:
        openvino.save_model(model, str(partial), compress_to_fp16=False)
        os.replace(partial.with_suffix(".bin"), weights)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
        partial.with_suffix(".bin").unlink(missing_ok=True)


def _threads() -> int:
    import torch

    return max(1, torch.get_num_threads())


def openvino_bf16_problem() -> str | None:
    """``None`` when OpenVINO's CPU plugin computes in bf16 here (AMX or AVX-512 BF16), else why not.
    Without the capability OpenVINO would quietly run fp32 under a bf16 label."""
    import openvino

    capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" not in [str(c).upper() for c in capabilities]:
        return f"this CPU has no bf16 support in OpenVINO (its capabilities: {', '.join(map(str, capabilities))})"
    return None


def load_graph(
    graph: str | os.PathLike[str], runtime: str, *, device: str | None = None, precision: str = "f32"
) -> Any:
    """A graph model (a ``torch.nn.Module``, see :func:`attach`) running ``graph`` on ``runtime``
    (``onnx`` or ``openvino``), with as many threads as torch has now (so that a comparison with
    torch runs at the same thread count).

    ONNX Runtime runs on CUDA when ``device`` is a CUDA device and onnxruntime-gpu provides it;
    otherwise on the CPU, with a warning when CUDA was asked for. ``precision`` is OpenVINO's inference
    precision: ``f32`` (the default, so that its scores are fp32's) or ``bf16``."""
    graph = Path(graph)
    signature = read_signature(graph)
    threads = _threads()
    if runtime == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device is not None and str(device).startswith("cuda"):
            if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
                index = str(device).partition(":")[2] or "0"
                providers = [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
            else:
                logger.warning("onnxruntime has no CUDA provider (pip install onnxruntime-gpu): running on the CPU")
        session = onnxruntime.InferenceSession(str(graph), options, providers=providers)
        accepted = {i.name for i in session.get_inputs()}

        def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
            return session.run(None, {k: v for k, v in feeds.items() if k in accepted})[0]

    elif runtime == "openvino":
        import openvino

        if precision not in ("f32", "bf16"):
            raise InputError(f"OpenVINO precision {precision!r}: known f32, bf16")

        compiled = openvino.Core().compile_model(
            str(graph),
            "CPU",
            {
                # f32 unless asked: OpenVINO would otherwise compute in bf16 on CPUs that have it
                "INFERENCE_PRECISION_HINT": precision,
                "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY",
            },
        )
        accepted = {name for port in compiled.inputs for name in port.get_names()}
        request = compiled.create_infer_request()
        output_port = compiled.outputs[0]

        def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
            result = request.infer({k: v for k, v in feeds.items() if k in accepted})
            return np.array(result[output_port], copy=True)  # the request reuses its buffers

    else:
        raise InputError(f"unknown runtime {runtime!r}; known: onnx, openvino")
    return _make(run, signature, f"{runtime}:{graph.name}" + (f":{precision}" if precision != "f32" else ""))


class GraphOutput(dict):
    """The graph's output under the name the Hugging Face model gives it, read as ``out["logits"]`` (as
    sentence-transformers does) or ``out.logits`` (as ``transformers`` outputs allow)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def is_graph_model(model: Any) -> bool:
    """Whether ``model`` is an ONNX Runtime / OpenVINO stand-in rather than a torch model."""
    return bool(getattr(model, "is_graph_model", False))


def _graph_model_class() -> type:
    import torch

    class _GraphModel(torch.nn.Module):
        """Stands in for the Hugging Face model inside a sentence-transformers ``Transformer`` module:
        takes the same tensors, returns ``{output name: tensor}`` computed by an ONNX Runtime or
        OpenVINO graph. It has no parameters; an empty buffer tells sentence-transformers its device."""

        def __init__(self, run: Callable[[dict[str, np.ndarray]], np.ndarray], signature: dict, label: str) -> None:
            super().__init__()
            self._run = run
            self.inputs: list[str] = list(signature["inputs"])
            self.output: str = signature["output"]
            self.label = label
            self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

        is_graph_model = True
        """Marks a stand-in (no autocast, no training) for code that takes either kind."""

        def forward(self, **features: Any) -> GraphOutput:
            reference = features.get("input_ids")
            if reference is None:
                raise InputError(f"{self.label}: no input_ids among the features {sorted(features)}")
            feeds = {}
            for name in self.inputs:
                value = features.get(name)
                if value is None and name == "token_type_ids":
                    value = torch.zeros_like(reference)
                if value is None:
                    raise InputError(f"{self.label}: the graph needs {name!r}; the features have {sorted(features)}")
                feeds[name] = value.detach().cpu().numpy().astype(np.int64, copy=False)
            out = torch.from_numpy(self._run(feeds))
            return GraphOutput({self.output: out.to(reference.device)})

        def extra_repr(self) -> str:
            return self.label

    return _GraphModel


@cache
def graph_model_class() -> type:
    """The ``torch.nn.Module`` class of graph models (made on first use: importing this module needs no torch)."""
    return _graph_model_class()


def _make(run: Callable[[dict[str, np.ndarray]], np.ndarray], signature: dict, label: str) -> Any:
    return graph_model_class()(run, signature, label)


def attach(model: Any, graph_model: Any) -> Any:
    """Put ``graph_model`` in place of ``model``'s Hugging Face model (whose weights are then freed);
    the model's config stays reachable (some sentence-transformers code reads it)."""
    module = transformer_module(model)
    graph_model.config = module.model.config
    module.model = graph_model
    return model
