"""Memory budget of one batched pass, and the chunk size that fits it.

# NOTE [Choosing the chunk size]
The peak memory of ``vmap(jvp(f))`` over ``n`` parameter values is close to ``a + b * n``:
a fixed part (inputs, weights) and a part per value (activations, tangents, outputs). A
sweep starts with probe chunks of 1, 2 and 4 values whose results are kept (probing wastes
no values, only some batching). The first probe (warm-up, lazy initialisation) is ignored
once there are others; ``b`` comes from the last two, and the rest of the sweep runs in
chunks of the largest ``n`` with ``a + b * n`` under the budget. Probing stops as soon as
the estimate so far (pessimistic after the warm-up alone: all of it counted per value) lets
the rest run in one chunk, so a small sweep costs one extra pass.

Fitting the budget is not the whole story on a CPU. A sweep's passes run inside
:func:`~pipeline.derivatives.heap.kept_heap`, so each pass finds the memory the one before freed
instead of page-faulting it in again. Past the caches, large chunks run slower per value than
small ones (convolutions, MLPs), while models made of many small ops (an eager RK4 loop) want
large chunks. So a CPU sweep of at least :data:`TUNE_MIN_POINTS` values times its next chunks
at the sizes :func:`tune_sizes` gives (:data:`TUNE_SIZES`, larger for an op-bound model, whose
small chunks cost as much as larger ones: NOTE [Op-bound models] in
:mod:`pipeline.derivatives.opcost`; smaller where a pass pushes several tangents per point), each
twice (results kept; once when the first timings already differ clearly), and goes on with the
small size unless the large one was clearly faster per value (:func:`faster_chunk_size`). If it
was, chunks :data:`TUNE_GROWTH` times larger are timed in turn while they keep being clearly
faster, and the rest runs in the last size that was. Where a larger chunk was timed than the size
chosen, the heap is trimmed, so that its memory does not stay resident. Chunking does not change
results: every value's derivative is computed by the same ops whatever its chunk (checked bitwise
on the benchmark models). The price is that the timed chunks run at their own speed; the bench's
chunking tables (docs/bench/methods.md) give automatic against fixed sizes. GPUs keep the largest chunk
that fits.

Peak memory is read from the CUDA allocator on GPUs and from the process's peak resident
set (``VmHWM``, reset through ``/proc/self/clear_refs``, after ``malloc_trim`` hands freed
heap pages back, so reused memory counts) on Linux CPUs. Where neither is
available, the probe's output size times :data:`FALLBACK_FACTOR` stands in for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils._pytree import tree_leaves

from pipeline.config.sizes import available_ram_bytes
from pipeline.derivatives.heap import _trim_heap, measure_peak_bytes

BUDGET_FRACTION = 0.25
"""Default budget: this fraction of the free RAM (CPU) or free GPU memory (CUDA)."""

FALLBACK_FACTOR = 8
"""Footprint / output size assumed where peak memory cannot be measured."""

PROBE_SIZES = (1, 2, 4)
"""Sizes of the probe chunks that start a sweep with automatic chunking."""

TUNE_SIZES = (8, 32)
"""The two chunk sizes timed against each other on a long CPU sweep, in points of one direction
each (:func:`tune_sizes` scales them down where a pass pushes several directions per point)."""

TUNE_MIN_POINTS = 256
"""Sweeps (or parts) with fewer values are not timed: they run in the largest chunk that fits."""

TUNE_MIN_SECONDS = 0.002
"""A small chunk computed faster than this is bound by per-pass overhead, not by the caches: the
largest chunk that fits is kept (a timing that short is too noisy to decide on, and a cheap model
is far faster in one chunk than in many small ones)."""

TUNE_REPEATS = 2
"""Each of :data:`TUNE_SIZES` is timed this many times, interleaved, and its fastest run counts: a
pause (garbage collection, page faults) during one timing would otherwise pick the small chunk
for a model bound by per-pass overhead, where it is many times slower."""

TUNE_CLEAR = 2.0
"""A first timing of the larger chunk this many times faster per value than the smaller's
decides at once: no second run (a pause cannot make that difference), which would cost an op-bound
model a large share of its sweep in slow small chunks."""

TUNE_CLEAR_SLOWER = 1.4
"""A first timing of the larger chunk this many times slower per value than the smaller's decides
at once too. Lower than :data:`TUNE_CLEAR`: a large chunk past the caches is the dearest to time
again; the risk is a pause during the larger chunk's timing, which leaves the sweep in the
smaller chunks."""

TUNE_GROWTH = 4
"""While a larger timed chunk is clearly faster per value, the next one timed is this many times larger."""

TUNE_GAIN = 0.8
"""The large chunk is kept when its time per value is below this fraction of the small one's."""

