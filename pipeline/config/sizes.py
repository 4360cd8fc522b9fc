"""Sizes of a sweep and of its results, checked before any work (no torch needed here).

A sweep whose coordinates or results cannot fit in memory fails at once with the sizes named
and what to change, instead of allocating until the process is killed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from pipeline.errors import ConfigError

GIB = 2**30

GRID_COPIES = 4
"""Copies of the grid's points a job holds at once (values, mesh, run tensor, dataset coordinates)."""

RESULT_MEMORY_FRACTION = 0.5
"""Results (``y`` and derivatives, kept in RAM) may take at most this fraction of the available RAM:
building and writing the dataset needs room beside them."""


def available_ram_bytes() -> int:
    """Available RAM (``MemAvailable`` on Linux, else free pages)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check_grid_size(counts: Mapping[str, int], key: str = "sweep") -> None:
    """Fail when the grid's points alone would not fit in memory (a grid grows as the product of its sizes)."""
    points = math.prod(counts.values())
    need = points * (len(counts) + 1) * 8 * GRID_COPIES
    available = available_ram_bytes()
    if need <= available:
        return
    shape = " x ".join(f"{n} values of {p}" for p, n in counts.items())
    raise ConfigError(
        f"invalid {key}: {points:.3g} points ({shape}) need {need / GIB:.3g} GiB for their coordinates "
        f"alone, more than the {available / GIB:.2f} GiB of memory available; use fewer values per "
        "parameter (a grid grows as the product of its sizes)"
    )


def check_result_size(points: int, outputs: int, variables: int, itemsize: int) -> None:
    """Fail when one job's results would not fit in memory, naming the sizes and the number of parts needed."""
    need = points * outputs * variables * itemsize
    available = available_ram_bytes()
    if need <= RESULT_MEMORY_FRACTION * available:
        return
    parts = math.ceil(need / (RESULT_MEMORY_FRACTION * available))
    raise ConfigError(
        f"the results would need {need / GIB:.2f} GiB ({points} points x {outputs} outputs (samples x output "
        f"elements) x {variables} variables x {itemsize} bytes), more than {RESULT_MEMORY_FRACTION:.0%} of the "
        f"{available / GIB:.2f} GiB of memory available: split the sweep into at least {parts} parts "
        "(sweep.parts, one job each), or use fewer points or samples"
    )
