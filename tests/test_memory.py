"""Chunk sizes from measured memory: the arithmetic and the measurement."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline import sensitivity
from pipeline.derivatives import chunking, heap
from pipeline.derivatives.chunking import FALLBACK_FACTOR, ChunkHints, fit_chunk_size
from pipeline.derivatives.heap import measure_peak_bytes
from tests.helpers import SimulatedClock

MB = 2**20


def test_fit_ignores_warm_up_and_uses_the_slope():
    probes = [(1, 500 * MB, MB), (2, 30 * MB, 2 * MB), (4, 50 * MB, 4 * MB)]  # 10 MB/value + 10 MB fixed
    assert fit_chunk_size(probes, budget=110 * MB, remaining=1000) == 10
    assert fit_chunk_size(probes, budget=110 * MB, remaining=7) == 7
    assert fit_chunk_size(probes, budget=1 * MB, remaining=1000) == 1


def test_fit_with_the_warm_up_alone_is_pessimistic():
    assert fit_chunk_size([(1, 100 * MB, MB)], budget=1000 * MB, remaining=50) == 10


def test_fit_without_measurements_uses_output_size():
    probes = [(1, None, MB), (2, None, 2 * MB)]
    assert fit_chunk_size(probes, budget=80 * MB, remaining=100) == 80 // FALLBACK_FACTOR


def test_measure_sees_a_large_allocation():
    _, peak = measure_peak_bytes(lambda: torch.ones(64 * MB // 4).sum(), torch.device("cpu"))
    if peak is not None:  # None where /proc/self/clear_refs is not available
        assert peak >= 60 * MB


def test_small_budget_gives_small_chunks_and_same_results():
    """A 1000 x 256 MLP-like routine: ~2 MB per value, so a 20 MB budget allows a handful per chunk."""
    torch.manual_seed(0)
    w = torch.randn(256, 256) / 16
    x = torch.randn(1000, 256)

    def f(x, C):
        return torch.tanh(torch.tanh(x @ (w * C)) @ w)

    values = np.linspace(0.5, 1.5, 40)
    tight = sensitivity(f, x, {"C": values}, max_memory_mb=20)
    loose = sensitivity(f, x, {"C": values}, chunk_size=40)
    _, peak = measure_peak_bytes(lambda: None, torch.device("cpu"))
    if peak is not None:
        chunk = int(re.search(r"chunk size (\d+)", tight.attrs["history"])[1])
        assert 1 <= chunk <= 10
    np.testing.assert_allclose(tight.dy_dC.values, loose.dy_dC.values, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("budget", [None, 1, 10_000])
def test_every_value_is_computed_whatever_the_budget(budget):
    ds = sensitivity(seed_linear_like, torch.arange(3.0), {"C": np.arange(11.0)}, max_memory_mb=budget)
    np.testing.assert_array_equal(ds.C, np.arange(11.0))
    np.testing.assert_array_equal(ds.dy_dC.values, np.tile([0, 1, 2], (11, 1)))


def seed_linear_like(x, C):
    return C * x


def test_faster_chunk_size_keeps_large_chunks_only_when_clearly_faster_per_value():
    from pipeline.derivatives.chunking import TUNE_SIZES, faster_chunk_size

    small, large = TUNE_SIZES
    assert faster_chunk_size(small * 1.0, large * 0.5, fitting=500) == 500  # op-bound: 2x faster per value
    assert faster_chunk_size(small * 1.0, large * 1.0, fitting=500) == small  # no gain: small chunks
    assert faster_chunk_size(small * 1.0, large * 3.0, fitting=500) == small  # cache-bound: large is slower
    assert faster_chunk_size(0.0005, 0.004, fitting=500) == 500  # a 0.5 ms pass: overhead-bound, keep it large


@pytest.mark.parametrize(
    ("per_pass", "per_value_small", "per_value_large", "expected", "rounds"),
    [
        (0.0, 0.0005, 0.004, 8, 1),  # large chunks 8x slower per value (cache-bound): clear at once
        (0.0, 0.002, 0.0035, 8, 1),  # 1.75x slower per value: clear too (TUNE_CLEAR_SLOWER)
        # a fixed cost per pass dominates (op-bound): 3.6x, clear; chunks of 128 timed (clearly faster
        # again), 512 would not fit in the 300 values: the rest in chunks of 128
        (0.02, 0.0001, 0.0001, 128, 1),
        # 1.4x faster per value in large chunks: timed twice; too few values left to time 128
        (0.005, 0.001, 0.001, 32, 2),
    ],
)
def test_cpu_sweep_times_two_chunks_and_keeps_every_result(
    per_pass, per_value_small, per_value_large, expected, rounds, monkeypatch
):
    """Synthetic costs (a simulated clock): the choice, how often each size is timed, and that no
    value is lost or repeated."""
    from pipeline.derivatives.chunking import TUNE_SIZES
    from pipeline.derivatives.methods import in_chunks

    sizes = []
    clock = SimulatedClock()
    monkeypatch.setattr(chunking, "clock", clock)

    def batched(chunk):
        sizes.append(len(chunk))
        per_value = per_value_small if len(chunk) <= TUNE_SIZES[0] else per_value_large
        clock.advance(per_pass + per_value * len(chunk))
        return chunk[:, 0] * 2, chunk[:, :1] * 3

    points = torch.arange(300.0)[:, None]
    # everything fits the budget
    result = in_chunks(batched, points, chunk_size=None, max_memory_mb=None, hints=ChunkHints(1))
    assert sizes[: 2 * rounds] == list(TUNE_SIZES) * rounds and sizes[2 * rounds : 2 * rounds + 2] != list(TUNE_SIZES)
    assert result.chunk_size == expected
    assert sum(sizes) == 300 and torch.equal(result.y, points[:, 0] * 2) and torch.equal(result.dy, points * 3)


def test_an_overhead_bound_sweep_stops_timing_after_one_small_chunk(monkeypatch):
    """A pass under TUNE_MIN_SECONDS says per-pass overhead dominates: no more timed chunks, the rest in one."""
    from pipeline.derivatives.chunking import TUNE_SIZES
    from pipeline.derivatives.methods import in_chunks

    sizes = []
    monkeypatch.setattr(chunking, "clock", SimulatedClock())  # every pass takes no time

    def batched(chunk):
        sizes.append(len(chunk))
        return chunk[:, 0] * 2, chunk[:, :1] * 3

    points = torch.arange(300.0)[:, None]
    result = in_chunks(batched, points, chunk_size=None, max_memory_mb=None, hints=ChunkHints(1))
    assert sizes == [TUNE_SIZES[0], 300 - TUNE_SIZES[0]] and result.chunk_size == 300
    assert torch.equal(result.dy, points * 3)


def test_growing_chunks_are_timed_until_they_stop_paying(monkeypatch):
    """Synthetic costs: a per-pass overhead, and values 6x dearer in chunks over 128 (past the caches):
    8 < 32 < 128 are each clearly faster per value, 512 is not: the rest runs in chunks of 128. Sizes
    whose first timing differs twofold or more per value from the one compared are timed once."""
    from pipeline.derivatives.methods import in_chunks

    sizes = []
    clock = SimulatedClock()
    monkeypatch.setattr(chunking, "clock", clock)

    def batched(chunk):
        sizes.append(len(chunk))
        clock.advance(0.01 + (0.00005 if len(chunk) <= 128 else 0.0003) * len(chunk))
        return chunk[:, 0] * 2, chunk[:, :1] * 3

    points = torch.arange(2000.0)[:, None]
    result = in_chunks(batched, points, chunk_size=None, max_memory_mb=None, hints=ChunkHints(1))
    assert sizes[:4] == [8, 32, 128, 512] and set(sizes[4:-1]) == {128}  # each at least 2.5x apart: once
    assert result.chunk_size == 128 and torch.equal(result.dy, points * 3)


def test_one_chunk_in_host_memory_is_kept_not_copied():
    """A single chunk's fresh contiguous results become the results; views and later chunks are copied."""
    from pipeline.derivatives.methods import in_chunks

    made = []

    def batched(chunk):
        made.append((chunk[:, 0] * 2, chunk * 3))
        return made[-1]

    points = torch.arange(10.0)[:, None]
    whole = in_chunks(batched, points, chunk_size=10, max_memory_mb=None)
    assert whole.y.data_ptr() == made[-1][0].data_ptr() and whole.dy.data_ptr() == made[-1][1].data_ptr()
    # a view of part of a larger tensor is copied (adopting it would keep all of the larger one) ...
    halves = in_chunks(
        lambda chunk: tuple(torch.cat([t, t])[:10] for t in batched(chunk)), points, chunk_size=10, max_memory_mb=None
    )
    assert halves.y._base is None and halves.y.untyped_storage().nbytes() == 40
    assert torch.equal(halves.y, points[:, 0] * 2)
    # ... a view of all of one (forward mode's dy.unsqueeze(-1)) is kept
    full = in_chunks(
        lambda chunk: tuple(t.unsqueeze(-1) for t in batched(chunk)), points, chunk_size=10, max_memory_mb=None
    )
    assert full.y.data_ptr() == made[-1][0].data_ptr() and full.dy.data_ptr() == made[-1][1].data_ptr()
    parts = in_chunks(batched, points, chunk_size=4, max_memory_mb=None)
    assert all(parts.y.data_ptr() != y.data_ptr() for y, _ in made[-3:]) and torch.equal(parts.dy, points * 3)


