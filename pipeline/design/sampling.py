"""Sampled designs over several uncertain parameters, each with a distribution (``scipy.stats.qmc``).

A :class:`Design` is N points of P parameters, passed as ``params`` to
:func:`pipeline.sensitivity`; the dataset then has one dim ``point`` with a coordinate variable per
parameter (``C(point)``), where a grid has one dim per parameter. Each parameter's distribution
gives the points (through its quantile function) and the Poincaré constant that turns the DGSM
into an upper bound on the total Sobol' index (:mod:`pipeline.design.bounds`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.checks import check_parameter_name, is_whole
from pipeline.design.distributions import Distribution
from pipeline.errors import ConfigError, clipped


@dataclass
class Design:
    """N points of P parameters (``table``, ``(N, P)``) and the parameters' distributions."""

    names: list[str]
    table: np.ndarray
    distributions: dict[str, Distribution] = field(default_factory=dict)
    kind: str = "points"
    seed: int | None = None
    first_point: int = 0  # index of the first row in the whole design (a part's offset)
    second_order: bool = False  # a Saltelli design with the BA blocks of second-order indices

    def __len__(self) -> int:
        return len(self.table)

    def part(self, start: int, stop: int) -> Design:
        """Rows ``start:stop``, keeping their indices in the whole design (a compute job's part)."""
        return Design(
            self.names, self.table[start:stop], self.distributions, self.kind, self.seed, start, self.second_order
        )

    def columns(self) -> dict[str, np.ndarray]:
        return {name: self.table[:, i] for i, name in enumerate(self.names)}

    def attrs(self) -> dict[str, str | int]:
        """What the dataset records: the design's kind, seed and every distribution."""
        out: dict[str, str | int] = {"design": self.kind}
        if self.seed is not None:
            out["design_seed"] = self.seed
        if self.kind == "saltelli":
            out["design_second_order"] = int(self.second_order)
        out.update({f"distribution_{p}": str(d) for p, d in self.distributions.items()})
        return out


def _checked(distributions: Mapping[str, Distribution], n: int) -> list[str]:
    if not isinstance(distributions, Mapping) or not distributions:
        raise ConfigError("invalid design: give each parameter a distribution, e.g. {'C': design.uniform(0, 1)}")
    for name, dist in distributions.items():
        check_parameter_name(name, "design")
        if not isinstance(dist, Distribution):
            raise ConfigError(f"invalid design[{name!r}]={dist!r}: use design.uniform(...), design.normal(...), ...")
    if not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"invalid n={n!r}: the number of points must be an integer >= 1")
    return list(distributions)


def _check_seed(seed: int) -> None:
    if not is_whole(seed) or seed < 0:
        raise ConfigError(f"invalid seed={seed!r}: a design's seed is a whole number >= 0")


def _from_unit(
    distributions: Mapping[str, Distribution], unit: np.ndarray, kind: str, seed: int | None, first: int = 0
) -> Design:
    names = list(distributions)
    table = np.empty_like(unit)
    for i, p in enumerate(names):  # column by column: no second copy of the table
        table[:, i] = distributions[p].ppf(unit[:, i])
    if not np.isfinite(table).all():  # u = 0 maps to -inf for unbounded distributions
        raise ConfigError(f"invalid {kind} design: a point fell on an infinite quantile; use another seed")
    return Design(names, table, dict(distributions), kind, seed, first)


def _rows(rows: tuple[int, int] | None, n: int) -> tuple[int, int]:
    """``rows`` (start and stop point of a part), checked against the design's ``n`` points; all of them if None."""
    start, stop = rows if rows is not None else (0, n)
    if not 0 <= start <= stop <= n:
        raise ValueError(f"rows {rows} are not within the design's {n} points")
    return start, stop


