from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from irdistill.encoding import DenseEncoder, model_fingerprint
from irdistill.errors import InputError
from irdistill.paths import resolve_model

IDS = ["a", "b", "c"]
TEXTS = ["protein expression in cells", "vaccine trial", "brain gene expression levels"]


def test_encode_normalises_for_cosine_models(tiny_model_dir: Path, cache_dir: Path) -> None:
    encoder = DenseEncoder(str(tiny_model_dir), show_progress_bar=False)
    out = encoder.encode(IDS, TEXTS, side="document")
    assert out.embeddings.shape == (3, 32)
    assert out.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out.embeddings, axis=1), 1.0, rtol=1e-5)
    assert not out.cached
    direct = encoder.model.encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(out.embeddings, direct, atol=1e-5)


def test_cpu_batches_hold_a_bounded_number_of_tokens(
    tiny_model_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from irdistill import encoding

    monkeypatch.setattr(encoding, "CPU_TOKENS_PER_BATCH", 64)
    encoder = DenseEncoder(str(tiny_model_dir), batch_size=16, max_seq_length=8, show_progress_bar=False)
    assert encoder.forward_batch_size() == 8  # 64 tokens / 8
    seen: list[int] = []
    encode = encoder.model.encode_document

    def spy(texts: list[str], **kwargs: object) -> np.ndarray:
        seen.append(int(kwargs["batch_size"]))  # type: ignore[call-overload]
        return encode(texts, **kwargs)

    monkeypatch.setattr(encoder.model, "encode_document", spy)
    out = encoder.encode(IDS, TEXTS, side="document")
    assert seen == [8]
    np.testing.assert_allclose(out.embeddings, encoder.model.encode(TEXTS, normalize_embeddings=True), atol=1e-5)
    assert DenseEncoder(str(tiny_model_dir), batch_size=4, max_seq_length=8).forward_batch_size() == 4
    encoder.model.max_seq_length = 1000  # longer than the budget: one text a pass
    assert encoder.forward_batch_size() == 1
    monkeypatch.setattr(type(encoder.model), "device", property(lambda self: __import__("torch").device("cuda")))
    assert encoder.forward_batch_size() == 16  # a GPU takes the batch as given


def test_cache_hit_skips_the_model(tiny_model_dir: Path, cache_dir: Path) -> None:
    first = DenseEncoder(str(tiny_model_dir), show_progress_bar=False).encode(IDS, TEXTS, side="document")
    second_encoder = DenseEncoder(str(tiny_model_dir), show_progress_bar=False)
    second = second_encoder.encode(IDS, TEXTS, side="document")
    assert second.cached
    assert second_encoder._model is None  # the model was never loaded
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    assert second.encode_seconds == pytest.approx(first.encode_seconds)
    assert len(list((cache_dir / "embeddings").glob("*.npy"))) == 1


def test_cache_key_covers_texts_side_and_settings(tiny_model_dir: Path, cache_dir: Path) -> None:
    encoder = DenseEncoder(str(tiny_model_dir), show_progress_bar=False)
    base = encoder.cache_key(IDS, TEXTS, "document")
    assert encoder.cache_key(IDS, TEXTS, "query") != base
    assert encoder.cache_key(IDS, [*TEXTS[:2], "changed"], "document") != base
    assert encoder.cache_key(["x", "b", "c"], TEXTS, "document") != base
    shorter = DenseEncoder(str(tiny_model_dir), max_seq_length=8, show_progress_bar=False)
    assert shorter.cache_key(IDS, TEXTS, "document") != base
    raw = DenseEncoder(str(tiny_model_dir), normalize=False, show_progress_bar=False)
    assert raw.cache_key(IDS, TEXTS, "document") != base


def test_no_cache_writes_nothing(tiny_model_dir: Path, cache_dir: Path) -> None:
    DenseEncoder(str(tiny_model_dir), cache=False, show_progress_bar=False).encode(IDS, TEXTS, "query")
    assert not cache_dir.exists() or not any(cache_dir.rglob("*.npy"))


def test_empty_text_and_length_mismatch(tiny_model_dir: Path, cache_dir: Path) -> None:
    encoder = DenseEncoder(str(tiny_model_dir), show_progress_bar=False)
    with pytest.raises(InputError, match="document 'b' has an empty text"):
        encoder.encode(IDS, ["x", "  ", "y"], side="document")
    with pytest.raises(InputError, match="3 ids but 2 texts"):
        encoder.encode(IDS, TEXTS[:2], side="document")


def test_a_folder_that_is_not_a_model(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "notamodel").mkdir()
    encoder = DenseEncoder(str(tmp_path / "notamodel"), show_progress_bar=False)
    with pytest.raises(InputError, match="not a model folder"):
        encoder.encode(IDS, TEXTS, side="document")


def test_model_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    (models / "all-MiniLM-L6-v2").mkdir(parents=True)
    monkeypatch.setenv("IRDISTILL_MODELS", str(models))
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    assert resolve_model(str(explicit)) == str(explicit)
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2") == str(models / "all-MiniLM-L6-v2")
    assert resolve_model("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"  # left for the hub


def test_model_fingerprint_follows_the_files(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    before = model_fingerprint(str(folder))
    (folder / "model.safetensors").write_bytes(b"12345")
    assert model_fingerprint(str(folder)) != before
    assert model_fingerprint("org/name") != model_fingerprint("org/other")


def test_update_json_table_keeps_rows_written_by_another_process(tmp_path: Path) -> None:
    import json

    from irdistill.paths import update_json_table

    path = tmp_path / "results" / "table.json"
    assert update_json_table(path, "a", {"x": 1}) == {"a": {"x": 1}}
    path.write_text(json.dumps({"a": {"x": 1}, "b": {"x": 2}}))  # another run added a row meanwhile
    assert update_json_table(path, "a", {"x": 3}) == {"a": {"x": 3}, "b": {"x": 2}}
    assert json.loads(path.read_text()) == {"a": {"x": 3}, "b": {"x": 2}}
    assert [p.name for p in path.parent.iterdir()] == ["table.json"]  # no temporary left behind


def test_each_torchrun_rank_loads_models_on_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from irdistill.encoding import rank_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert rank_device() == "cuda:3" and rank_device("cpu") == "cpu"
    monkeypatch.delenv("LOCAL_RANK")
    assert rank_device() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert rank_device() is None


def test_encode_corpus_in_blocks_is_the_cache_entry_of_encode(
    tiny_model_dir: Path, beir_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks into a memory map, resumable after a failure, and the same file encode() reads."""
    from irdistill.data import load_collection

    collection = load_collection(beir_dir, split="test")
    encoder = DenseEncoder(str(tiny_model_dir), show_progress_bar=False)
    calls: list[int] = []
    real = DenseEncoder.embed

    def failing_after_two(self, texts, side, **kw):  # type: ignore[no-untyped-def]
        if len(calls) == 2:
            raise RuntimeError("stopped")
        calls.append(len(texts))
        return real(self, texts, side, **kw)

    monkeypatch.setattr(DenseEncoder, "embed", failing_after_two)
    with pytest.raises(RuntimeError, match="stopped"):
        encoder.encode_corpus(collection, block_rows=3)
    monkeypatch.setattr(DenseEncoder, "embed", real)
    resumed = DenseEncoder(str(tiny_model_dir), show_progress_bar=False)
    counted: list[int] = []
    monkeypatch.setattr(
        DenseEncoder,
        "embed",
        lambda self, texts, side, **kw: counted.append(len(texts)) or real(self, texts, side, **kw),
    )
    done = resumed.encode_corpus(collection, block_rows=3)
    assert calls == [3, 3] and counted == [2]  # 8 documents: blocks 0-2 and 3-5 kept, 6-7 encoded
    assert isinstance(done.embeddings, np.memmap) and done.embeddings.shape[0] == len(collection.corpus)
    monkeypatch.setattr(DenseEncoder, "embed", real)
    whole = DenseEncoder(str(tiny_model_dir), show_progress_bar=False, cache=False)
    expected = whole.encode(collection.doc_ids, collection.doc_texts(), side="document").embeddings
    np.testing.assert_allclose(done.embeddings, expected, atol=1e-6)
    hit = DenseEncoder(str(tiny_model_dir), show_progress_bar=False).encode(
        collection.doc_ids, collection.doc_texts(), side="document"
    )
    assert hit.cached and np.array_equal(hit.embeddings, np.asarray(done.embeddings))
    assert not list((cache_dir / "embeddings").glob("*.partial.npy")) and not list(
        (cache_dir / "embeddings").glob("*.blocks")
    )


def test_encode_corpus_two_ranks_write_the_file_one_process_writes(
    tiny_model_dir: Path, beir_dir: Path, tmp_path: Path
) -> None:
    """Two processes with RANK 0 and 1 (as torchrun sets them) share the blocks of one file; it
    equals a single process's file byte for byte."""
    import os
    import subprocess
    import sys

    code = (
        "import sys; from irdistill.data import load_collection; from irdistill.encoding import DenseEncoder; "
        f"c = load_collection({str(beir_dir)!r}, split='test'); "
        f"e = DenseEncoder({str(tiny_model_dir)!r}, show_progress_bar=False, device='cpu'); "
        "r = e.encode_corpus(c, block_rows=2); print(r.embeddings.filename)"
    )

    outputs = {}
    for world in (1, 2):
        logs = [tmp_path / f"w{world}r{r}.log" for r in range(world)]
        procs = [  # output to files: a rank blocked on a full pipe would stall the others
            subprocess.Popen(
                [sys.executable, "-c", code],
                env={
                    **os.environ,
                    "IRDISTILL_CACHE": str(tmp_path / f"c{world}"),
                    "RANK": str(r),
                    "WORLD_SIZE": str(world),
                },
                stdout=logs[r].open("w"),
                stderr=subprocess.STDOUT,
            )
            for r in range(world)
        ]
        codes = [p.wait(timeout=300) for p in procs]
        assert codes == [0] * world, [log.read_text()[-2000:] for log in logs]
        files = {log.read_text().strip().splitlines()[-1] for log in logs}
        assert len(files) == 1  # every rank returns the published file
        outputs[world] = Path(files.pop()).read_bytes()
    assert outputs[1] == outputs[2]


def test_attention_dropout_is_set_in_every_self_attention_layer_and_the_config(tiny_model_dir: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from irdistill.encoding import set_attention_dropout

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    hf = model[0].auto_model
    layers = [m for m in hf.modules() if type(m).__name__.endswith("SelfAttention")]
    assert layers and all(m.dropout.p > 0 for m in layers)  # the tiny BERT's own 0.1
    hidden = [m.p for m in hf.modules() if isinstance(m, torch.nn.Dropout) and m not in [x.dropout for x in layers]]
    assert set_attention_dropout(model, 0.0) == len(layers)
    assert all(m.dropout.p == 0.0 for m in layers)
    assert hf.config.attention_probs_dropout_prob == 0.0
    # hidden-state dropout is not attention dropout: left as it was
    after = [m.p for m in hf.modules() if isinstance(m, torch.nn.Dropout) and m not in [x.dropout for x in layers]]
    assert after == hidden and any(p > 0 for p in after)
    with pytest.raises(InputError, match=r"\[0, 1\)"):
        set_attention_dropout(model, 1.0)
    with pytest.raises(InputError, match="no self-attention layer"):
        set_attention_dropout(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1)), 0.0)
