"""Values of the swept parameter, and the part of them one compute job takes."""

from __future__ import annotations

import numpy as np

from pipeline.config import ConfigError, SweepConfig, SweepKind


def sweep_values(sweep: SweepConfig) -> np.ndarray:
    """All values of the sweep, strictly increasing (an explicit list is sorted).

    Increasing values make ``C`` a monotonic coordinate, so part files combine by coordinates.
    """
    if sweep.kind == SweepKind.linear:
        return np.linspace(sweep.start, sweep.stop, sweep.num)
    if sweep.kind == SweepKind.log:
        return np.geomspace(sweep.start, sweep.stop, sweep.num)
    given = list(sweep["values"])  # item access: DictConfig.values is a method
    values = np.sort(np.asarray(given, dtype=np.float64))
    if np.any(np.diff(values) == 0):
        raise ConfigError(f"invalid sweep.values={given}: values must be distinct")
    return values


def part_bounds(count: int, parts: int, part: int) -> tuple[int, int]:
    """Start and stop index of ``part`` when ``count`` values are split into ``parts`` near-equal parts."""
    if not 0 <= part < parts <= count:
        raise ConfigError(f"invalid part={part}: must be between 0 and {parts - 1} for {count} values")
    edges = np.linspace(0, count, parts + 1).round().astype(int)
    return int(edges[part]), int(edges[part + 1])


def part_values(sweep: SweepConfig, part: int | None) -> np.ndarray:
    """The values one job computes: part ``part`` of ``sweep.parts``, or all when ``part`` is None."""
    values = sweep_values(sweep)
    if part is None:
        return values
    start, stop = part_bounds(len(values), sweep.parts, part)
    return values[start:stop]