def _sobol_rows(dims: int, seed: int, start: int, stop: int) -> np.ndarray:
    """Points ``start:stop`` of the scrambled Sobol' sequence of ``dims`` dims and ``seed``."""
    from scipy.stats import qmc

    engine = qmc.Sobol(d=dims, scramble=True, seed=seed)
    if start:  # scipy's fast_forward(0) fails
        engine.fast_forward(start)
    with warnings.catch_warnings():  # the whole design has a power of two points; its parts need not
        warnings.filterwarnings("ignore", "The balance properties of Sobol' points", UserWarning)
        return engine.random(stop - start)


def sobol(
    distributions: Mapping[str, Distribution], n: int, seed: int = 0, rows: tuple[int, int] | None = None
) -> Design:
    """A scrambled Sobol' sequence of ``n`` points (a power of two, for its balance properties);
    ``rows=(start, stop)``: only those points (a part), drawn without the others."""
    names = _checked(distributions, n)
    _check_seed(seed)
    if n & (n - 1):
        raise ConfigError(f"invalid n={n}: a Sobol' design needs a power of two (e.g. {1 << int(math.log2(n))})")
    start, stop = _rows(rows, n)
    unit = _sobol_rows(len(names), seed, start, stop)
    return _from_unit(distributions, unit, "sobol", seed, start)


def saltelli_group(parameters: int, second_order: bool = False) -> int:
    """Rows per base point of a Saltelli design: ``A, AB_1..AB_P, B`` (and ``BA_1..BA_P``)."""
    return parameters * (2 if second_order else 1) + 2


def points_per_base_point(sweep: Mapping) -> int:
    """Points per base point of a sweep config (or its plain dict): :func:`saltelli_group` for a
    Saltelli design, else 1 (every point is its own)."""
    if sweep.get("kind") != "saltelli":
        return 1
    return saltelli_group(design_parameters(sweep), bool(sweep.get("second_order")))


def design_parameters(sweep: Mapping) -> int:
    """How many parameters a design config samples: all of ``parameters``, or the ``screen.top`` a
    screening stage keeps of them (pipeline.config.screening)."""
    count = len(sweep.get("parameters") or {})
    top = (sweep.get("screen") or {}).get("top")
    return min(top, count) if top else count


def saltelli(
    distributions: Mapping[str, Distribution],
    n: int,
    seed: int = 0,
    second_order: bool = False,
    rows: tuple[int, int] | None = None,
) -> Design:
    """A pick-freeze design for variance-based Sobol' indices (Saltelli 2010), ``n`` base points.

    Two independent matrices ``A`` and ``B`` (the two halves of one scrambled Sobol' sequence of
    ``2P`` dims) and, for each parameter ``i``, ``AB_i``: ``A`` with column ``i`` from ``B`` (and
    ``BA_i``, ``B`` with column ``i`` from ``A``, for second-order indices). The rows are grouped by
    base point: ``A_j, AB_1j, ..., AB_Pj, [BA_1j, ..., BA_Pj,] B_j`` (SALib's order), so the design
    has ``n (P + 2)`` points (``n (2P + 2)``), the first ``k`` groups of a larger design of the same
    seed are the design of ``k`` base points (``n`` grows as a Sobol' design does), and
    :mod:`pipeline.design.indices` reads the blocks back from the order alone. ``rows=(start,
    stop)``: only those points (a part), from the base points they belong to.
    """
    names = _checked(distributions, n)
    _check_seed(seed)
    if n & (n - 1):
        raise ConfigError(
            f"invalid n={n}: a Saltelli design needs a power of two base points (e.g. {1 << int(math.log2(n))})"
        )
    p = len(names)
    group = saltelli_group(p, second_order)
    start, stop = _rows(rows, n * group)
    first, last = start // group, -(-stop // group)  # the base points of those rows
    unit = _sobol_rows(2 * p, seed, first, last)
    a, b = unit[:, :p], unit[:, p:]
    blocks = [a]
    for swap_from, base in ((b, a), *([(a, b)] if second_order else [])):
        for i in range(p):
            mixed = base.copy()
            mixed[:, i] = swap_from[:, i]
            blocks.append(mixed)
    blocks.append(b)
    cut = slice(start - first * group, stop - first * group)
    unit_rows = np.stack(blocks, axis=1).reshape(-1, p)[cut]  # (base point, group, P), flattened
    design = _from_unit(distributions, unit_rows, "saltelli", seed, start)
    design.second_order = second_order
    return design


