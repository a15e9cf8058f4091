from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from irdistill.errors import InputError
from irdistill.memory import MMAP_THRESHOLD, limit_heap_growth, peak_rss_mb, release_memory

# A block of 6 MiB is freed, then another of the same size is taken: glibc's own dynamic threshold
# rises past 6 MiB at the first free, so the second block comes from the heap (no mmapped bytes);
# with the threshold fixed at 4 MiB both are mmapped, and the live one shows in mallinfo2's hblkhd.
PROBE = textwrap.dedent(
    """
    import ctypes, sys
    sys.path.insert(0, {root!r})
    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    import os
    from irdistill.memory import limit_heap_growth
    if {limit}:
        os.environ["IRDISTILL_MMAP_THRESHOLD"] = "on"
        assert limit_heap_growth() == 4 * 2**20
    else:  # the default: glibc's own heap
        assert limit_heap_growth() is None
    size = 6 * 2**20
    libc.free(libc.malloc(size))
    block = libc.malloc(size)
    print(libc.mallinfo2().hblkhd >= size)
    libc.free(block)
    """
)


def _glibc_with_mallinfo2() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
@pytest.mark.parametrize("limit", [False, True])
def test_limit_heap_growth_sends_large_blocks_to_mmap(limit: bool) -> None:
    root = str(Path(__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "IRDISTILL_MMAP"))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(root=root, limit=limit)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(limit)  # mmapped only under the fixed threshold


def test_limit_heap_growth_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IRDISTILL_MMAP_THRESHOLD", raising=False)
    assert limit_heap_growth() is None  # glibc's heap unless asked: the faster setting within 6 GiB
    monkeypatch.setenv("IRDISTILL_MMAP_THRESHOLD", "off")
    assert limit_heap_growth() is None
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")  # the user's own glibc setting wins
    assert limit_heap_growth(8 * 2**20) is None
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    with pytest.raises(ValueError, match=">= 1 byte"):
        limit_heap_growth(0)
    for bad in ("4MB", "-5"):  # a malformed setting is one clear error, naming the variable
        monkeypatch.setenv("IRDISTILL_MMAP_THRESHOLD", bad)
        with pytest.raises(InputError, match="IRDISTILL_MMAP_THRESHOLD must be"):
            limit_heap_growth()
    if _glibc_with_mallinfo2():
        monkeypatch.setenv("IRDISTILL_MMAP_THRESHOLD", "on")
        assert limit_heap_growth() == MMAP_THRESHOLD
        monkeypatch.setenv("IRDISTILL_MMAP_THRESHOLD", str(2 * MMAP_THRESHOLD))
        assert limit_heap_growth() == 2 * MMAP_THRESHOLD
        assert limit_heap_growth(MMAP_THRESHOLD) == MMAP_THRESHOLD  # back to the default for later tests


def test_release_memory_and_peak() -> None:
    before = peak_rss_mb()
    release_memory()
    assert 0 < before <= peak_rss_mb()
