"""Training precision: bf16 mixed precision where the hardware computes bf16 natively, fp32 elsewhere.

``precision: auto`` (the default of every training command) resolves here, once, and the choice is
logged and recorded with the trained model:

==========  ===========================================================================================
``auto``    ``bf16`` on a CUDA GPU that supports it, and on a CPU with native bf16 matrix instructions
            (Intel AMX, or AVX-512 BF16 on Intel Cooper Lake and later and AMD Zen 4 and later;
            ``bf16`` in an Arm CPU's features); ``fp32`` elsewhere, where bf16 would be emulated and
            slower than fp32
``bf16``    mixed precision through the trainer's ``bf16=True``: the weights and the optimizer stay
            fp32 (the master copy), the forward pass runs under ``torch.autocast`` in bf16 (accelerate
            sets it up on the CPU as on a GPU). Refused on a CPU without native bf16
``fp32``    full precision
==========  ===========================================================================================

Measured on the main job's student shape (``benchmarks/bench_precision.py``,
``eval/results/precision_steps.md``). Nothing here is home-made numerics: the trainer and accelerate
do the mixed precision; this module only decides whether to ask for it.
"""

from __future__ import annotations

import functools
import logging
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from irdistill.errors import InputError

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""x86 ``/proc/cpuinfo`` flags of native bf16 matrix arithmetic (AMX tiles; AVX-512 BF16 dot products)."""


@functools.cache
def cpu_bf16_instructions(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The CPU's native bf16 instructions (``"amx_bf16"``, ``"avx512_bf16"``, Arm's ``"bf16"``), or
    ``None`` when it has none (or on a system without ``/proc/cpuinfo``: macOS, Windows, where
    ``auto`` stays with fp32)."""
    path = Path(cpuinfo)
    if not sys.platform.startswith("linux") or not path.is_file():
        return None
    flags: set[str] = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):  # x86 "flags", Arm "Features"
            flags.update(value.split())
    for flag in CPU_BF16_FLAGS:
        if flag in flags:
            return flag
    if platform.machine().lower() in ("aarch64", "arm64") and "bf16" in flags:
        return "bf16"
    return None


@dataclass(frozen=True)
class Precision:
    """A resolved training precision and why it was chosen."""

    name: str
    """``bf16`` or ``fp32``."""
    reason: str

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"


def resolve_precision(requested: str = "auto", *, device: str | None = None) -> Precision:
    """``auto``, ``bf16`` or ``fp32`` for training on ``device`` (``None``: CUDA when available,
    else the CPU) -> the precision to train in, logged.

    Raises:
        InputError: an unknown name, or ``bf16`` on hardware that has no native bf16 (emulated
            bf16 on such a CPU is several times slower than fp32: a request for it is a mistake,
            not a preference).
    """
    import torch

    name = (requested or "auto").strip().lower()
    if name not in PRECISIONS:
        raise InputError(f"precision: unknown {requested!r}; known: {', '.join(PRECISIONS)}")
    on_cuda = (device is None and torch.cuda.is_available()) or (device is not None and device.startswith("cuda"))
    if on_cuda:
        supported = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        where = f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no CUDA device"
    else:
        instructions = cpu_bf16_instructions()
        supported = instructions is not None
        where = f"CPU with {instructions}" if instructions else "CPU without native bf16 (no AMX / AVX-512 BF16)"
    if name == "fp32":
        return _logged(Precision("fp32", "asked for"))
    if name == "bf16":
        if not supported:
            raise InputError(
                f"precision bf16: this {where} has no native bf16, so training would emulate it and run "
                "slower than fp32; use precision: fp32 (or auto)"
            )
        return _logged(Precision("bf16", f"asked for ({where})"))
    if supported:
        return _logged(Precision("bf16", f"auto: {where}"))
    return _logged(Precision("fp32", f"auto: {where}"))


def _logged(precision: Precision) -> Precision:
    logger.info("training precision: %s (%s)", precision.name, precision.reason)
    return precision
