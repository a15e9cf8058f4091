"""``irdistill index``: every kind builds on a tiny corpus, the files read back, bad input exits 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch
from conftest import WORDS, tiny_bert_config, tiny_tokenizer, write_beir

from irdistill.cli.main import main
from irdistill.errors import InputError

REPO = Path(__file__).resolve().parent.parent
N_DOCS, DIM = 64, 32
QUANT = ["--m", "4", "--nbits", "4"]  # 16 codewords: trainable on 64 documents; 2 bytes per vector
FAISS_KINDS = {
    "ivfpq": [*QUANT, "--nlist", "2", "--nprobe", "2"],
    "pq": ["--m", "8", "--nbits", "4"],
    "distill-vq": [
        *QUANT,
        "--nlist",
        "2",
        "--nprobe",
        "2",
        "--epochs",
        "1",
        "--top-k",
        "8",
        "--distill-batch-size",
        "8",
    ],
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BEIR folder of 64 documents, 10 test queries and 24 train queries drawn from WORDS."""
    rng = np.random.default_rng(0)
    docs = {f"d{i}": ("", " ".join(rng.choice(WORDS[:40], size=8))) for i in range(N_DOCS)}
    queries, qrels = {}, {"test": [], "train": []}
    for i in range(34):
        split, doc = ("test" if i < 10 else "train"), f"d{(7 * i) % N_DOCS}"
        queries[f"q{i}"] = " ".join(docs[doc][1].split()[:3])
        qrels[split].append((f"q{i}", doc, 1))
    return write_beir(tmp_path_factory.mktemp("index-cli") / "corpus", docs=docs, queries=queries, qrels=qrels)