@pytest.mark.parametrize(
    ("params", "method", "measured"),
    [
        ({"C": [1.0, 2.0]}, "auto", True),  # forward mode: the check's estimate is its memory hint
        ({"C": [1.0, 2.0], "K": [0.5], "L": [3.0]}, "auto", False),  # 3 directions, 1 output: reverse first
        ({"C": [1.0, 2.0]}, "reverse", False),
    ],
)
def test_the_structure_check_measures_memory_only_for_forward_mode(monkeypatch, params, method, measured):
    """Reverse mode ignores the forward-mode memory hint (its memory grows with the outputs, and it
    probes its own): the check then runs without measuring, which would return freed memory to
    the system for the derivatives to fault back in."""
    from pipeline.derivatives import structure

    calls = []
    real = structure.measure_peak_bytes
    monkeypatch.setattr(structure, "measure_peak_bytes", lambda run, device: calls.append(1) or real(run, device))
    ds = sensitivity(lambda x, **p: x * sum(p.values()), torch.tensor([2.0]), params, method=method)
    assert (len(calls) == 1) == measured
    assert int(ds["dy_dC_connected"].min()) == 1  # the check ran either way


@pytest.mark.parametrize(
    ("params", "op_bound", "sizes"),
    [
        ({"C": np.linspace(1.0, 2.0, 320)}, False, (8, 32)),
        ({"C": np.linspace(1.0, 2.0, 16), "K": np.linspace(1.0, 2.0, 20)}, False, (4, 16)),  # 2 tangents per point
        ({"C": np.linspace(1.0, 2.0, 320)}, True, (32, 128)),  # op-bound: 4 times larger
        ({"C": np.linspace(1.0, 2.0, 16), "K": np.linspace(1.0, 2.0, 20)}, True, (16, 64)),
    ],
)
def test_chunks_timed_hold_as_many_tangents_whatever_the_directions(monkeypatch, params, op_bound, sizes):
    """Forward mode over P parameters pushes P tangents per point at once: a chunk's tensors grow
    with points x P, so the chunk sizes timed are TUNE_SIZES / P; TUNE_GROWTH times that for an
    op-bound model (what sensitivity() found, set here)."""
    from pipeline import plan as planning

    assert chunking.tune_sizes(1) == chunking.TUNE_SIZES and chunking.tune_sizes(3) == (2, 10)
    assert chunking.tune_sizes(8) == chunking.tune_sizes(100) == (1, chunking.TUNE_GROWTH)
    timed = []
    real = chunking._timed_chunks
    monkeypatch.setattr(chunking, "_timed_chunks", lambda *args, **kw: timed.append(args[3]) or real(*args, **kw))
    monkeypatch.setattr(planning, "is_op_bound", lambda cost: op_bound)
    ds = sensitivity(lambda x, **p: x * math.prod(p.values()), torch.arange(3.0), params, method="forward")
    assert timed[0] == sizes
    np.testing.assert_allclose(ds.dy_dC.values, (ds.y / ds.C).values, rtol=1e-6)


