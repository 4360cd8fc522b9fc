"""Values of the swept parameters (a grid or a sampled design), and the part of them one compute job takes."""

from __future__ import annotations

import numpy as np

from pipeline.checks import check_parts
from pipeline.config.schema import DESIGN_KINDS, RangeConfig, SweepConfig, SweepKind
from pipeline.design.distributions import parse
from pipeline.design.sampling import DESIGNS, Design, points, points_per_base_point, read_points
from pipeline.errors import ConfigError
from pipeline.paths import in_workflow


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


def part_bounds(count: int, parts: int, part: int, param: str = "the first parameter") -> tuple[int, int]:
    """Start and stop index of ``part`` when ``count`` values of ``param`` are split into ``parts`` near-equal parts."""
    check_parts(parts, count, part, param, prefix="sweep.")
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


ROWS_APART = (SweepKind.sobol, SweepKind.saltelli, SweepKind.random)
"""Design kinds that draw a part's rows without drawing the others (a compute job of a design of
2^20 points and 100 parameters holds its own 2^16 rows, not 1.7 GB of the whole)."""


def sweep_design(sweep: SweepConfig, rows: tuple[int, int] | None = None) -> Design:
    """The sampled design of a ``sweep`` of a design kind (``sobol``, ``lhs``, ``random``, ``points``):
    all of it, or its points ``rows=(start, stop)``."""
    dists = {name: parse(text, f"sweep.parameters.{name}") for name, text in sweep.parameters.items() if text}
    if sweep.kind == SweepKind.points:
        table = read_points(in_workflow(sweep.path), list(sweep.parameters))
        design = points(table, list(sweep.parameters), dists)
        return design if rows is None else design.part(*rows)
    options = {"second_order": bool(sweep.second_order)} if sweep.kind == SweepKind.saltelli else {}
    if sweep.kind in ROWS_APART:
        return DESIGNS[sweep.kind.value](dists, sweep.n, seed=sweep.seed, rows=rows, **options)
    design = DESIGNS[sweep.kind.value](dists, sweep.n, seed=sweep.seed, **options)  # lhs: all points or none
    return design if rows is None else design.part(*rows)


def part_sweep(sweep: SweepConfig, part: int | None) -> dict[str, np.ndarray] | Design:
    """What one job computes: :func:`part_grid`, or its rows of the sampled design (part ``part``).

    A design split by ``part_size`` has parts of fixed rows (``part * part_size`` onwards), so a
    Sobol' or random design grown to more points keeps its first parts.
    """
    if sweep.kind not in DESIGN_KINDS:
        return part_grid(sweep, part)
    if part is None:
        return sweep_design(sweep)
    if sweep.part_size:
        return sweep_design(sweep, (part * sweep.part_size, (part + 1) * sweep.part_size))
    if sweep.kind in ROWS_APART:
        return sweep_design(sweep, part_bounds(sweep.n * points_per_base_point(sweep), sweep.parts, part, "point"))
    design = sweep_design(sweep)
    return design.part(*part_bounds(len(design), sweep.parts, part, "point"))
