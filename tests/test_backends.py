"""Inference backends (irdistill.backends, irdistill.runtimes): names, the missing-package error, auto's
choice, and (where ONNX Runtime / OpenVINO are installed) their scores against torch on tiny random models."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from irdistill import backends
from irdistill.backends import (
    BackendSpec,
    MissingBackendError,
    Trial,
    auto_candidates,
    backend_of,
    check_backend,
    choose_backend,
    load_model,
    parse_backend,
    probe_scores,
)
from irdistill.errors import InputError, MissingDependencyError

ONNX_PROBLEM = backends._import_problem("onnx")
needs_onnx = pytest.mark.skipif(ONNX_PROBLEM is not None, reason=f"ONNX Runtime not usable: {ONNX_PROBLEM}")
OPENVINO_PROBLEM = backends._import_problem("openvino")
RUNTIME_PARAMS = [
    pytest.param("onnx", marks=needs_onnx),
    pytest.param(
        "openvino",
        marks=pytest.mark.skipif(OPENVINO_PROBLEM is not None, reason=f"OpenVINO not usable: {OPENVINO_PROBLEM}"),
    ),
]


# ----------------------------------------------------------------------------- names and errors


def test_parse_backend_names() -> None:
    assert parse_backend(None) == BackendSpec("torch")
    assert parse_backend("ONNX") == BackendSpec("onnx")
    assert parse_backend("onnx-o2") == BackendSpec("onnx", optimization="O2")
    assert str(parse_backend("onnx-O3")) == "onnx-O3"
    int8 = parse_backend("onnx-int8")
    assert int8.quantized and str(int8) == "onnx-int8"
    assert not parse_backend("openvino").quantized
    bf16 = parse_backend("OpenVINO-bf16")
    assert bf16 == BackendSpec("openvino", quantization="bf16") and bf16.quantized and str(bf16) == "openvino-bf16"
    with pytest.raises(InputError, match="known: torch, onnx, onnx-O1"):
        parse_backend("tensorrt")


@pytest.mark.parametrize(("name", "extra"), [("onnx", "onnx"), ("onnx-int8", "onnx"), ("openvino", "openvino")])
def test_missing_backend_names_the_install_command(monkeypatch: pytest.MonkeyPatch, name: str, extra: str) -> None:
    monkeypatch.setattr(backends, "_import_problem", lambda runtime: "optimum.x does not import (No module named x)")
    with pytest.raises(MissingBackendError) as info:
        check_backend(name, what="--backend")
    message = str(info.value)
    assert f'pip install "irdistill[{extra}]"' in message
    assert message.startswith(f"--backend {name}: the ")
    # the CLI's handlers catch either class
    assert isinstance(info.value, InputError) and isinstance(info.value, MissingDependencyError)
    check_backend("torch")  # torch needs nothing more


def test_missing_backend_fails_before_any_model_is_loaded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(backends, "_import_problem", lambda runtime: "not installed")
    monkeypatch.setattr(backends, "_load", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(MissingBackendError, match="irdistill\\[openvino\\]"):
        load_model("cross-encoder", str(tmp_path), backend="openvino")


# ----------------------------------------------------------------------------- auto's choice


def fake_measure(table: dict[str, tuple[float | None, float | None]]):
    measured: list[str] = []

    def measure(spec: BackendSpec) -> Trial:
        measured.append(str(spec))
        seconds, diff = table[str(spec)]
        return Trial(str(spec), seconds, diff)

    return measure, measured


def test_auto_picks_the_fastest_backend_within_tolerance() -> None:
    measure, _ = fake_measure(
        {"torch": (1.0, 0.0), "onnx": (0.5, 3e-6), "onnx-O2": (0.3, 5e-4), "openvino": (0.6, 1e-5)}
    )
    candidates = [parse_backend(n) for n in ("torch", "onnx", "onnx-O2", "openvino")]
    chosen, trials = choose_backend(candidates, measure, tolerance=1e-4)
    assert str(chosen) == "onnx"  # onnx-O2 is faster but leaves the tolerance
    assert [t.backend for t in trials] == ["torch", "onnx", "onnx-O2", "openvino"]
    assert not trials[2].within(1e-4)


def test_auto_never_chooses_int8_and_falls_back_to_torch() -> None:
    measure, measured = fake_measure({"torch": (1.0, 0.0), "onnx": (None, None), "onnx-int8": (0.01, 0.0)})
    candidates = [parse_backend(n) for n in ("torch", "onnx", "onnx-int8")]
    chosen, trials = choose_backend(candidates, measure)
    assert str(chosen) == "torch"
    assert "onnx-int8" not in measured  # not even measured
    # nothing within tolerance at all (torch failed too): torch is still the answer
    measure, _ = fake_measure({"torch": (None, None), "onnx": (0.1, 1.0)})
    assert str(choose_backend([parse_backend("torch"), parse_backend("onnx")], measure)[0]) == "torch"


def test_auto_candidates_are_unquantised_and_installed_only() -> None:
    assert [str(c) for c in auto_candidates(["torch"])] == ["torch"]
    every = auto_candidates(["torch", "onnx", "openvino"])
    assert [str(c) for c in every] == ["torch", "onnx", "onnx-O2", "openvino"]
    assert not any(c.quantized for c in every)


# ----------------------------------------------------------------------------- tiny models


def _tokenizer(folder: Path):
    """The tiny WordPiece vocabulary of conftest, with whichever keyword this transformers honours."""
    from conftest import WORDS
    from transformers import BertTokenizerFast

    letters = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters, *[f"##{c}" for c in letters], ".", ","]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    try:  # transformers 5
        tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    except TypeError:  # transformers 4
        tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    if tokenizer.tokenize("protein expression") != ["protein", "expression"]:
        tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    assert tokenizer.tokenize("protein expression") == ["protein", "expression"]
    return tokenizer


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A cross-encoder, a bi-encoder and a SPLADE sparse encoder: 2-layer, 32-d random BERTs."""
    import torch
    from conftest import tiny_bert_config
    from sentence_transformers import SentenceTransformer, SparseEncoder, models

    try:
        from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling
    except ImportError:  # sentence-transformers 5
        from sentence_transformers.sparse_encoder.models import MLMTransformer, SpladePooling
    from transformers import BertForMaskedLM, BertForSequenceClassification, BertModel

    root = tmp_path_factory.mktemp("backends")
    out = {}
    for name, cls, extra in (
        ("cross-encoder", BertForSequenceClassification, {"num_labels": 1}),
        ("bert", BertModel, {}),
        ("mlm", BertForMaskedLM, {}),
    ):
        folder = root / name
        folder.mkdir()
        tokenizer = _tokenizer(folder)
        torch.manual_seed(len(name))
        cls(tiny_bert_config(tokenizer.vocab_size, **extra)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        out[name] = str(folder)
    word = models.Transformer(out["bert"], max_seq_length=64)
    dimension = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    dense = SentenceTransformer(modules=[word, models.Pooling(dimension(), "mean"), models.Normalize()], device="cpu")
    dense.save(str(root / "dense"))
    mlm = MLMTransformer(out["mlm"], max_seq_length=64)
    sparse = SparseEncoder(modules=[mlm, SpladePooling("max")], device="cpu", similarity_fn_name="dot")
    sparse.save(str(root / "sparse"))
    return {
        "cross-encoder": out["cross-encoder"],
        "sentence-transformer": str(root / "dense"),
        "sparse-encoder": str(root / "sparse"),
    }


@pytest.fixture
def one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_torch_backend_loads_as_before(tiny_models: dict[str, str], cache_dir: Path, one_torch_thread) -> None:
    model = load_model("cross-encoder", tiny_models["cross-encoder"], backend="torch", device="cpu")
    assert backend_of(model) == "torch"
    assert not (cache_dir / "backends").exists()  # torch exports nothing


@pytest.mark.parametrize("runtime", RUNTIME_PARAMS)
@pytest.mark.parametrize("kind", ["cross-encoder", "sentence-transformer", "sparse-encoder"])
def test_runtime_scores_equal_torch_and_the_export_is_reused(
    tiny_models: dict[str, str],
    cache_dir: Path,
    one_torch_thread,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    runtime: str,
) -> None:
    path = tiny_models[kind]
    reference = probe_scores(
        kind, load_model(kind, path, device="cpu"), backends.PROBE_QUERIES, backends.PROBE_DOCUMENTS
    )
    with caplog.at_level(logging.INFO, logger="irdistill.backends"):
        model = load_model(kind, path, backend=runtime, device="cpu")
    assert backend_of(model) == runtime
    assert sum("exporting" in r.getMessage() for r in caplog.records) == 1
    scores = probe_scores(kind, model, backends.PROBE_QUERIES, backends.PROBE_DOCUMENTS)
    assert np.max(np.abs(scores - reference)) <= 1e-4
    assert not any(p.requires_grad for p in model.parameters())  # the torch weights are gone
    exported = backends.export_dir(kind, path, runtime)
    graph = exported / backends._file_name(parse_backend(runtime))
    assert graph.is_file() and str(exported).startswith(str(cache_dir))
    assert not [p.name for p in exported.rglob("*partial*")]  # no staging file left behind
    stamp = graph.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="irdistill.backends"):
        again = load_model(kind, path, backend=runtime, device="cpu")
    assert not any("export" in r.getMessage() for r in caplog.records)  # the cached graph, no second export
    assert graph.stat().st_mtime_ns == stamp
    again_scores = probe_scores(kind, again, backends.PROBE_QUERIES, backends.PROBE_DOCUMENTS)
    np.testing.assert_array_equal(again_scores, scores)
    # encode / predict, the users' entry points, agree with torch too
    torch_model = load_model(kind, path, device="cpu")
    texts = list(backends.PROBE_DOCUMENTS)
    if kind == "cross-encoder":
        pairs = [(q, d) for q in backends.PROBE_QUERIES for d in texts]
        np.testing.assert_allclose(model.predict(pairs), torch_model.predict(pairs), atol=1e-4)
    elif kind == "sentence-transformer":
        np.testing.assert_allclose(model.encode(texts), torch_model.encode(texts), atol=1e-5)