def test_an_op_bound_model_whose_larger_sizes_do_not_fit_times_the_usual_ones(monkeypatch):
    """Op-bound sizes (32, 128) need more than 128 values to fit: under a budget of about 100 values
    (1 MiB each, as the probes report it here), chunks of 8 and 32 are timed as for any model."""
    from pipeline.derivatives.methods import in_chunks

    clock = SimulatedClock()
    monkeypatch.setattr(chunking, "clock", clock)

    def measured(run, device):  # a peak of 1 MiB per value
        result = run()
        return result, len(result[0]) * 2**20

    monkeypatch.setattr(chunking, "measure_peak_bytes", measured)
    sizes = []

    def batched(chunk):
        sizes.append(len(chunk))
        clock.advance(0.005)  # above TUNE_MIN_SECONDS: timing goes on
        return chunk[:, 0] * 2, chunk[:, :1] * 3

    points = torch.arange(600.0)[:, None]
    hints = ChunkHints(bytes_per_point=2**40, op_bound=True)  # the hint does not fit: probes
    result = in_chunks(batched, points, chunk_size=None, max_memory_mb=100, hints=hints)
    probes = len(chunking.PROBE_SIZES)
    assert sizes[:probes] == list(chunking.PROBE_SIZES) and sizes[probes : probes + 2] == list(chunking.TUNE_SIZES)
    assert 128 not in sizes and sum(sizes) == 600 and torch.equal(result.dy, points * 3)


