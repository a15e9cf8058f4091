from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from irdistill.data import load_collection
from irdistill.errors import InputError
from irdistill.workflows.training import TrainConfig, build_train_dataset, train_student


def config(tiny_model_dir: Path, beir_dir: Path, scores: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        student=str(tiny_model_dir),
        dataset=str(beir_dir),
        split="test",
        scores=str(scores),
        out=str(out),
        batch_size=2,
        epochs=1,
        n_clusters=2,
        learning_rate=1e-3,
        max_seq_length=32,
        logging_steps=1,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize(
    ("loss", "sampler"),
    [
        ("margin-mse", "random"),
        ("margin-mse", "tas-balanced"),
        ("tas-balanced", "tas-balanced"),
        ("listwise-kl", "random"),
        ("infonce", "random"),
        ("hybrid", "tas-balanced"),
        ("hybrid-kl", "random"),
    ],
)
def test_each_loss_trains_and_saves_a_loadable_model(
    loss: str, sampler: str, tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path, cache_dir: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    extra = {"inbatch_teacher": str(tiny_model_dir)} if loss == "tas-balanced" else {}
    cfg = config(
        tiny_model_dir, beir_dir, bm25_scores, tmp_path / "student", loss=loss, sampler=sampler, list_size=3, **extra
    )
    result = train_student(cfg, show_progress_bar=False)
    assert result.examples > 0 and result.examples_per_second > 0
    report = json.loads((tmp_path / "student" / "irdistill_training.json").read_text())
    assert report["config"]["loss"] == loss
    model = SentenceTransformer(str(tmp_path / "student"), device="cpu")
    assert model.encode(["a query"]).shape == (1, 32)
    assert not list(tmp_path.glob(".student*"))  # checkpoints and staging removed after success


@pytest.mark.parametrize(
    ("loss", "sampler"), [("margin-mse", "random"), ("infonce", "random"), ("hybrid-kl", "random")]
)
def test_examples_are_the_rows_of_every_epoch_once(
    loss: str, sampler: str, tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """Pair datasets hold the whole plan and lists every epoch, triples one epoch: at 3 epochs the
    run trains on 3 epochs' rows whatever the layout, and the rate is those rows over the trainer's
    running time (the trainer alone counts the pair plan 3 times)."""
    collection = load_collection(beir_dir, split="test")
    kw = dict(loss=loss, sampler=sampler, list_size=3)
    one = config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "one", **kw)
    per_epoch = len(build_train_dataset(one, collection)[0])  # at 1 epoch every layout holds one epoch
    cfg = config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "student", epochs=3, **kw)
    result = train_student(cfg, show_progress_bar=False)
    assert result.examples == 3 * per_epoch
    report = json.loads((tmp_path / "student" / "irdistill_training.json").read_text())
    runtime = report["log_history"][-1]["train_runtime"]
    assert result.examples_per_second == pytest.approx(result.examples / runtime, rel=0.02)


def test_a_new_loss_is_one_registered_class(
    tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """A plug-in loss: one class with ``rows`` and ``recipe_options``, registered; the driver
    builds its rows, passes the recipe's options and its own ``loss_options``, and trains it."""
    from irdistill.losses import LOSSES, MarginMSELoss, Rows

    built: list[dict] = []

    @LOSSES.register("toy-margin")
    class ToyMargin(MarginMSELoss):
        rows = Rows.PAIRS
        recipe_options = {"label_scale": "scale"}

        def __init__(self, model, scale: float = 1.0, power: int = 2) -> None:
            super().__init__(model)
            built.append({"scale": scale, "power": power})

    try:
        cfg = config(
            tiny_model_dir,
            beir_dir,
            bm25_scores,
            tmp_path / "student",
            loss="toy-margin",
            sampler="random",
            label_scale=0.5,
            loss_options={"power": 3},
        )
        result = train_student(cfg, show_progress_bar=False)
        assert built == [{"scale": 0.5, "power": 3}]
        assert result.examples > 0 and (tmp_path / "student" / "irdistill_training.json").is_file()
        with pytest.raises(InputError, match="loss toy-margin: .*unexpected keyword argument 'nope'"):
            train_student(
                config(
                    tiny_model_dir,
                    beir_dir,
                    bm25_scores,
                    tmp_path / "again",
                    loss="toy-margin",
                    sampler="random",
                    loss_options={"nope": 1},
                ),
                show_progress_bar=False,
            )
    finally:
        LOSSES.unregister("toy-margin")
    with pytest.raises(InputError, match="unknown loss 'toy-margin'; known: hybrid, hybrid-kl, infonce"):
        config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "o", loss="toy-margin").validate()


def test_tas_balanced_labels_pack_margin_and_inbatch_scores(
    tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path, cache_dir: Path
) -> None:
    cfg = config(
        tiny_model_dir, beir_dir, bm25_scores, tmp_path / "s", loss="tas-balanced", inbatch_teacher=str(tiny_model_dir)
    )
    collection = load_collection(beir_dir, split="test")
    dataset, args = build_train_dataset(cfg, collection)
    assert args["per_device_train_batch_size"] == 2
    # 1 margin + in-batch scores of the query against 2 positives and 2 negatives of its batch
    assert {len(label) for label in dataset["label"]} == {1 + 2 * 2}
    # the values: the stored margin, then the in-batch teacher's dot products with the batch's
    # positives (rows in order), then its negatives, recomputed here from scratch
    from sentence_transformers import SentenceTransformer

    from irdistill.scores.table import read_scores

    teacher = SentenceTransformer(str(tiny_model_dir), device="cpu")
    table = read_scores(bm25_scores).to_pylist()
    stored = {(r["qid"], r["pid"]): r["score"] for r in table}
    text_of = {collection.corpus[d].full_text(): d for d in collection.doc_ids}
    qid_of = {t: q for q, t in collection.queries.items()}
    rows = [dataset[i] for i in range(len(dataset))]  # texts are joined on access
    for start in range(0, len(rows), 2):
        batch = rows[start : start + 2]
        passages = [r["positive"] for r in batch] + [r["negative"] for r in batch]
        p_emb = teacher.encode_document(passages, convert_to_numpy=True, normalize_embeddings=True)
        for row in batch:
            qid = qid_of[row["query"]]
            margin = stored[qid, text_of[row["positive"]]] - stored[qid, text_of[row["negative"]]]
            q_emb = teacher.encode_query([row["query"]], convert_to_numpy=True, normalize_embeddings=True)[0]
            assert row["label"][0] == pytest.approx(margin, rel=1e-6)
            assert row["label"][1:] == pytest.approx((p_emb @ q_emb).tolist(), abs=1e-5)


def test_freeze_documents_keeps_the_document_tower(
    tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path, cache_dir: Path
) -> None:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    cfg = config(
        tiny_model_dir, beir_dir, bm25_scores, tmp_path / "student", sampler="random", freeze_documents=True, epochs=2
    )
    train_student(cfg, show_progress_bar=False)
    start = SentenceTransformer(str(tiny_model_dir), device="cpu")
    trained = SentenceTransformer(str(tmp_path / "student"), device="cpu")
    texts = ["protein expression in cells", "vaccine trial"]
    np.testing.assert_allclose(trained.encode_document(texts), start.encode_document(texts), atol=1e-5)
    assert not np.allclose(trained.encode_query(texts), start.encode_query(texts), atol=1e-4)


def test_gradient_checkpointing_trains_the_same_model(
    tiny_model_dir: Path,
    beir_dir: Path,
    bm25_scores: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Recomputing activations in the backward pass changes memory and time, not the result;
    the trainer really turns it on, without transformers' warning about a deprecated name."""
    import warnings

    from sentence_transformers import SentenceTransformer

    hook = next(
        name
        for name in ("activation_checkpointing_enable", "gradient_checkpointing_enable")
        if hasattr(SentenceTransformer, name)
    )
    enable = getattr(SentenceTransformer, hook)
    calls: list[bool] = []

    def spy(self: SentenceTransformer, *args: object, **kwargs: object) -> object:
        calls.append(True)
        return enable(self, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, hook, spy)
    texts = ["protein folding", "a different sentence"]
    vectors = []
    for flag in (False, True):
        cfg = config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / f"gc{flag}", sampler="random")
        cfg.gradient_checkpointing = flag
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train_student(cfg, show_progress_bar=False)
        assert calls == [True] * flag
        assert not [w for w in caught if "gradient_checkpointing" in str(w.message)]
        vectors.append(SentenceTransformer(str(tmp_path / f"gc{flag}"), device="cpu").encode_document(texts))
    start = SentenceTransformer(str(tiny_model_dir), device="cpu").encode_document(texts)
    assert not np.allclose(vectors[0], start, atol=1e-4)  # it trained
    np.testing.assert_allclose(vectors[1], vectors[0], atol=1e-5)


@pytest.mark.parametrize(("requested", "native", "expected"), [("auto", "avx512_bf16", "bf16"), ("auto", None, "fp32")])
def test_precision_auto_trains_in_bf16_where_the_cpu_has_it(
    tiny_model_dir: Path,
    beir_dir: Path,
    bm25_scores: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    requested: str,
    native: str | None,
    expected: str,
) -> None:
    """``precision: auto`` asks the trainer for bf16 mixed precision on a CPU with native bf16: the
    student's forward passes run under bf16 autocast while its weights stay fp32, and the choice is
    recorded with the model; without native bf16 it trains in fp32."""
    import torch
    from sentence_transformers import SentenceTransformer

    from irdistill import precision

    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: native)
    forward = SentenceTransformer.forward
    seen: list[tuple[bool, torch.dtype]] = []

    def spy(self: SentenceTransformer, *args: object, **kwargs: object) -> object:
        if self.training:
            seen.append((torch.is_autocast_enabled("cpu"), next(self.parameters()).dtype))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "forward", spy)
    cfg = config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "student", sampler="random", precision=requested)
    train_student(cfg, show_progress_bar=False)
    record = json.loads((tmp_path / "student" / "irdistill_training.json").read_text())
    assert record["precision"] == expected and record["config"]["precision"] == requested
    assert seen and set(seen) == {(expected == "bf16", torch.float32)}  # fp32 master weights either way
    texts = ["protein folding", "a different sentence"]
    start = SentenceTransformer(str(tiny_model_dir), device="cpu").encode_document(texts)
    assert not np.allclose(SentenceTransformer(str(tmp_path / "student"), device="cpu").encode_document(texts), start)