@needs_onnx
def test_onnx_optimised_and_int8_variants(tiny_models: dict[str, str], cache_dir: Path, one_torch_thread) -> None:
    path = tiny_models["cross-encoder"]
    reference = probe_scores(
        "cross-encoder", load_model("cross-encoder", path), backends.PROBE_QUERIES, backends.PROBE_DOCUMENTS
    )
    o1 = load_model("cross-encoder", path, backend="onnx-O1", device="cpu")
    assert backend_of(o1) == "onnx-O1"
    scores = probe_scores("cross-encoder", o1, backends.PROBE_QUERIES, backends.PROBE_DOCUMENTS)
    assert np.max(np.abs(scores - reference)) <= 1e-4
    int8 = load_model("cross-encoder", path, backend="onnx-int8", device="cpu")
    assert backend_of(int8) == "onnx-int8"
    quantised = probe_scores("cross-encoder", int8, backends.PROBE_QUERIES, backends.PROBE_DOCUMENTS)
    difference = np.max(np.abs(quantised - reference))
    assert 0 < difference < 0.01  # close, not equal (a random tiny model's logits lie close together)
    for level in ("O2", "O3"):  # the transformer fusions; O3's approximate GELU stays close on this model
        fused = load_model("cross-encoder", path, backend=f"onnx-{level}", device="cpu")
        fused_scores = probe_scores("cross-encoder", fused, backends.PROBE_QUERIES, backends.PROBE_DOCUMENTS)
        assert np.max(np.abs(fused_scores - reference)) <= (1e-4 if level == "O2" else 1e-2)
    folder = backends.export_dir("cross-encoder", path, "onnx")
    names = sorted(p.name for p in (folder / "onnx").glob("*.onnx"))
    assert names == ["model.onnx", "model_O1.onnx", "model_O2.onnx", "model_O3.onnx", "model_qint8_per_channel.onnx"]
    assert_per_channel_scales(folder / "onnx" / "model_qint8_per_channel.onnx")