clock: Callable[[], float] = time.perf_counter
"""The clock chunk timing reads: tests put a simulated one in its place (no test depends on wall time)."""


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device``: free GPU memory on CUDA, available RAM on CPU."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free
    return available_ram_bytes()


def budget_bytes(device: torch.device, max_memory_mb: int | None) -> int:
    """The budget of one batched pass: ``max_memory_mb`` or a fraction of free memory."""
    if max_memory_mb is not None:
        return max_memory_mb * 2**20
    return int(available_bytes(device) * BUDGET_FRACTION)


def output_bytes(result: object) -> int:
    """Bytes of the tensors in ``result``."""
    return sum(t.numel() * t.element_size() for t in tree_leaves(result) if isinstance(t, torch.Tensor))


def fit_chunk_size(probes: list[tuple[int, int | None, int]], budget: int, remaining: int) -> int:
    """Largest chunk whose estimated peak fits ``budget``, from ``(size, peak, output bytes)`` probes.

    The first probe is a warm-up, ignored when others exist (see NOTE above); alone, it gives a
    pessimistic estimate (all of its footprint counted per value).
    """
    usable = probes[1:] or probes
    if any(peak is None for _, peak, _ in usable):
        usable = [(n, FALLBACK_FACTOR * out, out) for n, _, out in usable]
    points = sorted({n: peak for n, peak, _ in usable}.items())
    (n1, p1), (n2, p2) = points[0], points[-1]
    if n1 == n2:
        per_value, fixed = max(p2 / n2, 1.0), 0.0
    else:
        per_value = max((p2 - p1) / (n2 - n1), p2 / n2 / 4, 1.0)
        fixed = max(p2 - per_value * n2, 0.0)
    return int(max(1, min(remaining, (budget - fixed) // per_value)))


@dataclass(frozen=True)
class ChunkHints:
    """What the checks before a sweep learnt about the model, for choosing its chunk size."""

    bytes_per_point: int | None = None
    """A pessimistic estimate of a forward-mode pass's memory per point (the structure check)."""
    op_bound: bool = False
    """Its cost is torch's cost per call (NOTE [Op-bound models] in :mod:`pipeline.derivatives.opcost`)."""


def tune_sizes(directions: int = 1, op_bound: bool = False) -> tuple[int, int]:
    """:data:`TUNE_SIZES` for a pass that pushes ``directions`` tangents per point at once (forward
    mode over several parameters): a chunk's tensors grow with points x directions, so the sizes
    timed shrink by that factor and stay :data:`TUNE_GROWTH` apart. For an op-bound model, sizes
    :data:`TUNE_GROWTH` times larger: its small chunks cost as much as larger ones."""
    scale = TUNE_GROWTH if op_bound else 1
    small = max(1, scale * TUNE_SIZES[0] // directions)
    return small, max(TUNE_GROWTH * small, scale * TUNE_SIZES[1] // directions)


def faster_chunk_size(
    small_seconds: float, large_seconds: float, fitting: int, sizes: tuple[int, int] = TUNE_SIZES
) -> int:
    """After timing chunks of ``sizes`` (:func:`tune_sizes`): ``fitting`` (the largest that fits
    the budget) if the large chunk was clearly faster per value, else the small size."""
    small, large = sizes
    if small_seconds < TUNE_MIN_SECONDS:  # per-pass overhead dominates: one timing is noise
        return fitting
    return fitting if large_seconds / large < TUNE_GAIN * small_seconds / small else small


def _timed_chunks(
    run: Callable[[torch.Tensor], object],
    points: torch.Tensor,
    start: int,
    sizes: tuple[int, ...],
    against: float | None = None,
) -> tuple[dict[int, float], int]:
    """Seconds of a chunk of each size, the fastest of :data:`TUNE_REPEATS` interleaved runs (results
    kept), and where the sweep now starts; stops after a first chunk under :data:`TUNE_MIN_SECONDS`,
    and after the first round when the largest size's time per value is :data:`TUNE_CLEAR` times
    below the smaller sizes' (with ``against``, a time per value already known) or
    :data:`TUNE_CLEAR_SLOWER` times above."""
    seconds = dict.fromkeys(sizes, math.inf)
    for _ in range(TUNE_REPEATS):
        for size in sizes:
            tic = clock()
            run(points[start : start + size])
            seconds[size] = min(seconds[size], clock() - tic)
            start += size
            if seconds[sizes[0]] < TUNE_MIN_SECONDS:  # bound by per-pass overhead: no more timing
                return seconds, start
        largest = seconds[sizes[-1]] / sizes[-1]
        smaller = min([seconds[size] / size for size in sizes[:-1]] + ([against] if against is not None else []))
        if largest * TUNE_CLEAR <= smaller or largest >= TUNE_CLEAR_SLOWER * smaller:
            break
    return seconds, start


def _tuned_chunk_size(
    run: Callable[[torch.Tensor], object], points: torch.Tensor, start: int, fitting: int, sizes: tuple[int, int]
) -> tuple[int, int]:
    """NOTE [Choosing the chunk size]: chunks of :func:`tune_sizes` timed against each other; while
    the larger keeps being clearly faster per value, chunks :data:`TUNE_GROWTH` times larger are
    timed too, as long as the sweep has values left for them and they fit; the sweep goes on in the
    last size that was clearly faster, never in a larger, untimed one: a timed size's memory is
    already in the heap (:func:`~pipeline.derivatives.heap.kept_heap`), a larger chunk's pages are
    faulted in afresh."""
    small, large = sizes
    seconds, start = _timed_chunks(run, points, start, sizes)
    choice = faster_chunk_size(seconds[small], seconds[large], fitting, sizes)
    if seconds[small] < TUNE_MIN_SECONDS:
        return choice, start
    if choice != fitting:
        return _smaller_than_timed(choice), start
    best = large
    while (size := best * TUNE_GROWTH) < fitting and len(points) - start >= TUNE_REPEATS * size:
        timed, start = _timed_chunks(run, points, start, (size,), against=seconds[best] / best)
        if timed[size] / size >= TUNE_GAIN * seconds[best] / best:
            return _smaller_than_timed(best), start  # past the caches: larger chunks no longer pay
        seconds[size], best = timed[size], size
    return best, start


def _smaller_than_timed(size: int) -> int:
    """``size``, chosen after timing a larger chunk: the heap kept that chunk's memory (kept_heap),
    handed back here, so that what stays resident for the rest of the sweep is what chunks of
    ``size`` need (a part of the ``oscillator_large`` study, 400 MiB of results, timed 512 and
    chose 128: peak RSS 729 MB, 893-921 MB without this)."""
    _trim_heap()
    return size


def choose_chunk_size(
    run: Callable[[torch.Tensor], object],
    points: torch.Tensor,
    *,
    max_memory_mb: int | None,
    hints: ChunkHints | None,
    directions: int = 1,
) -> tuple[int, int]:
    """The chunk size for the rest of a sweep, and how many of its first points the choice ran.

    ``run(chunk)`` computes a chunk (its results are kept: probing wastes no values). All points
    go in one chunk when ``hints.bytes_per_point`` says they fit the budget; otherwise probe
    chunks of :data:`PROBE_SIZES` measure the memory per value. On the CPU, a long sweep then
    times chunks of :func:`tune_sizes` (NOTE [Choosing the chunk size]); ``directions``: the
    tangents a pass pushes per point at once.
    """
    hints = hints or ChunkHints()
    budget = budget_bytes(points.device, max_memory_mb)
    start = 0
    if hints.bytes_per_point is not None and hints.bytes_per_point * len(points) <= budget:
        chunk_size = len(points)
    else:
        probes = []
        for size in PROBE_SIZES:
            chunk = points[start : start + size]
            if len(chunk) == 0:
                break
            result, peak = measure_peak_bytes(lambda chunk=chunk: run(chunk), points.device)
            probes.append((len(chunk), peak, output_bytes(result)))
            start += len(chunk)
            chunk_size = fit_chunk_size(probes, budget, max(len(points) - start, 1))
            if chunk_size >= len(points) - start:
                break
    sizes = tune_sizes(directions, hints.op_bound)
    if sizes[1] >= chunk_size:  # an op-bound model's larger sizes do not fit: the usual ones
        sizes = tune_sizes(directions)
    if points.device.type == "cpu" and chunk_size > sizes[1] and len(points) - start >= TUNE_MIN_POINTS:
        chunk_size, start = _tuned_chunk_size(run, points, start, chunk_size, sizes)
    return chunk_size, start