_KEPT_HEAP_FAULTS = """
import resource, torch
from pipeline.derivatives.heap import _proc_status_bytes, kept_heap, mapped_apart

def faults(make):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    make()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

big, half = 2**25, 2**24  # float32: 128 and 64 MiB, over glibc's largest dynamic mmap threshold
with kept_heap():
    torch.ones(big)
    with kept_heap():  # nested: the outer one still holds
        pass
    inside = faults(lambda: torch.ones(half))
    with mapped_apart():  # larger than the free memory in the heap
        result = torch.ones(2 * big)
    kept = _proc_status_bytes("VmRSS:")
    heap = next(line for line in open("/proc/self/maps") if line.endswith("[heap]\\n"))
    low, high = (int(end, 16) for end in heap.split()[0].split("-"))
print(inside, (kept - _proc_status_bytes("VmRSS:")) // 2**20, int(low <= result.data_ptr() < high))
"""


@pytest.mark.skipif(heap._libc() is None, reason="needs glibc's mallopt")
def test_kept_heap_reuses_freed_blocks_and_hands_them_back():
    """A 64 MiB tensor (16,384 pages) finds the memory of a freed 128 MiB one inside kept_heap without
    page faults, and that memory leaves the resident set when kept_heap ends; under mapped_apart,
    a new block is mapped on its own. In a fresh process: the heap of one that has run other tests
    holds free memory already handed back, which a new tensor may land in."""
    run = subprocess.run([sys.executable, "-c", _KEPT_HEAP_FAULTS], capture_output=True, text=True, check=True)
    inside, handed_back_mib, result_in_heap = map(int, run.stdout.split())
    assert inside < 500
    assert handed_back_mib >= 120
    assert not result_in_heap  # mapped_apart: a block that outlives the sweep is not in its heap


def test_sweeps_run_inside_kept_heap():
    depths = []

    def model(x, C):
        depths.append(heap._KEPT_HEAP["depth"])
        return C * x

    sensitivity(model, torch.ones(3), {"C": [1.0, 2.0]}, method="forward")
    assert depths.count(1) == 1  # the sweep's one pass (the checks around it run outside)
    assert heap._KEPT_HEAP["depth"] == 0


@pytest.mark.skipif(not hasattr(heap._libc(), "mallinfo2"), reason="needs glibc 2.33+")
def test_free_heap_bytes_counts_what_a_pass_freed():
    """kept_heap hands memory back on leaving only when the heap holds more free memory than glibc
    keeps by itself: the count it reads must see a freed tensor."""
    with heap.kept_heap():
        torch.ones(2**25)  # 128 MiB, freed at once, kept in the heap
        assert heap._free_heap_bytes(heap._libc()) >= 2**27


def test_a_chunk_costs_its_own_size_not_the_whole_designs():
    """Under vmap, ``jacfwd``'s basis (``new_zeros`` of the chunk) took the size of the storage the
    chunk is a view of: every pass of a forward sweep over 4,096 points of 64 parameters allocated
    and zeroed 134 MB (points x parameters x parameters), whatever its chunk size. Each chunk now
    reaches the model in storage of its own, and a pass of 2 points stays small."""
    from pipeline.derivatives.methods import forward

    points = torch.rand(4096, 64, dtype=torch.float64)
    seen, peaks = [], []

    def fn(x, theta):
        return x * theta.prod()

    def measured(batched):
        def run(chunk):
            seen.append(chunk.untyped_storage().nbytes() == chunk.numel() * chunk.element_size())
            result, peak = measure_peak_bytes(lambda: batched(chunk), chunk.device)
            peaks.append(peak)
            return result

        return run

    from pipeline.derivatives import methods

    original = methods.in_chunks
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(methods, "in_chunks", lambda batched, points, **kw: original(measured(batched), points, **kw))
        result = forward(fn, torch.ones(1, dtype=torch.float64), points[100:], chunk_size=2)
    expected = points[100:].prod(-1, keepdim=True)[..., None] / points[100:, None, :]
    torch.testing.assert_close(result.dy[:, 0], expected[:, 0], rtol=1e-12, atol=0)
    assert all(seen)
    whole = 4096 * 64 * 64 * 8
    if all(peak is not None for peak in peaks):  # Linux: the passes after the first are measured
        assert max(peaks[1:]) < whole // 8, f"a pass of 2 points took {max(peaks[1:]) / MB:.0f} MB"