def assert_per_channel_scales(graph: Path) -> None:
    """Every quantised weight of ``graph`` has one scale per output column, not one per matrix."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graph))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weights = [n.input[1] for n in model.graph.node if n.op_type == "MatMulInteger" and n.input[1] in initializers]
    assert weights
    for name in weights:
        weight = initializers[name]
        assert weight.dtype == np.int8
        scale = initializers[name.removesuffix("_quantized") + "_scale"]
        assert scale.shape == (weight.shape[1],)  # one scale a matrix would be a scalar


@needs_onnx
def test_auto_measures_once_and_keeps_its_decision(
    tiny_models: dict[str, str], cache_dir: Path, one_torch_thread, caplog: pytest.LogCaptureFixture
) -> None:
    path = tiny_models["cross-encoder"]
    with caplog.at_level(logging.INFO, logger="irdistill.backends"):
        first = backends.resolve_auto("cross-encoder", path, device="cpu", repeats=1)
    assert not first.backend.quantized
    chosen = next(t for t in first.trials if t.backend == str(first.backend))
    assert chosen.within(1e-4)
    assert any("auto backend for" in r.getMessage() for r in caplog.records)
    assert backend_of(first.model) == str(first.backend)
    records = [p.name for p in (cache_dir / "backends").glob("auto-*.json")]
    assert len([r for r in records if not r.startswith("auto-architecture-")]) == 1
    assert len([r for r in records if r.startswith("auto-architecture-")]) == 1  # for its fine-tuned copies
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="irdistill.backends"):
        model = load_model("cross-encoder", path, backend="auto", device="cpu")
    assert backend_of(model) == str(first.backend)
    assert any("decided earlier" in r.getMessage() for r in caplog.records)


@needs_onnx
def test_fusions_on_an_unknown_architecture_name_the_levels_that_work(
    tiny_models: dict[str, str], cache_dir: Path, one_torch_thread, monkeypatch: pytest.MonkeyPatch
) -> None:
    from irdistill import runtimes

    monkeypatch.setattr(runtimes, "ORT_MODEL_TYPES", {"mpnet": "bert"})
    with pytest.raises(InputError, match=r"onnx-O2: ONNX Runtime has no transformer fusions for model type 'bert'"):
        load_model("cross-encoder", tiny_models["cross-encoder"], backend="onnx-O2", device="cpu")
    folder = backends.export_dir("cross-encoder", tiny_models["cross-encoder"], "onnx")
    assert not (folder / "onnx" / "model_O2.onnx").exists()


@pytest.mark.skipif(OPENVINO_PROBLEM is not None, reason=f"OpenVINO not usable: {OPENVINO_PROBLEM}")
def test_openvino_bf16_is_reduced_precision_or_refused(
    tiny_models: dict[str, str], cache_dir: Path, one_torch_thread
) -> None:
    from irdistill import runtimes

    path = tiny_models["sentence-transformer"]
    problem = runtimes.openvino_bf16_problem()
    if problem:  # a CPU without bf16: refused, not run as fp32 under a bf16 label
        with pytest.raises(InputError, match="openvino-bf16: this CPU has no bf16 support"):
            load_model("sentence-transformer", path, backend="openvino-bf16", device="cpu")
        return
    reference = probe_scores(
        "sentence-transformer",
        load_model("sentence-transformer", path),
        backends.PROBE_QUERIES,
        backends.PROBE_DOCUMENTS,
    )
    model = load_model("sentence-transformer", path, backend="openvino-bf16", device="cpu")
    assert backend_of(model) == "openvino-bf16"
    scores = probe_scores("sentence-transformer", model, backends.PROBE_QUERIES, backends.PROBE_DOCUMENTS)
    difference = np.max(np.abs(scores - reference))
    assert 1e-6 < difference < 0.05  # bf16 arithmetic: close to fp32, not equal
    fp32 = backends.export_dir("sentence-transformer", path, "openvino") / "openvino" / "openvino_model.xml"
    assert fp32.is_file()  # one IR for both precisions


def test_a_model_without_the_transformer_layout_is_refused() -> None:
    from irdistill import runtimes

    with pytest.raises(InputError, match="need sentence-transformers>=6"):
        runtimes.transformer_module(object())


# ----------------------------------------------------------------------------- threaded through irdistill


def test_cli_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from irdistill.cli.main import main

    monkeypatch.setattr(backends, "_import_problem", lambda runtime: "optimum.onnxruntime does not import")
    out = tmp_path / "out"
    args = ["-q", "evaluate", "--model", "some-model", "--dataset", str(beir_dir), "--backend", "onnx"]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("irdistill evaluate: error: evaluate: --backend onnx: the onnx backend is not installed")
    assert 'pip install "irdistill[onnx]"' in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_teacher_recipe_backend_is_checked(monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, str]) -> None:
    from irdistill.teachers.factory import check_teacher

    monkeypatch.setattr(backends, "_import_problem", lambda runtime: "not installed")
    spec = {"teacher": "cross-encoder", "model": tiny_models["cross-encoder"], "backend": "openvino"}
    with pytest.raises(
        MissingBackendError, match=r"recipe: teacher cross-encoder backend openvino: .*irdistill\[openvino\]"
    ):
        check_teacher(spec, source="recipe")
    check_teacher({**spec, "backend": "torch"}, source="recipe")


def test_torch_keeps_the_embedding_cache_keys(tiny_models: dict[str, str], cache_dir: Path) -> None:
    from irdistill.encoding import DenseEncoder

    path = tiny_models["sentence-transformer"]
    torch_key = DenseEncoder(path).cache_key(["a"], ["text"], "query")
    # the key formula of the releases before backends existed
    import hashlib
    import json

    from irdistill.encoding import model_fingerprint, texts_fingerprint

    settings = {
        "model": model_fingerprint(path),
        "side": "query",
        "max_seq_length": None,
        "normalize": "auto",
        "texts": texts_fingerprint(["a"], ["text"]),
    }
    assert torch_key == hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]
    if ONNX_PROBLEM is None:
        assert DenseEncoder(path, backend="onnx").cache_key(["a"], ["text"], "query") != torch_key


def test_teacher_config_names_a_backend_other_than_torch(
    tiny_models: dict[str, str], cache_dir: Path, one_torch_thread
) -> None:
    from irdistill.teachers.cross_encoder import CrossEncoderTeacher

    teacher = CrossEncoderTeacher(tiny_models["cross-encoder"], device="cpu")
    assert teacher.backend == "torch" and "backend" not in teacher.config()  # earlier stores still resume
    if ONNX_PROBLEM is None:
        onnx = CrossEncoderTeacher(tiny_models["cross-encoder"], device="cpu", backend="onnx")
        assert onnx.config()["backend"] == "onnx"
        queries, passages = ["protein expression", "vaccine trial"] * 3, ["cell protein", "immune drug dose"] * 3
        np.testing.assert_allclose(onnx.score(queries, passages), teacher.score(queries, passages), atol=1e-4)


@needs_onnx
def test_evaluate_on_onnx_reports_its_backend(
    tiny_models: dict[str, str], beir_dir: Path, tmp_path: Path, cache_dir: Path, one_torch_thread
) -> None:
    import json

    from irdistill.data import load_collection
    from irdistill.evaluation import evaluate_retrieval

    collection = load_collection(str(beir_dir), split="test")
    model = tiny_models["sentence-transformer"]
    on_torch = evaluate_retrieval(model, collection, k=5, metrics=["ndcg@10"], show_progress_bar=False)
    result = evaluate_retrieval(
        model, collection, k=5, metrics=["ndcg@10"], backend="onnx", out=tmp_path / "o", show_progress_bar=False
    )
    assert on_torch.performance.backend == "torch" and result.performance.backend == "onnx"
    assert json.loads((tmp_path / "o" / "perf.json").read_text())["backend"] == "onnx"
    assert abs(result.metrics["ndcg@10"] - on_torch.metrics["ndcg@10"]) < 1e-6


def test_main_job_bench_sets_the_backend_on_every_forward_only_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.syspath_prepend(str(Path(__file__).parent.parent / "benchmarks"))  # as when run as a script

    spec = importlib.util.spec_from_file_location(
        "bench_main_job", Path(__file__).parent.parent / "benchmarks" / "bench_main_job.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    recipe = {
        "teacher": {"teacher": "ensemble", "members": [{"teacher": "bm25"}, {"teacher": "dense", "model": "m"}]},
        "train": {"student": "s"},
        "evaluate": {"metrics": ["ndcg@10"]},
    }
    changed = bench.with_backend(recipe, "auto")
    assert changed["teacher"]["members"] == [{"teacher": "bm25"}, {"teacher": "dense", "model": "m", "backend": "auto"}]
    assert changed["evaluate"] == {"metrics": ["ndcg@10"], "backend": "auto"}
    assert "backend" not in recipe["evaluate"] and changed["train"] == recipe["train"]  # a copy; training untouched


def test_cpu_bound_counts_a_bert_layers_flops_and_the_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.syspath_prepend(str(Path(__file__).parent.parent / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "bench_cpu_bound", Path(__file__).parent.parent / "benchmarks" / "bench_cpu_bound.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # one layer, 10 tokens, hidden 4, FFN 8: Q, K, V, output (4 x 4 each) and up/down (4 x 8 each)
    # multiply-adds per token, times 2 FLOPs, plus QK^T and attention x V (10 x 10 x 4 each) x 2
    assert bench.layer_flops(10, 4, 8) == 2 * 10 * (4 * 16 + 2 * 32) + 2 * 2 * 10 * 10 * 4
    useful, padded = bench.model_flops([10, 2, 3], batch_size=2, hidden=4, intermediate=8, layers=3)
    assert useful == 3 * sum(bench.layer_flops(n, 4, 8) for n in (10, 2, 3))
    assert padded == 3 * (2 * bench.layer_flops(10, 4, 8) + bench.layer_flops(3, 4, 8))  # batches [10, 2] and [3]


@needs_onnx
def test_auto_reuses_the_choice_for_a_model_of_the_same_architecture(
    tiny_models: dict[str, str],
    cache_dir: Path,
    tmp_path: Path,
    one_torch_thread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fine-tuned copy (same config, other weights) takes the base's choice after its own fidelity
    check, with no candidate timed; its record says whose choice it took."""
    import torch
    from sentence_transformers import CrossEncoder

    base = str(tmp_path / "base")  # saved by sentence-transformers, as a student is
    CrossEncoder(tiny_models["cross-encoder"], device="cpu").save(base)
    tuned = CrossEncoder(base, device="cpu")
    with torch.no_grad():
        for parameter in tuned.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    student = tmp_path / "student"
    tuned.save(str(student))
    first = backends.resolve_auto("cross-encoder", base, device="cpu", repeats=1)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="irdistill.backends"):
        second = backends.resolve_auto("cross-encoder", str(student), device="cpu", repeats=1)
    messages = [r.getMessage() for r in caplog.records]
    assert second.backend == first.backend
    assert any("same architecture" in m for m in messages)
    assert not any("ms per probe" in m for m in messages)  # nothing timed
    torch_scores = probe_scores(
        "cross-encoder", load_model("cross-encoder", str(student)), backends.PROBE_QUERIES, backends.PROBE_DOCUMENTS
    )
    scores = probe_scores("cross-encoder", second.model, backends.PROBE_QUERIES, backends.PROBE_DOCUMENTS)
    assert np.max(np.abs(scores - torch_scores)) <= 1e-4  # the student's own weights, not the base's
    records = [json.loads(p.read_text()) for p in (cache_dir / "backends").glob("auto-*.json")]
    assert any(r.get("model") == str(student) and r.get("reused_from") == base for r in records)


