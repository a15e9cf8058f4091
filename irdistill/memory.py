"""The process's memory: its peak, handing freed heap back to the OS, and keeping glibc's heap from
growing past what a CPU training step really holds.

Why :func:`limit_heap_growth`: glibc raises its mmap threshold each time a large mmapped block is
freed (up to 32 MiB), so from the first training step on, the activations of a CPU forward and
backward pass (blocks of 1-30 MiB whose sizes change with each batch's padded length) come from the
heap, where freed blocks of the wrong size pile up. On the main job's training, resident memory
climbed step by step from 1.2 to over 2.8 GiB while the live tensors stayed near 1.2 GiB. A fixed
threshold sends those blocks to mmap, which returns them to the OS on free. Measured over 10 steps
of the main job's student shape at the time (the hybrid recipe), medians of 3 fresh processes each
(``eval/results/malloc_steps.md``): peak RSS 1.33 against 2.64 GiB, but 1.32x the time per step (the
kernel zeroes the pages of every new block); on the teacher's mpnet encoding 1.25 against 1.45 GiB at
1.14x the time. The main job, then the hybrid recipe: 1.70 against 3.99 GiB, 45 against 38 min.
``IRDISTILL_MMAP_THRESHOLD=off`` trades the memory back for time.
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
    """Fix glibc's mmap threshold at ``threshold`` bytes (default :data:`MMAP_THRESHOLD`, or the
    ``IRDISTILL_MMAP_THRESHOLD`` environment variable; ``0`` or ``off`` there leaves glibc alone).
    Returns the threshold in force, or ``None`` where nothing was changed: not glibc, switched off,
    or ``MALLOC_MMAP_THRESHOLD_`` already set by the user (glibc read it at start; it wins).
    Called by the CLI at start and by CPU training; idempotent."""
    global _applied
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return None
    raw = os.environ.get("IRDISTILL_MMAP_THRESHOLD", "")
    setting = raw.strip().lower()
    if threshold is None:
        if setting in ("0", "off", "false", "no"):
            return None
        try:
            threshold = int(setting) if setting else MMAP_THRESHOLD
        except ValueError:
            raise InputError(f"IRDISTILL_MMAP_THRESHOLD must be a number of bytes, or 0 / off; got {raw!r}") from None
        if threshold < 1:
            raise InputError(f"IRDISTILL_MMAP_THRESHOLD must be >= 1 byte, or 0 / off; got {raw!r}")
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
