"""Values of the swept parameters, and the part of them one compute job takes."""

from __future__ import annotations

import numpy as np

from pipeline.checks import check_parts
from pipeline.config import ConfigError, RangeConfig, SweepConfig, SweepKind


def sweep_values(spec: RangeConfig) -> np.ndarray:
    """The values of one parameter's range, strictly increasing (an explicit list is sorted).

    Increasing values make each parameter a monotonic coordinate, so part files combine by
    coordinates.
    """
    if spec.kind == SweepKind.linear:
        return np.linspace(spec.start, spec.stop, spec.num)
    if spec.kind == SweepKind.log:
        return np.geomspace(spec.start, spec.stop, spec.num)
    given = list(spec["values"])  # item access: DictConfig.values is a method
    values = np.sort(np.asarray(given, dtype=np.float64))
    if np.any(np.diff(values) == 0):
        raise ConfigError(f"invalid sweep values {given}: values must be distinct")
    return values


def part_bounds(count: int, parts: int, part: int) -> tuple[int, int]:
    """Start and stop index of ``part`` when ``count`` values are split into ``parts`` near-equal parts."""
    check_parts(parts, count, part, "the first parameter")
    edges = np.linspace(0, count, parts + 1).round().astype(int)
    return int(edges[part]), int(edges[part + 1])


def part_grid(sweep: SweepConfig, part: int | None) -> dict[str, np.ndarray]:
    """The grid one job computes: every parameter's values, the first one cut to part ``part``.

    ``part=None`` is the whole grid.
    """
    grid = {sweep.param: sweep_values(sweep), **{name: sweep_values(spec) for name, spec in sweep.grid.items()}}
    if part is not None:
        start, stop = part_bounds(len(grid[sweep.param]), sweep.parts, part)
        grid[sweep.param] = grid[sweep.param][start:stop]
    return grid
