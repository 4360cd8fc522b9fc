"""The process's heap during a sweep (glibc) and the peak memory of one pass."""

from __future__ import annotations

import contextlib
import ctypes
import math
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_LIBC: ctypes.CDLL | bool | None = None
_MALLINFO2 = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")


def _proc_status_bytes(key: str) -> int:
    for line in _PROC_STATUS.read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise OSError(f"{key} not in {_PROC_STATUS}")


def _libc() -> ctypes.CDLL | None:
    """glibc, for ``malloc_trim`` and ``mallopt`` (``None`` elsewhere)."""
    global _LIBC
    if _LIBC is None:
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:
            libc = None
        _LIBC = libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else False
        if _LIBC and hasattr(_LIBC, "mallinfo2"):
            _LIBC.mallinfo2.restype = _MallInfo2
    return _LIBC or None


def _trim_heap() -> None:
    """Return freed heap memory to the OS (glibc), so that reused pages show up in the peak RSS."""
    if libc := _libc():
        libc.malloc_trim(0)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_KEPT_HEAP = {"depth": 0}
_KEPT_HEAP_LOCK = threading.Lock()

KEPT_THRESHOLD = 2**31 - 1
"""Inside :func:`kept_heap`: the size from which glibc maps a block of its own (and the free memory
at the top of the heap it keeps): larger than any one tensor of a pass."""

LEFT_THRESHOLDS = (32 * 2**20, 64 * 2**20)
"""After :func:`kept_heap`: the mmap and trim thresholds glibc's own adjustment reaches once a block
of 32 MiB has been freed, the state a process that computes with large tensors is usually in."""


@contextlib.contextmanager
def mapped_apart() -> Iterator[None]:
    """Inside :func:`kept_heap`: large blocks allocated here that the heap's free memory cannot hold
    are mapped on their own, as outside it.

    For a sweep's full-size results, which outlive it: in the heap, the freed memory of the passes
    around them would stay resident, and the job's peak would grow by that much.
    """
    libc = _libc()
    inside = libc is not None and _KEPT_HEAP["depth"] > 0
    if inside:
        libc.mallopt(_M_MMAP_THRESHOLD, LEFT_THRESHOLDS[0])
    try:
        yield
    finally:
        if inside:
            libc.mallopt(_M_MMAP_THRESHOLD, KEPT_THRESHOLD)


@contextlib.contextmanager
def kept_heap() -> Iterator[None]:
    """Keep the memory a batched pass frees for the next pass (glibc), and hand it back afterwards.

    glibc maps every block over its mmap threshold (128 KiB, growing to at most 32 MiB) anew and
    unmaps it when freed, so the large tensors of each pass of a chunked sweep are page-faulted
    and zeroed by the kernel again, pass after pass, often costing more than the pass's arithmetic
    (a sweep in one chunk gains only what its one pass reuses). Inside, large blocks come from the
    heap and freed ones stay there (:data:`KEPT_THRESHOLD`); on leaving, the free memory goes back
    to the system (``malloc_trim``, where there is more of it than glibc keeps by itself) and the
    thresholds are :data:`LEFT_THRESHOLDS`. Nested and concurrent uses (threads) share one setting:
    the first in sets it, the last out resets it; elsewhere than glibc, nothing changes.
    """
    libc = _libc()
    with _KEPT_HEAP_LOCK:  # sweeps in several threads: the first sets, the last one out resets
        _KEPT_HEAP["depth"] += 1
        if libc is not None and _KEPT_HEAP["depth"] == 1:
            libc.mallopt(_M_MMAP_THRESHOLD, KEPT_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, KEPT_THRESHOLD)
    try:
        yield
    finally:
        with _KEPT_HEAP_LOCK:
            _KEPT_HEAP["depth"] -= 1
            if libc is not None and _KEPT_HEAP["depth"] == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, LEFT_THRESHOLDS[0])
                libc.mallopt(_M_TRIM_THRESHOLD, LEFT_THRESHOLDS[1])
                if _free_heap_bytes(libc) > LEFT_THRESHOLDS[1]:
                    libc.malloc_trim(0)


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2``: ten ``size_t`` counts, ``fordblks`` the free bytes."""

    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2]


def _free_heap_bytes(libc: ctypes.CDLL) -> float:
    """Free bytes in glibc's main heap (``mallinfo2``, glibc 2.33+; infinite where unknown).

    A small sweep leaves little there: handing it back (``malloc_trim``) would only make the next
    allocations fault their pages in again, a noticeable share of a short study.
    """
    return libc.mallinfo2().fordblks if hasattr(libc, "mallinfo2") else math.inf


def measure_peak_bytes(run: Callable[[], object], device: torch.device) -> tuple[object, int | None]:
    """Run ``run()``; return its result and the peak bytes it added (``None``: unmeasurable)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = run()
        torch.cuda.synchronize(device)
        return result, torch.cuda.max_memory_allocated(device) - before
    try:
        _trim_heap()
        _CLEAR_REFS.write_text("5")  # resets VmHWM to the current resident set
        before = _proc_status_bytes("VmRSS:")
    except OSError:
        return run(), None
    result = run()
    return result, max(_proc_status_bytes("VmHWM:") - before, 0)
