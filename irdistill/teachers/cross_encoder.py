"""Cross-encoder teacher: any sentence-transformers ``CrossEncoder`` scoring (query, passage).

Raw logits by default (``ScoreScale.LOGIT``), the scale Margin-MSE was published with
(Hofstätter et al., arXiv 2010.02666); ``activation="sigmoid"`` gives probabilities.

What it adds to ``CrossEncoder.predict`` (which it reuses for loading, the tokenizer and the
Hugging Face model):

- duplicate pairs are scored once;
- every pair is tokenised once, up front, then batches are cut from pairs sorted by their
  token length (not character length), so padding stays near zero, under a token budget
  (``batch_tokens``) that keeps memory flat for long pairs; scores go back in input order;
- ``torch.inference_mode``, and bf16 (or fp16) autocast on a GPU;
- the inference backends of :mod:`irdistill.backends` (ONNX Runtime, OpenVINO, ``auto``): the
  same batches go through the exported graph instead of torch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from irdistill.encoding import rank_device
from irdistill.errors import InputError
from irdistill.paths import resolve_model
from irdistill.runtimes import is_graph_model
from irdistill.teachers.base import (
    TEACHERS,
    PointwiseTeacher,
    ScoreScale,
    check_pairs,
    check_scores,
)

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

logger = logging.getLogger(__name__)


def load_cross_encoder(
    model: str, device: str | None = None, max_length: int | None = None, *, backend: str = "torch"
) -> CrossEncoder:
    """A one-label ``CrossEncoder`` on ``backend`` (:func:`irdistill.backends.load_model`)."""
    from irdistill.backends import load_model

    path = resolve_model(model)
    local = Path(path)
    if local.exists() and not (local / "config.json").is_file():
        raise InputError(f"{path}: not a model folder (no config.json)")
    try:
        ce = load_model("cross-encoder", path, backend=backend, device=rank_device(device))
    except OSError as err:
        raise InputError(f"cannot load cross-encoder {model!r}: {err}") from err
    if max_length is not None:
        ce.max_seq_length = max_length
    if ce.num_labels != 1:
        raise InputError(f"{model}: a teacher cross-encoder needs one output label, it has {ce.num_labels}")
    return ce


@TEACHERS.register("cross-encoder")
class CrossEncoderTeacher(PointwiseTeacher):
    """Score pairs with a sentence-transformers ``CrossEncoder``.

    Args:
        model: a local folder, a name under ``$IRDISTILL_MODELS`` or a hub id
            (e.g. ``cross-encoder/ms-marco-MiniLM-L6-v2``).
        batch_size: pairs per forward pass at most.
        batch_tokens: token budget of a batch (pairs x padded length): batches of long pairs
            are cut smaller so memory stays flat; ``None``: ``batch_size`` pairs always.
        max_length: truncation length of a pair (default: the model's).
        activation: ``"none"`` for raw logits, ``"sigmoid"`` for probabilities.
        device: torch device (default: sentence-transformers picks).
        dtype: ``"auto"`` autocasts to bf16/fp16 on CUDA, ``"float32"`` never autocasts,
            ``"bfloat16"`` / ``"float16"`` autocast to that type on any device (torch only).
        backend: ``torch`` (default), ``onnx``, ``onnx-O1`` .. ``onnx-O4``, ``onnx-int8``
            (quantised), ``openvino`` or ``auto`` (:mod:`irdistill.backends`).

    Example:
        >>> teacher = CrossEncoderTeacher("cross-encoder/ms-marco-MiniLM-L6-v2")  # doctest: +SKIP
        >>> teacher.score(["what is a cat"], ["A cat is a small feline."])  # doctest: +SKIP
        array([8.61])
    """

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 64,
        batch_tokens: int | None = 16384,
        max_length: int | None = None,
        activation: Literal["none", "sigmoid"] = "none",
        device: str | None = None,
        dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto",
        backend: str = "torch",
        show_progress_bar: bool = False,
    ) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise InputError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
        if activation not in ("none", "sigmoid"):
            raise InputError(f"activation must be 'none' or 'sigmoid', got {activation!r}")
        self.name = f"cross-encoder:{Path(model).name}"
        self.model_name = model
        self.batch_size, self.batch_tokens = batch_size, batch_tokens
        self.activation, self.dtype = activation, dtype
        self.scale = ScoreScale.PROBABILITY if activation == "sigmoid" else ScoreScale.LOGIT
        self.show_progress_bar = show_progress_bar
        self.cross_encoder = load_cross_encoder(model, device=device, max_length=max_length, backend=backend)
        from irdistill.backends import backend_of

        self.backend = backend_of(self.cross_encoder)

    def config(self) -> dict[str, Any]:
        config = {
            "teacher": "cross-encoder",
            "model": self.model_name,
            "activation": self.activation,
            "max_length": self.cross_encoder.max_seq_length,
        }
        if self.backend != "torch":  # absent for torch: earlier score stores still resume
            config["backend"] = self.backend
        from irdistill.backends import fingerprint_check, precision_check_of

        check = fingerprint_check(precision_check_of(self.cross_encoder))
        if check is not None:  # auto-bf16 chose reduced precision: its probe agreement is part of the identity
            config["precision_check"] = check
        if self.dtype in ("bfloat16", "float16"):
            config["dtype"] = self.dtype
        return config

    def _batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        order = np.argsort(-lengths, kind="stable")
        batches, start = [], 0
        while start < len(order):
            longest = int(lengths[order[start]])
            size = self.batch_size
            if self.batch_tokens:
                size = max(1, min(self.batch_size, self.batch_tokens // max(longest, 1)))
            batches.append(order[start : start + size])
            start += size
        return batches

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        check_pairs(queries, passages)
        if not queries:
            return np.zeros(0)
        unique: dict[tuple[str, str], int] = {}
        inverse = np.fromiter(
            (unique.setdefault((q, p), len(unique)) for q, p in zip(queries, passages, strict=True)),
            dtype=np.int64,
            count=len(queries),
        )
        pairs = list(unique)
        ce = self.cross_encoder
        tokenizer = ce.tokenizer
        encoded = tokenizer(
            [q for q, _ in pairs], [p for _, p in pairs], truncation=True, max_length=ce.max_seq_length, padding=False
        )
        input_ids = encoded["input_ids"]
        lengths = np.fromiter((len(ids) for ids in input_ids), dtype=np.int64, count=len(input_ids))
        model = ce.transformers_model
        on_torch = not is_graph_model(model)  # an ONNX Runtime / OpenVINO graph stands in for torch
        model.eval()
        device = ce.device
        autocast = on_torch and (
            self.dtype in ("bfloat16", "float16") or (device.type == "cuda" and self.dtype == "auto")
        )
        if self.dtype in ("bfloat16", "float16"):
            amp_dtype = getattr(torch, self.dtype)
        else:
            amp_dtype = torch.bfloat16 if autocast and torch.cuda.is_bf16_supported() else torch.float16
        keys = [k for k in encoded.keys() if k in ("input_ids", "attention_mask", "token_type_ids")]
        pad_values = {"input_ids": tokenizer.pad_token_id or 0, "token_type_ids": tokenizer.pad_token_type_id}
        left = tokenizer.padding_side == "left"
        batches = self._batches(lengths)
        done: list[Any] = []  # scores stay on the device until the end: no host sync per batch
        with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=autocast):
            for batch in tqdm(batches, desc="cross-encoder", disable=not self.show_progress_bar):
                features = {
                    k: torch.from_numpy(pad_rows([encoded[k][i] for i in batch], pad_values.get(k, 0), left)).to(
                        device, non_blocking=True
                    )
                    for k in keys
                }
                logits = model(**features).logits.float()
                if logits.ndim == 2:
                    logits = logits[:, 0]
                if self.activation == "sigmoid":
                    logits = torch.sigmoid(logits)
                done.append(logits)
        out = np.empty(len(pairs), dtype=np.float64)
        if batches:
            out[np.concatenate(batches)] = torch.cat(done).cpu().numpy()
        logger.debug("%d pairs scored (%d unique)", len(queries), len(pairs))
        return check_scores(out[inverse], self.name)


def pad_rows(rows: list[list[int]], value: int, left: bool = False) -> np.ndarray:
    """``rows`` of token ids (or masks) as one int64 array, padded with ``value`` on the right (or the
    left) to the longest row: what ``tokenizer.pad`` returns for one key, without its per-item Python
    walk over the nested lists, which took more time than a GPU's forward passes (gpu_profile)."""
    width = max((len(row) for row in rows), default=0)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, row in enumerate(rows):
        if row:
            if left:
                out[i, width - len(row) :] = row
            else:
                out[i, : len(row)] = row
    return out