def test_architecture_fingerprint_ignores_weights_files_and_length_but_not_shape(
    tiny_models: dict[str, str], tmp_path: Path
) -> None:
    """The same architecture saved raw by transformers and by sentence-transformers (other files,
    other weights, another max length) has one fingerprint; another depth or kind does not."""
    import torch
    from conftest import tiny_bert_config
    from sentence_transformers import CrossEncoder
    from transformers import BertForSequenceClassification

    raw = tiny_models["cross-encoder"]
    saved = CrossEncoder(raw, device="cpu")
    saved.max_seq_length = 32
    with torch.no_grad():
        for parameter in saved.parameters():
            parameter.mul_(1.5)
    saved.save(str(tmp_path / "saved"))
    deeper = tmp_path / "deeper"
    config = tiny_bert_config(CrossEncoder(raw, device="cpu").tokenizer.vocab_size, num_labels=1)
    config.num_hidden_layers += 1
    BertForSequenceClassification(config).save_pretrained(deeper)
    CrossEncoder(raw, device="cpu").tokenizer.save_pretrained(deeper)

    def fingerprint(kind: str, path: str) -> str | None:
        return backends.architecture_fingerprint(load_model(kind, path, device="cpu"))

    base = fingerprint("cross-encoder", raw)
    assert base is not None
    assert fingerprint("cross-encoder", str(tmp_path / "saved")) == base
    assert fingerprint("cross-encoder", str(deeper)) != base
    assert fingerprint("sentence-transformer", tiny_models["sentence-transformer"]) not in (None, base)


