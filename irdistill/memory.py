"""The process's memory: its peak, handing freed heap back to the OS, and (on request) keeping glibc's
heap from growing past what a CPU training step really holds.

glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB), so from the
first training step on, the activations of a CPU forward and backward pass (blocks of 1-30 MiB whose
sizes change with each batch's padded length) come from the heap, where freed blocks of the wrong
size pile up: resident memory climbs above what the live tensors hold. :func:`limit_heap_growth`
fixes the threshold, which sends those blocks to mmap and returns them to the OS on free, at the
price of time (the kernel zeroes the pages of every new block).

The default is glibc's own heap: it is the fastest setting within 6 GiB. Measured on the main job's
student step (all-MiniLM-L6-v2, hybrid-kl rows, bf16, activation checkpointing;
``benchmarks/bench_precision.py``, ``eval/results/precision_steps.md``): glibc's default heap is the
faster and the fixed 4 MiB threshold the smaller per step (its table gives both); earlier, in fp32,
``eval/results/malloc_steps.md``: 1.32x the time per step for half the peak.
``IRDISTILL_MMAP_THRESHOLD=on`` (4 MiB) or a number of bytes buys the memory back on a machine
where it is short.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import resource
import sys

from irdistill.errors import InputError

logger = logging.getLogger(__name__)

MMAP_THRESHOLD = 4 * 2**20
"""Bytes from which :func:`limit_heap_growth` has glibc serve a block by mmap (its own default:
128 KiB, rising to 32 MiB as blocks are freed)."""
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, <malloc.h>
_applied: int | None = None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 (glibc only: musl has no mallopt)
        return libc
    except (OSError, AttributeError):
        return None


def release_memory() -> None:
    """Collect unreachable objects and hand the C heap's free pages back to the OS (glibc's
    ``malloc_trim``, on Linux), so that the next stage's peak does not stack on this one's."""
    gc.collect()
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:  # not glibc (musl, macOS): freed memory stays with the process
        logger.debug("malloc_trim is not available; freed memory stays with the process")
        return
    trim(0)


def limit_heap_growth(threshold: int | None = None) -> int | None:
    """Fix glibc's mmap threshold at ``threshold`` bytes when given, else as the
    ``IRDISTILL_MMAP_THRESHOLD`` environment variable says: unset, empty, ``0`` or ``off`` leave
    glibc alone (the default), ``on`` fixes it at :data:`MMAP_THRESHOLD`, a number at that many bytes.
    Returns the threshold in force, or ``None`` where nothing was changed: not glibc, not asked for,
    or ``MALLOC_MMAP_THRESHOLD_`` already set by the user (glibc read it at start; it wins).
    Called by the CLI at start and by CPU training; idempotent."""
    global _applied
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return None
    raw = os.environ.get("IRDISTILL_MMAP_THRESHOLD", "")
    setting = raw.strip().lower()
    if threshold is None:
        if setting in ("", "0", "off", "false", "no"):
            return None
        try:
            threshold = MMAP_THRESHOLD if setting in ("on", "true", "yes") else int(setting)
        except ValueError:
            raise InputError(
                f"IRDISTILL_MMAP_THRESHOLD must be on, off / 0, or a number of bytes; got {raw!r}"
            ) from None
        if threshold < 1:
            raise InputError(f"IRDISTILL_MMAP_THRESHOLD must be on, off / 0, or >= 1 byte; got {raw!r}")
    if threshold < 1:
        raise ValueError(f"threshold must be >= 1 byte, got {threshold}")
    if _applied == threshold:
        return threshold
    libc = _libc()
    if libc is None or not libc.mallopt(_M_MMAP_THRESHOLD, threshold):
        logger.debug("glibc's mmap threshold could not be set; the heap keeps its defaults")
        return None
    _applied = threshold
    logger.debug("glibc mmap threshold fixed at %d bytes", threshold)
    return threshold