def test_precision_recipe_errors(tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown precision 'fp16'; known: auto, bf16, fp32"):
        config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "m", precision="fp16").validate()
    with pytest.raises(InputError, match="splade student trains in fp32"):
        config(
            tiny_model_dir, beir_dir, bm25_scores, tmp_path / "m", student_kind="splade", precision="bf16"
        ).validate()


def test_bad_recipes_fail_before_training(
    tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="unknown loss 'mse'"):
        train_student(config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "o", loss="mse"))
    with pytest.raises(InputError, match="tas-balanced needs inbatch_teacher"):
        train_student(config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "o", loss="tas-balanced"))
    bad = tmp_path / "bad.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"qid": ["q1"], "pid": ["nope"], "score": [1.0], "teacher": ["t"]}), bad)
    with pytest.raises(InputError, match="passage id 'nope' is not in the corpus"):
        train_student(config(tiny_model_dir, beir_dir, bad, tmp_path / "o", loss="listwise-kl"))
    assert not (tmp_path / "o").exists()


def test_label_scale_multiplies_the_stored_teacher_only(
    tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path, cache_dir: Path
) -> None:
    import numpy as np

    collection = load_collection(beir_dir, split="test")
    for loss, extra in (
        ("margin-mse", {}),
        ("tas-balanced", {"inbatch_teacher": str(tiny_model_dir)}),
        ("listwise-kl", {"list_size": 3}),
    ):
        plain, _ = build_train_dataset(
            config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "o", loss=loss, **extra), collection
        )
        scaled, _ = build_train_dataset(
            config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "o", loss=loss, label_scale=0.25, **extra),
            collection,
        )
        a, b = np.asarray(plain["label"], dtype=float), np.asarray(scaled["label"], dtype=float)
        assert a.shape == b.shape and np.abs(a).max() > 0
        if loss == "tas-balanced":  # the margin is scaled, the in-batch teacher's cosines are not
            np.testing.assert_allclose(b[:, 0], 0.25 * a[:, 0])
            np.testing.assert_allclose(b[:, 1:], a[:, 1:])
        else:
            np.testing.assert_allclose(b, 0.25 * a)
    with pytest.raises(InputError, match="label_scale must be a positive number"):
        config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "o", label_scale=0.0).validate()