# ----------------------------------------------------------------------------- auto-bf16

REDUCED_PROBLEM = backends.reduced_precision_problem()


def test_auto_bf16_is_a_name_not_a_quantised_backend() -> None:
    spec = parse_backend("Auto-BF16")
    assert spec == BackendSpec("auto", quantization="bf16") and str(spec) == "auto-bf16"
    assert not spec.quantized  # it may settle on fp32: not reduced precision by name
    assert check_backend("auto-bf16") == spec  # never refused: it falls back


def test_auto_bf16_falls_back_to_auto_and_keys_the_cache_so(
    tiny_models: dict[str, str], cache_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from irdistill.encoding import DenseEncoder
    from irdistill.teachers.dense import DenseTeacher

    path = tiny_models["sentence-transformer"]
    monkeypatch.setattr(backends, "reduced_precision_problem", lambda: "this CPU has no bf16 support in OpenVINO")
    with caplog.at_level(logging.INFO, logger="irdistill.backends"):
        encoder = DenseEncoder(path, backend="auto-bf16")
        assert encoder.resolved_backend() == "auto" and encoder.precision_check is None
    assert "auto-bf16 for" in caplog.text and "no bf16 support" in caplog.text and "using auto" in caplog.text
    key = encoder.cache_key(["a"], ["text"], "query")
    assert key == DenseEncoder(path, backend="auto").cache_key(["a"], ["text"], "query")
    config = DenseTeacher(path, backend="auto-bf16").config()
    assert config["backend"] == "auto" and config["backend_requested"] == "auto-bf16"
    assert "precision_check" not in config


def test_auto_bf16_refuses_a_backend_that_reorders_the_probe(
    tiny_models: dict[str, str], cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "reduced_precision_problem", lambda: None)
    poor = {"backend": "openvino-bf16", "reference": "torch fp32", "kendall_tau": 0.7, "max_abs_diff": 0.2, "pairs": 24}
    monkeypatch.setattr(backends, "precision_check", lambda *a, **k: poor)
    choice = backends.decide_reduced("sentence-transformer", tiny_models["sentence-transformer"])
    assert choice.backend == "auto" and "0.7000" in choice.reason and choice.check == poor


@pytest.mark.skipif(REDUCED_PROBLEM is not None, reason=f"openvino-bf16 cannot run here: {REDUCED_PROBLEM}")
def test_auto_bf16_takes_openvino_bf16_checks_it_once_and_fingerprints_it(
    tiny_models: dict[str, str], cache_dir: Path, one_torch_thread, monkeypatch: pytest.MonkeyPatch
) -> None:
    from irdistill.encoding import DenseEncoder
    from irdistill.teachers.dense import DenseTeacher

    path = tiny_models["sentence-transformer"]
    encoder = DenseEncoder(path, backend="auto-bf16", device="cpu")
    assert encoder.resolved_backend() == "openvino-bf16"
    check = encoder.precision_check
    assert check is not None and check["pairs"] == len(backends.PROBE_QUERIES) * len(backends.PROBE_DOCUMENTS)
    assert backends.MIN_REDUCED_TAU <= check["kendall_tau"] <= 1 and 0 < check["max_abs_diff"] < 0.05
    assert backend_of(encoder.model) == "openvino-bf16"
    # bf16 embeddings are keyed as the explicit backend's, apart from torch's and fp32 OpenVINO's
    key = encoder.cache_key(["a"], ["text"], "query")
    assert key == DenseEncoder(path, backend="openvino-bf16").cache_key(["a"], ["text"], "query")
    assert key not in {DenseEncoder(path, backend=b).cache_key(["a"], ["text"], "query") for b in ("torch", "openvino")}
    # decided once per machine: a second teacher reads the check without loading any model
    monkeypatch.setattr(backends, "load_model", lambda *a, **k: pytest.fail("the precision check ran again"))
    config = DenseTeacher(path, backend="auto-bf16").config()
    assert config["backend"] == "openvino-bf16" and config["backend_requested"] == "auto-bf16"
    assert config["precision_check"] == {
        "reference": "torch fp32",
        "kendall_tau": round(check["kendall_tau"], 3),
        "pairs": check["pairs"],
    }