def lhs(distributions: Mapping[str, Distribution], n: int, seed: int = 0) -> Design:
    """A Latin hypercube of ``n`` points."""
    from scipy.stats import qmc

    names = _checked(distributions, n)
    _check_seed(seed)
    return _from_unit(distributions, qmc.LatinHypercube(d=len(names), seed=seed).random(n), "lhs", seed)


def random(
    distributions: Mapping[str, Distribution], n: int, seed: int = 0, rows: tuple[int, int] | None = None
) -> Design:
    """``n`` independent random points; ``rows=(start, stop)``: only those points (a part), the
    generator advanced past the others (one draw per value)."""
    names = _checked(distributions, n)
    _check_seed(seed)
    start, stop = _rows(rows, n)
    generator = np.random.default_rng(seed)
    generator.bit_generator.advance(start * len(names))
    unit = generator.random((stop - start, len(names)))
    return _from_unit(distributions, unit, "random", seed, start)


def points(table: np.ndarray, names: list[str], distributions: Mapping[str, Distribution] | None = None) -> Design:
    """The user's own ``N x P`` table (optionally with distributions, for the bounds)."""
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != len(names) or len(table) == 0:
        raise ConfigError(
            f"invalid points of shape {table.shape}: need an N x P table with one column per parameter {names}"
        )
    for name in names:
        check_parameter_name(name, "points")
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise ConfigError(
            f"invalid points: the columns {list(names)} name {', '.join(repeated)} more than once; "
            "each column needs its own parameter name"
        )
    if not np.isfinite(table).all():
        raise ConfigError(f"invalid points: {int((~np.isfinite(table)).sum())} non-finite values")
    return Design(list(names), table, dict(distributions or {}), "points", None)


DESIGNS = {"sobol": sobol, "lhs": lhs, "random": random, "saltelli": saltelli}
"""Sampled designs by their config name (``sweep.kind``); ``points`` reads a table instead."""


def read_points(path: Path, names: list[str]) -> np.ndarray:
    """An N x P table from ``.npy`` (columns in the order of ``names``), ``.csv`` (a header naming
    the columns) or ``.nc`` (one variable per parameter); a file that cannot be read is named."""
    if not path.is_file():
        raise ConfigError(f"invalid sweep.path={str(path)!r}: no such file")
    try:
        return _read_points(path, names)
    except (ValueError, OSError, KeyError, IndexError) as err:
        if isinstance(err, ConfigError):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"invalid sweep.path={str(path)!r}: cannot read it as a table of points ({clipped(first, 200)}); write an "
            "N x P .npy, a .csv with a header row naming the parameters, or a .nc with one variable per parameter"
        ) from err


def _read_points(path: Path, names: list[str]) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".csv":
        data = np.genfromtxt(path, delimiter=",", names=True)
        missing = [n for n in names if n not in (data.dtype.names or ())]
        if missing:
            raise ConfigError(f"invalid sweep.path={str(path)!r}: no column {missing[0]!r} (has {data.dtype.names})")
        return np.column_stack([np.atleast_1d(data[n]) for n in names])
    if path.suffix == ".nc":
        import xarray as xr

        with xr.open_dataset(path) as ds:
            missing = [n for n in names if n not in ds.data_vars]
            if missing:
                raise ConfigError(
                    f"invalid sweep.path={str(path)!r}: no variable {missing[0]!r} (has {list(ds.data_vars)})"
                )
            return np.column_stack([ds[n].values.reshape(-1) for n in names])
    raise ConfigError(f"invalid sweep.path={str(path)!r}: supported file types are .npy, .csv, .nc")