@pytest.fixture(scope="module")
def emb_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedding-cache")


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-d random BertForMaskedLM: used as a SPLADE student."""
    from transformers import BertForMaskedLM

    folder = tmp_path_factory.mktemp("tiny-mlm")
    tokenizer = tiny_tokenizer(folder)
    torch.manual_seed(0)
    config = tiny_bert_config(tokenizer.vocab_size)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def index_cli(*args: str | Path) -> int:
    return main(["-q", "index", *map(str, args)])


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path, tiny_model_dir: Path, tiny_mlm: Path, emb_cache: Path
) -> dict[str, Path]:
    """Each kind built once with --evaluate; kind -> output folder."""
    root = tmp_path_factory.mktemp("built")
    folders = {}
    for kind, params in FAISS_KINDS.items():
        folders[kind] = root / kind
        assert (
            index_cli(
                "--kind",
                kind,
                "--model",
                tiny_model_dir,
                "--dataset",
                corpus_dir,
                "--out",
                folders[kind],
                "--cache-dir",
                emb_cache,
                "--evaluate",
                *params,
            )
            == 0
        )
    folders["sparse"] = root / "sparse"
    assert (
        index_cli(
            "--kind",
            "sparse",
            "--model",
            tiny_mlm,
            "--dataset",
            corpus_dir,
            "--out",
            folders["sparse"],
            "--batch-size",
            "16",
            "--evaluate",
        )
        == 0
    )
    return folders


def test_help_lists_kinds_and_flags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "irdistill.cli.main", "index", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for text in (
        "--kind",
        "distill-vq",
        "ivfpq",
        "sparse",
        "--train-queries",
        "--nlist",
        "--evaluate",
        "indexes/distill_vq_minilm_48x8.yaml",
    ):
        assert text in out


@pytest.mark.parametrize(
    ("kind", "faiss_class", "bytes_per_vector"),
    [("ivfpq", "IndexIVFPQ", 2), ("pq", "IndexPQ", 4), ("distill-vq", "IndexIVFPQ", 2)],
)
def test_faiss_kinds_write_a_plain_faiss_file(
    kind: str, faiss_class: str, bytes_per_vector: int, built: dict[str, Path], corpus_dir: Path, tiny_model_dir: Path
) -> None:
    from irdistill.indexes import IVFPQIndex, PQIndex, load_index

    folder = built[kind]
    index = faiss.read_index(str(folder / "index.faiss"))
    assert type(index).__name__ == faiss_class and index.ntotal == N_DOCS and index.d == DIM
    queries = np.random.default_rng(1).normal(size=(3, DIM)).astype(np.float32)
    scores, ids = index.search(queries, 5)
    assert ids.shape == (3, 5) and ((ids >= 0) & (ids < N_DOCS)).all()
    assert (np.diff(scores, axis=1) <= 1e-6).all()

    info = json.loads((folder / "index.json").read_text())
    assert info["kind"] == kind and info["file"] == "index.faiss" and info["format"] == f"faiss {faiss_class}"
    assert (info["ntotal"], info["dim"], info["bytes_per_vector"]) == (N_DOCS, DIM, bytes_per_vector)
    assert info["model"] == str(tiny_model_dir) and info["dataset"] == "corpus" and info["split"] == "test"
    assert info["index_bytes"] == (folder / "index.faiss").stat().st_size
    assert info["params"]["nbits"] == 4
    doc_ids = (folder / "doc_ids.txt").read_text().split()
    assert doc_ids == [json.loads(line)["_id"] for line in (corpus_dir / "corpus.jsonl").read_text().splitlines()]

    loaded = load_index(folder / "index.faiss", device="cpu")
    assert isinstance(loaded, PQIndex if kind == "pq" else IVFPQIndex)
    np.testing.assert_array_equal(loaded.search(queries, 5)[1], ids)
    if kind != "pq":
        assert (info["params"]["nlist"], info["params"]["nprobe"], index.nprobe) == (2, 2, 2)

    metrics = json.loads((folder / "metrics.json").read_text())
    assert list(metrics["metrics"]) == ["ndcg@10", "recall@10", "recall@100"]
    assert all(0.0 <= v <= 1.0 for v in metrics["metrics"].values())
    assert metrics["index"] == kind and metrics["k"] == 100 and metrics["num_queries"] == 10
    assert (folder / "run.trec").is_file() and json.loads((folder / "perf.json").read_text())[
        "latency_ms_per_query"
    ] > 0
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_distill_vq_trains_on_the_train_split(built: dict[str, Path]) -> None:
    info = json.loads((built["distill-vq"] / "index.json").read_text())
    training = info["training"]
    assert training["queries"] == "corpus/train" and training["num_queries"] == 24
    assert len(training["history"]) == 1 and training["history"][0]["loss"] >= 0
    assert info["params"]["epochs"] == 1 and info["params"]["top_k"] == 8 and info["params"]["use_ivf"] is True


def test_sparse_kind_writes_a_sparse_index(built: dict[str, Path], tiny_mlm: Path) -> None:
    from irdistill.indexes.sparse import SparseIndex

    folder = built["sparse"]
    index = SparseIndex.load(folder / "index.npz")
    info = json.loads((folder / "index.json").read_text())
    assert info["kind"] == "sparse" and info["file"] == "index.npz" and not (folder / "index.faiss").exists()
    assert index.ntotal == info["ntotal"] == N_DOCS and index.dim == info["dim"]
    assert info["avg_nnz"] > 0 and info["bytes_per_vector"] > 0
    scores, ids = index.search(index.documents[:2], 3)
    assert ids.shape == (2, 3) and (ids[:, 0] >= 0).all() and (scores[:, 0] >= scores[:, 1]).all()
    metrics = json.loads((folder / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"ndcg@10", "recall@10", "recall@100"}


def test_pq_only_distill_vq_and_train_queries_from_another_folder(
    corpus_dir: Path, tiny_model_dir: Path, emb_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = write_beir(
        tmp_path / "other",
        queries={"x1": "protein cells", "x2": "vaccine trial", "x3": "gene"},
        qrels={"test": [("x1", "d1", 1), ("x2", "d2", 1), ("x3", "d3", 1)]},
    )
    out = tmp_path / "dvq-pq"
    assert (
        index_cli(
            "--kind",
            "distill-vq",
            "--no-ivf",
            *QUANT,
            "--epochs",
            "1",
            "--model",
            tiny_model_dir,
            "--dataset",
            corpus_dir,
            "--train-queries",
            other,
            "--cache-dir",
            emb_cache,
            "--out",
            out,
        )
        == 0
    )
    assert type(faiss.read_index(str(out / "index.faiss"))).__name__ == "IndexPQ"
    info = json.loads((out / "index.json").read_text())
    assert info["training"]["num_queries"] == 3 and info["params"]["use_ivf"] is False
    assert "nlist" not in info["params"] and not (out / "metrics.json").exists()
    assert "distill-vq index:" in capsys.readouterr().out


def test_yaml_recipe_and_flag_override_and_stale_files(
    corpus_dir: Path, tiny_model_dir: Path, emb_cache: Path, built: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "ivfpq"
    shutil.copytree(built["ivfpq"], out)  # an earlier, evaluated build in the same folder
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"kind: ivfpq\nmodel: {tiny_model_dir}\ndataset: {corpus_dir}\nm: 8\nnbits: 4\nnlist: 4\n"
        f"nprobe: 4\ncache_dir: {emb_cache}\nout: {tmp_path / 'unused'}\n"
    )
    assert index_cli("--config", recipe, "--nprobe", "1", "--out", out) == 0
    info = json.loads((out / "index.json").read_text())
    assert info["params"] == {"m": 8, "nbits": 4, "nlist": 4, "nprobe": 1}
    assert faiss.read_index(str(out / "index.faiss")).nprobe == 1
    assert not (tmp_path / "unused").exists()
    assert sorted(p.name for p in out.iterdir()) == ["doc_ids.txt", "index.faiss", "index.json"]  # old metrics gone


@pytest.mark.parametrize("recipe", sorted((REPO / "indexes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_are_valid(recipe: Path) -> None:
    from irdistill.cli.config import IndexConfig
    from irdistill.config import build_config, load_yaml

    cfg = build_config(IndexConfig, load_yaml(recipe), source=str(recipe))
    cfg.validate()
    assert f"irdistill index --config indexes/{recipe.name}" in recipe.read_text()
    assert cfg.dataset == "beir/scifact/test"


def test_recipes_cover_every_kind() -> None:
    names = {p.name for p in (REPO / "indexes").glob("*.yaml")}
    assert {
        "distill_vq_minilm_48x8.yaml",
        "ivfpq_minilm_48x8.yaml",
        "pq_minilm_48x8.yaml",
        "sparse_splade_tiny.yaml",
    } <= names


BAD = [
    (
        ["--kind", "distill-vq", *QUANT[2:], "--m", "5", "--nlist", "2"],
        "PQ m=5 must be >= 1 and divide the dimension 32",
    ),
    (["--kind", "ivfpq", "--nbits", "4", "--m", "5"], "PQ m=5 must divide the dimension 32"),
    (["--kind", "ivfpq", *QUANT, "--nlist", "100"], "nlist=100 inverted lists but only 64 documents in corpus/test"),
    (["--kind", "distill-vq", *QUANT, "--nlist", "65"], "nlist=65 inverted lists but only 64 documents"),
    (["--kind", "pq", "--m", "4"], "nbits=8 means 256 codewords per sub-quantizer but only 64 documents"),
    (["--kind", "pq", *QUANT, "--nlist", "4"], "pq index has no option 'nlist'; options: m, nbits"),
    (["--kind", "ivfpq", *QUANT, "--epochs", "2"], "ivfpq index has no option 'epochs'"),
    (["--kind", "distill-vq", *QUANT, "--temperature", "0"], "temperature must be > 0, got 0.0"),
    (["--kind", "distill-vq", *QUANT, "--no-ivf", "--nlist", "2"], "nlist needs inverted lists"),
    (["--kind", "ivfpq", *QUANT, "--train-queries", "train"], "--train-queries only drives distill-vq"),
    (["--kind", "distill-vq", *QUANT, "--train-queries", "dev"], "splits in"),
    (["--kind", "sparse"], "not a sparse encoder"),
    (["--kind", "ivfpq", *QUANT, "--evaluate", "--metrics", "ndcg@10,nope@3"], "unknown metric 'nope@3'"),
    (["--kind", "pq", "--m", "4", "--config", "{recipe}"], "unknown key 'nlists'"),
    (["--kind", "pq", "--no-out"], "index: --out is required"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_exits_2_with_one_line(
    args: list[str],
    message: str,
    corpus_dir: Path,
    tiny_model_dir: Path,
    emb_cache: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("nlists: 4\n")
    out = tmp_path / "out"
    given = [a.replace("{recipe}", str(recipe)) for a in args if a != "--no-out"]
    tail = [] if "--no-out" in args else ["--out", out]
    assert index_cli(*given, "--model", tiny_model_dir, "--dataset", corpus_dir, "--cache-dir", emb_cache, *tail) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("irdistill")]
    assert len(errors) == 1 and errors[0].startswith("irdistill index: error:") and message in errors[0], errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # no output, no staging folder


def test_unknown_kind_lists_the_known_ones(corpus_dir: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "irdistill.cli.main",
            "-q",
            "index",
            "--kind",
            "annoy",
            "--model",
            "m",
            "--dataset",
            str(corpus_dir),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "irdistill index: error: unknown index kind 'annoy'; known: distill-vq, ivfpq, pq, sparse"
    )
    assert not (tmp_path / "o").exists()


def test_loading_the_wrong_kind_or_a_corrupt_file_is_a_clear_error(built: dict[str, Path], tmp_path: Path) -> None:
    from irdistill.indexes import PQIndex, load_index
    from irdistill.indexes.sparse import SparseIndex

    dvq, sparse = built["distill-vq"] / "index.faiss", built["sparse"] / "index.npz"
    with pytest.raises(InputError, match="holds a FAISS IndexIVFPQ, not a pq index"):
        PQIndex.load(dvq, device="cpu")
    with pytest.raises(InputError, match=r"index.npz: not a readable FAISS index file"):
        load_index(sparse, device="cpu")
    with pytest.raises(InputError, match=r"index.faiss: not a readable irdistill sparse index file"):
        SparseIndex.load(dvq)
    truncated = tmp_path / "truncated.faiss"
    truncated.write_bytes(dvq.read_bytes()[: dvq.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated.faiss: not a readable FAISS index file"):
        load_index(truncated, device="cpu")
    lsh = tmp_path / "lsh.faiss"
    other = faiss.IndexLSH(DIM, 16)
    other.add(np.ones((2, DIM), dtype=np.float32))
    faiss.write_index(other, str(lsh))
    with pytest.raises(InputError, match="FAISS IndexLSH is not an index kind irdistill knows"):
        load_index(lsh, device="cpu")


def test_a_plug_in_builder_with_its_own_option_leaves_the_index_command_working() -> None:
    """A registered builder whose keyword has no flag here: every `irdistill index` call used to
    raise AttributeError; now its option comes through --index-option and is checked like the rest."""
    from irdistill.cli.config import IndexConfig
    from irdistill.errors import InputError
    from irdistill.workflows.indexing import BUILDERS

    @BUILDERS.register("toy-plugin")
    def toy(job: object, *, toy_bits: int = 4) -> object:  # a plug-in builder: the job, then its options
        raise NotImplementedError

    try:
        base = {"dataset": "d", "model": "m", "out": "o"}
        builtin = IndexConfig(kind="pq", m=8, **base)
        builtin.validate()
        assert builtin.options() == {"m": 8}
        plugin = IndexConfig(kind="toy-plugin", index_options={"toy_bits": 6}, **base)
        plugin.validate()
        assert plugin.options() == {"toy_bits": 6}
        with pytest.raises(InputError, match="pq index has no option 'toy_bits'"):
            IndexConfig(kind="pq", index_options={"toy_bits": 6}, **base).validate()
        with pytest.raises(InputError, match="'m' is given as --m and in --index-option"):
            IndexConfig(kind="pq", m=8, index_options={"m": 4}, **base).validate()
    finally:
        BUILDERS.unregister("toy-plugin")