def test_train_under_torchrun_two_cpu_ranks(
    tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """`irdistill train` with the dual-teacher loss in 2 gloo processes: one model written, loadable."""
    import os
    import subprocess
    import sys

    from sentence_transformers import SentenceTransformer

    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["IRDISTILL_CACHE"] = str(cache_dir)
    out = tmp_path / "ddp-student"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29541",
            "-m",
            "irdistill.cli.main",
            "-q",
            "train",
            "--student",
            str(tiny_model_dir),
            "--dataset",
            str(beir_dir),
            "--split",
            "test",
            "--scores",
            str(bm25_scores),
            "--loss",
            "tas-balanced",
            "--sampler",
            "tas-balanced",
            "--inbatch-teacher",
            str(tiny_model_dir),
            "--batch-size",
            "2",
            "--epochs",
            "2",
            "--learning-rate",
            "1e-3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "irdistill_training.json").read_text())
    assert report["world_size"] == 2 and report["examples"] > 0
    # 3 queries at batch 2: 2 batches an epoch, one per rank: one step an epoch, 2 in all
    assert report["log_history"][-1]["step"] == 2
    model = SentenceTransformer(str(out), device="cpu")
    start = SentenceTransformer(str(tiny_model_dir), device="cpu")
    text = ["protein expression in cancer cells"]
    assert model.encode(text).shape == (1, 32)
    assert abs(model.encode(text) - start.encode(text)).max() > 1e-4  # it trained
    assert not list(tmp_path.glob(".ddp-student*"))


@pytest.mark.parametrize(("loss", "scale"), [("margin-mse", 1.0), ("margin-mse", 0.5), ("tas-balanced", 1.0)])
def test_planned_batches_survive_relabelling(
    loss: str, scale: float, tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """The trainer must replay the sampler's plan, not fall back to sequential batches over all epochs."""
    extra = {"inbatch_teacher": str(tiny_model_dir)} if loss == "tas-balanced" else {}
    cfg = config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "o", loss=loss, label_scale=scale, epochs=2, **extra)
    dataset, args = build_train_dataset(cfg, load_collection(beir_dir, split="test"))
    factory = args["batch_sampler"]
    assert factory.is_training_set(dataset)
    sampler = factory(dataset, batch_size=2, drop_last=False)
    assert type(sampler).__name__ == "PlannedBatchSampler"
    rows = [i for batch in sampler for i in batch]
    assert len(rows) == len(dataset) // 2  # one planned epoch per trainer epoch


@pytest.mark.parametrize(("loss", "steps"), [("margin-mse", 6), ("infonce", 9)])
def test_warmup_is_a_share_of_the_steps_the_trainer_takes(
    loss: str, steps: int, tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """3 epochs at batch 2: margin-mse has 3 queries (2 steps an epoch), infonce 5 judged pairs
    (3 steps an epoch). Warm-up 0.5 is ceil(steps / 2) steps up from 0, then a linear decay.
    (The defect: warm-up counted len(dataset) // batch_size steps an epoch, but the pair dataset
    holds all 3 planned epochs, so warm-up lasted the whole run.)"""
    cfg = config(
        tiny_model_dir,
        beir_dir,
        bm25_scores,
        tmp_path / "student",
        loss=loss,
        sampler="random",
        epochs=3,
        warmup_ratio=0.5,
        learning_rate=0.06,
    )
    train_student(cfg, show_progress_bar=False)
    log = json.loads((tmp_path / "student" / "irdistill_training.json").read_text())["log_history"]
    assert [e["step"] for e in log if "learning_rate" in e] == list(range(1, steps + 1))
    warmup = -(-steps // 2)
    # the rate each step used: 0.06 * done / warmup while warming up, then down towards 0
    expected = [0.06 * d / warmup if d < warmup else 0.06 * (steps - d) / (steps - warmup) for d in range(steps)]
    assert [e["learning_rate"] for e in log if "learning_rate" in e] == pytest.approx(expected)


def test_warmup_ratio_must_be_a_share(tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"warmup_ratio is a share of the training steps in \[0, 1\), got 1.0"):
        config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "s", warmup_ratio=1.0).validate()


def two_epochs_of_tas_balanced(tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, out: Path) -> TrainConfig:
    """The dual-teacher loss with random pairs and the tiny model as its own in-batch teacher."""
    return config(
        tiny_model_dir,
        beir_dir,
        bm25_scores,
        out,
        loss="tas-balanced",
        sampler="random",
        inbatch_teacher=str(tiny_model_dir),
        epochs=2,
    )


def test_tas_balanced_labels_match_each_ddp_step_of_three_ranks(
    tiny_model_dir: Path,
    beir_dir: Path,
    bm25_scores: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """3 ranks, 2 planned batches an epoch (not a multiple of 3). accelerate's own sharding
    (BatchSamplerShard, what the trainer's dataloader uses) deals the batches to the ranks; at
    every step, every row's in-batch labels are the in-batch teacher's scores of its query against
    exactly the passages the 3 ranks hold at that step (positives rank by rank, then negatives).
    The defect: the last step was labelled against copies of the epoch's last batch while
    accelerate filled ranks 1 and 2 with the epoch's first batches."""
    from accelerate.data_loader import BatchSamplerShard
    from sentence_transformers import SentenceTransformer

    monkeypatch.setenv("WORLD_SIZE", "3")
    cfg = two_epochs_of_tas_balanced(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "s")
    collection = load_collection(beir_dir, split="test")
    dataset, args = build_train_dataset(cfg, collection)
    factory = args["batch_sampler"]
    teacher = SentenceTransformer(str(tiny_model_dir), device="cpu")
    rows = [dataset[i] for i in range(len(dataset))]  # texts are joined on access
    steps = 0
    for epoch in range(2):
        shards = []
        for rank in range(3):
            sampler = factory(dataset, batch_size=2, drop_last=False)
            sampler.set_epoch(epoch)
            shards.append(list(BatchSamplerShard(sampler, num_processes=3, process_index=rank)))
        assert len({len(s) for s in shards}) == 1  # every rank takes the same number of steps
        for step in zip(*shards, strict=True):
            held = [rows[i] for batch in step for i in batch]  # rank 0's rows, then rank 1's, ...
            passages = [r["positive"] for r in held] + [r["negative"] for r in held]
            p_emb = teacher.encode_document(passages, convert_to_numpy=True, normalize_embeddings=True)
            q_emb = teacher.encode_query([r["query"] for r in held], convert_to_numpy=True, normalize_embeddings=True)
            for row, q in zip(held, q_emb, strict=True):
                assert row["label"][1:] == pytest.approx((p_emb @ q).tolist(), abs=1e-5)
            steps += 1
    assert steps == 2  # one step an epoch: 2 planned batches padded to 3, one per rank


def test_tas_balanced_labels_are_computed_once_per_machine_and_read_by_the_other_ranks(
    tiny_model_dir: Path,
    beir_dir: Path,
    bm25_scores: Path,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Local rank 0 encodes and keeps the labels beside the checkpoints; another rank (here: the
    same process as LOCAL_RANK 1, with the encoder made to fail) reads exactly those labels."""
    import irdistill.encoding

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    cfg = two_epochs_of_tas_balanced(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "s")
    collection = load_collection(beir_dir, split="test")
    first, _ = build_train_dataset(cfg, collection)
    kept = list((tmp_path / ".s.checkpoints").glob("inbatch-labels-*.arrow"))
    assert len(kept) == 1

    class NoEncoding:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("a rank other than local rank 0 encoded")

    monkeypatch.setattr(irdistill.encoding, "DenseEncoder", NoEncoding)
    monkeypatch.setenv("LOCAL_RANK", "1")
    second, _ = build_train_dataset(cfg, collection)
    assert second["label"] == first["label"] and len(first["label"]) > 0
    monkeypatch.setenv("LOCAL_RANK", "0")  # a resumed run: rank 0 reads the file too
    assert build_train_dataset(cfg, collection)[0]["label"] == first["label"]


@pytest.mark.parametrize("loss", ["listwise-kl", "infonce", "margin-mse"])
def test_max_queries_trains_on_the_first_queries_of_a_whole_split_store(
    loss: str, tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """The store scores every query of the split; max_queries cuts training to the first ones,
    and the rows hold no other query (the score lookups skip the rest instead of failing)."""
    collection = load_collection(beir_dir, split="test")
    first = collection.query_ids[:2]
    cfg = config(
        tiny_model_dir, beir_dir, bm25_scores, tmp_path / "o", loss=loss, sampler="random", list_size=3, max_queries=2
    )
    from irdistill.workflows.training import training_collection

    dataset, _ = build_train_dataset(cfg, training_collection(cfg))
    assert set(dataset["query"]) <= {collection.queries[q] for q in first} and len(dataset) > 0


def test_distill_weight_reaches_the_hybrid_kl_loss(
    tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path
) -> None:
    from irdistill.losses import HybridListwiseLoss
    from irdistill.workflows.training import _loss

    cfg = config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "o", loss="hybrid-kl", distill_weight=0.0)
    cfg.validate()
    loss = _loss(cfg, None, {"temperature": 0.2})
    assert isinstance(loss, HybridListwiseLoss) and loss.distill_weight == 0.0 and loss.beta == 1.0
    with pytest.raises(InputError, match="distill_weight must be >= 0, got -1.0"):
        config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "o", loss="hybrid-kl", distill_weight=-1.0).validate()


def test_building_pair_rows_leaves_the_process_arrow_pool_as_it_was(
    tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """irdistill reads a score table through a returning Arrow pool, then gives the application its
    own default pool back."""
    import pyarrow as pa

    from irdistill.workflows.training import build_training_data, training_collection

    before = pa.default_memory_pool().backend_name
    cfg = config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "o", loss="margin-mse", sampler="random")
    data = build_training_data(cfg, training_collection(cfg))
    assert len(data.dataset) > 0 and pa.default_memory_pool().backend_name == before


def test_a_store_of_other_queries_is_refused_and_extra_ones_left_out(
    tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store of the test split (q1-q3) with the train split (q4): no query in common, refused;
    with the test split cut to two queries, the third's scores are left out, and the log says so."""
    from irdistill.workflows.training import build_training_data, training_collection

    cfg = config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "o", loss="listwise-kl", list_size=3, split="train")
    with pytest.raises(InputError, match="query id 'q1' is not in .*no stored query is"):
        build_training_data(cfg, training_collection(cfg))
    cfg = config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "o", loss="listwise-kl", list_size=3)
    collection = training_collection(cfg)
    smaller = collection.subset(query_ids=collection.query_ids[:2])
    with caplog.at_level("INFO", logger="irdistill.workflows.training"):
        build_training_data(cfg, smaller)
    assert "1 of the 3 queries" in caplog.text


def test_attention_dropout_reaches_the_trained_model(
    tiny_model_dir: Path, beir_dir: Path, bm25_scores: Path, tmp_path: Path, cache_dir: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    cfg = config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "student", loss="margin-mse", attention_dropout=0.0)
    train_student(cfg, show_progress_bar=False)
    hf = SentenceTransformer(str(tmp_path / "student"), device="cpu")[0].auto_model
    assert hf.config.attention_probs_dropout_prob == 0.0
    report = json.loads((tmp_path / "student" / "irdistill_training.json").read_text())
    assert report["config"]["attention_dropout"] == 0.0
    with pytest.raises(InputError, match="attention_dropout"):
        config(tiny_model_dir, beir_dir, bm25_scores, tmp_path / "x", attention_dropout=1.5).validate()
