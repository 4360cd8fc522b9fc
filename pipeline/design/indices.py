"""Variance-based Sobol' indices from a Saltelli design (:func:`pipeline.design.saltelli`).

# NOTE [Sobol' indices from a pick-freeze design]
A Saltelli design evaluates the model at ``A``, ``B`` (two independent samples of N base points)
and ``AB_i`` (``A`` with parameter ``i`` from ``B``), grouped by base point (and ``BA_i`` for
second order). Per sample and output element, with ``f`` centred by the mean of ``f_A`` and
``f_B`` (as scipy and SALib do; it lowers the estimators' variance) and ``V = Var[f_A, f_B]``:

- first order, Saltelli et al. 2010: ``S_i = mean(f_B (f_ABi - f_A)) / V``;
- total, Jansen 1999: ``S_Ti = mean((f_A - f_ABi)^2) / (2 V)``;
- second order, Saltelli 2002: ``S_ij = mean(f_BAi f_ABj - f_A f_B) / V - S_i - S_j``.

These are scipy.stats.sobol_indices' and SALib's estimators, so both reproduce the values on the
same evaluations (tests). Every estimator is a ratio of means over the base points, so a bootstrap
resample (each base point's count) is a product with the counts, and indices aggregated over
samples and output elements (variance weights, as the bounds are) are ratios of summed numerators
and variances. Intervals are percentile intervals of :data:`~pipeline.design.resampling.BOOTSTRAP`
resamples of the base points.

Failed evaluations: a base point any of whose evaluations is NaN or Inf (for any output element)
is left out whole, so that the blocks stay paired; the count is reported. The indices are then
those of the model where it can be evaluated: if failures depend on the parameters, that region
is not the whole distribution, and the summary says how many base points were left out.

Convergence: the first ``k`` groups of a Saltelli design are the design of ``k`` base points, so
the indices at ``N/8``, ``N/4``, ``N/2`` and ``N`` come from the same evaluations.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import xarray as xr

from pipeline.design.resampling import (
    BLOCK_VALUES,
    BOOTSTRAP,
    BOOTSTRAP_BATCH_VALUES,
    CONFIDENCE,
    Elements,
    as_divisor,
    percentiles,
    poisson_weights,
)
from pipeline.design.sampling import saltelli_group


@dataclass
class Blocks:
    """The evaluations of a Saltelli design as ``(base point, element)`` blocks."""

    a: np.ndarray
    b: np.ndarray
    ab: np.ndarray  # (parameter, base point, element)
    ba: np.ndarray | None  # the same, for second order

    @classmethod
    def of(cls, y: np.ndarray, parameters: int, second_order: bool) -> Blocks:
        """``y`` of shape ``(points, elements)``, in the design's order (groups of base points)."""
        group = saltelli_group(parameters, second_order)
        n = len(y) // group
        g = y[: n * group].reshape(n, group, -1)
        ba = g[:, 1 + parameters : 1 + 2 * parameters].transpose(1, 0, 2) if second_order else None
        return cls(g[:, 0], g[:, -1], g[:, 1 : 1 + parameters].transpose(1, 0, 2), ba)

    def complete(self) -> np.ndarray:
        """Base points all of whose evaluations are finite."""
        stacked = [self.a, self.b, *self.ab, *(self.ba if self.ba is not None else [])]
        return np.logical_and.reduce([np.isfinite(block).all(axis=-1) for block in stacked])

    def rows(self, keep: np.ndarray) -> Blocks:
        ba = self.ba[:, keep] if self.ba is not None else None
        return Blocks(self.a[keep], self.b[keep], self.ab[:, keep], ba)


@dataclass
class Moments:
    """The weighted means every estimator is made of: ``V`` ``(R, E)`` and the numerators of the first
    ``(R, P, E)``, total ``(R, P, E)`` and second-order ``(R, P, P, E)`` indices, per weight row ``R``."""

    var: np.ndarray
    first: np.ndarray
    total: np.ndarray
    second: np.ndarray | None

    def take(self, rows: slice) -> Moments:
        """The moments of weight rows ``rows``."""
        second = self.second[rows] if self.second is not None else None
        return Moments(self.var[rows], self.first[rows], self.total[rows], second)

    def indices(self) -> dict[str, np.ndarray]:
        """Per element: ``first``, ``total`` ``(R, P, E)``, ``second`` ``(R, P, P, E)``; NaN where ``V = 0``."""
        v = as_divisor(self.var)[:, None]
        out = {"first": self.first / v, "total": self.total / v}
        if self.second is not None:
            s = out["first"]
            out["second"] = _off_diagonal(self.second / v[:, None] - s[:, :, None] - s[:, None, :])
        return out

    def along(self, last: int) -> dict[str, np.ndarray]:
        """At each of the ``last`` entries of the last element dim, over the others (variance weights):
        ``first``, ``total`` ``(R, P, last)``, ``second`` ``(R, P, P, last)``."""
        r, p = self.first.shape[:2]
        var = as_divisor(self.var.reshape(r, -1, last).sum(axis=1))[:, None]  # (R, 1, last)
        first = self.first.reshape(r, p, -1, last).sum(axis=2) / var
        out = {"first": first, "total": self.total.reshape(r, p, -1, last).sum(axis=2) / var}
        if self.second is not None:
            pooled = self.second.reshape(r, p, p, -1, last).sum(axis=3) / var[:, None]
            out["second"] = _off_diagonal(pooled - first[:, :, None] - first[:, None, :])
        return out

    def aggregated(self) -> dict[str, np.ndarray]:
        """Over all elements with variance weights: ``first``, ``total`` ``(R, P)``, ``second`` ``(R, P, P)``."""
        return {kind: values[..., 0] for kind, values in self.along(1).items()}


def _off_diagonal(second: np.ndarray) -> np.ndarray:
    """Second-order indices ``(R, P, P, ...)`` with NaN on the diagonal (a parameter with itself is
    no interaction)."""
    p = second.shape[1]
    second[:, np.arange(p), np.arange(p)] = np.nan
    return second


@dataclass
class SaltelliSums:
    """The weighted sums over base points every estimator is made of, per weight row ``R``: each
    row's total weight ``w`` ``(R,)``, the sums of ``a``, ``b``, ``a^2``, ``b^2`` ``(R, E)``, of
    ``d_i = ab_i - a``, ``b d_i``, ``d_i^2`` ``(R, P, E)`` and, for second order, of ``a b``,
    ``ba_i`` and ``ba_i ab_j`` ``(R, P, P, E)``; values are of ``y - shift`` (``shift``: the first
    block's mean), so a variance is not the difference of two large numbers. Two blocks' sums add
    up (``+``, the other's moved to this shift: exact algebra), so a design is read a block of base
    points at a time."""

    w: np.ndarray
    a: np.ndarray
    b: np.ndarray
    aa: np.ndarray
    bb: np.ndarray
    d: np.ndarray
    bd: np.ndarray
    dd: np.ndarray
    ab: np.ndarray | None
    ba: np.ndarray | None
    x: np.ndarray | None
    shift: np.ndarray

    @classmethod
    def of(cls, blocks: Blocks, weights: np.ndarray, shift: np.ndarray | None = None) -> SaltelliSums:
        """The sums of ``blocks`` under ``weights`` ``(R, N)`` (ones: the estimate; counts: bootstrap
        resamples), of ``y - shift`` (default: the mean of these ``a`` and ``b``)."""
        if shift is None:
            empty = not len(blocks.a)
            shift = np.zeros(blocks.a.shape[1]) if empty else (blocks.a.mean(axis=0) + blocks.b.mean(axis=0)) / 2
        a, b = blocks.a - shift, blocks.b - shift
        d = blocks.ab - blocks.a  # (P, N, E): differences, free of the shift
        second = blocks.ba is not None
        ba = blocks.ba - shift if second else None
        return cls(
            weights.sum(axis=1),
            weights @ a,
            weights @ b,
            weights @ (a * a),
            weights @ (b * b),
            np.stack([weights @ di for di in d], axis=1),
            np.stack([weights @ (b * di) for di in d], axis=1),
            np.stack([weights @ (di * di) for di in d], axis=1),
            weights @ (a * b) if second else None,
            np.stack([weights @ bai for bai in ba], axis=1) if second else None,
            np.stack([np.stack([weights @ (bai * (a + dj)) for dj in d], axis=1) for bai in ba], axis=1)
            if second
            else None,
            shift,
        )

    def _moved(self, shift: np.ndarray) -> SaltelliSums:
        """The same sums of ``y - shift``: with ``y - old = v``, ``y - shift = v + t``, ``t = old - shift``."""
        t, w = self.shift - shift, self.w[:, None]
        second = self.ab is not None
        abj = self.a[:, None] + self.d  # sums of ab_j - old
        return SaltelliSums(
            self.w,
            self.a + t * w,
            self.b + t * w,
            self.aa + 2 * t * self.a + t * t * w,
            self.bb + 2 * t * self.b + t * t * w,
            self.d,
            self.bd + t * self.d,
            self.dd,
            self.ab + t * (self.a + self.b) + t * t * w if second else None,
            self.ba + t * w[:, None] if second else None,
            self.x + t * (self.ba[:, :, None] + abj[:, None]) + t * t * w[:, None, None] if second else None,
            shift,
        )

    def __add__(self, other: SaltelliSums) -> SaltelliSums:
        o = other._moved(self.shift)
        second = self.ab is not None
        return SaltelliSums(
            self.w + o.w,
            self.a + o.a,
            self.b + o.b,
            self.aa + o.aa,
            self.bb + o.bb,
            self.d + o.d,
            self.bd + o.bd,
            self.dd + o.dd,
            self.ab + o.ab if second else None,
            self.ba + o.ba if second else None,
            self.x + o.x if second else None,
            self.shift,
        )

    def moments(self) -> Moments:
        """The means of NOTE [Sobol' indices from a pick-freeze design], centring included."""
        w = self.w[:, None]
        mean_a, mean_b = self.a / w, self.b / w
        centre = (mean_a + mean_b) / 2
        var = (self.aa + self.bb) / (2 * w) - centre**2
        mean_d = self.d / w[:, None]
        first = self.bd / w[:, None] - centre[:, None] * mean_d
        total = self.dd / (2 * w[:, None])
        second = None
        if self.x is not None:
            base = self.ab / w - centre * (mean_a + mean_b)
            mean_ab = mean_a[:, None] + mean_d  # (R, P, E)
            mean_ba = self.ba / w[:, None]
            c = centre[:, None, None]
            second = self.x / w[:, None, None] - c * (mean_ba[:, :, None] + mean_ab[:, None]) - base[:, None, None]
        return Moments(var, first, total, second)


def _levels(n: int) -> list[int]:
    """Base points of the convergence table: ``N/8``, ``N/4``, ``N/2``, ``N`` (those of at least 2)."""
    return [n // d for d in (8, 4, 2, 1) if n // d >= 2]


@dataclass
class Streamed:
    """What one pass over a Saltelli design's base points gives: the sums (row 0 the estimate, then
    the bootstrap's resamples), which base points were complete, and the aggregated indices at each
    convergence level (design base points: the count used there, and the indices of every row)."""

    sums: SaltelliSums
    complete: np.ndarray
    levels: dict[int, tuple[int, dict[str, np.ndarray]]]


def saltelli_sums(
    ds: xr.Dataset, params: list[str], second_order: bool, seed: int = 0, block_values: int | None = None
) -> Streamed:
    """The design's :class:`SaltelliSums`, read a block of base points at a time (``block_values``
    values of y, default :data:`BLOCK_VALUES`; blocks end at the convergence levels). A base point
    any of whose evaluations is NaN or Inf is left out (module doc)."""
    el = Elements.of(ds["y"])
    group = saltelli_group(len(params), second_order)
    n = ds.sizes["point"] // group
    first = int(ds["point"].values[0]) // group if "point" in ds.coords and n else 0
    elements = int(np.prod(el.shape))
    step = max(1, min((block_values or BLOCK_VALUES) // (group * elements), BOOTSTRAP_BATCH_VALUES // (BOOTSTRAP + 1)))
    levels = _levels(n)
    edges = sorted({*range(0, n, step), *levels, n})
    complete = np.zeros(n, dtype=bool)
    sums, snapshots = None, {}
    for b0, b1 in itertools.pairwise(edges):
        y = el.array(ds["y"].isel(point=slice(b0 * group, b1 * group))).reshape((b1 - b0) * group, -1)
        blocks = Blocks.of(y, len(params), second_order)
        keep = complete[b0:b1] = blocks.complete()
        weights = np.vstack([np.ones((1, int(keep.sum()))), poisson_weights(seed, first + b0, b1 - b0)[:, keep]])
        found = SaltelliSums.of(blocks.rows(keep), weights, None if sums is None else sums.shift)
        sums = found if sums is None else sums + found
        if b1 in levels:
            snapshots[b1] = (int(complete[:b1].sum()), sums.moments().aggregated())
    if sums is None:  # no base point
        empty = Blocks.of(np.zeros((0, elements)), len(params), second_order)
        sums = SaltelliSums.of(empty, np.zeros((1 + BOOTSTRAP, 0)), np.zeros(elements))
    return Streamed(sums, complete, snapshots)


def sobol_indices(
    ds: xr.Dataset, params: list[str], second_order: bool, seed: int = 0, block_values: int | None = None
) -> tuple[xr.Dataset, np.ndarray]:
    """The variables of NOTE [Sobol' indices from a pick-freeze design] for a Saltelli dataset, and
    which base points were complete (all their evaluations finite)."""
    el = Elements.of(ds["y"])
    streamed = saltelli_sums(ds, params, second_order, seed, block_values)
    keep = streamed.complete
    every = streamed.sums.moments()
    estimate = every.take(slice(0, 1))
    resampled = every.take(slice(1, None)) if keep.sum() > 1 else estimate
    per_element, per_element_ci = estimate.indices(), {k: percentiles(v) for k, v in resampled.indices().items()}
    overall, overall_ci = estimate.aggregated(), {k: percentiles(v) for k, v in resampled.aggregated().items()}
    if el.along:  # at each entry of the last output dim (e.g. time), as the bounds are
        last = el.shape[-1]
        along, along_ci = estimate.along(last), {k: percentiles(v) for k, v in resampled.along(last).items()}
    shape = el.shape
    what = {"first": "first-order Sobol' index (Saltelli 2010)", "total": "total Sobol' index (Jansen)"}
    out: dict[str, tuple] = {}
    for kind, long_name in what.items():
        out[f"sobol_{kind}"] = (
            ["parameter", *el.order],
            per_element[kind][0].reshape(-1, *shape),
            {"long_name": long_name},
        )
        out[f"sobol_{kind}_interval"] = (
            ["interval", "parameter", *el.order],
            per_element_ci[kind].reshape(2, -1, *shape),
            {"long_name": f"{CONFIDENCE:.0%} bootstrap interval of sobol_{kind} (resampled base points)"},
        )
        if el.along:
            name = f"sobol_{kind}_per_{el.along[0]}"
            out[name] = (
                ["parameter", el.along[0]],
                along[kind][0],
                {"long_name": f"{long_name} at each {el.along[0]}, over the other element dims (variance weights)"},
            )
            out[f"{name}_interval"] = (
                ["interval", "parameter", el.along[0]],
                along_ci[kind],
                {"long_name": f"{CONFIDENCE:.0%} bootstrap interval of {name}"},
            )
        out[f"sobol_{kind}_aggregated"] = (
            ["parameter"],
            overall[kind][0],
            {"long_name": f"{long_name}, aggregated over samples and outputs (variance weights)"},
        )
        out[f"sobol_{kind}_aggregated_interval"] = (
            ["interval", "parameter"],
            overall_ci[kind],
            {"long_name": f"{CONFIDENCE:.0%} bootstrap interval of sobol_{kind}_aggregated"},
        )
    if second_order:
        out["sobol_second"] = (
            ["parameter", "parameter_2", *el.order],
            per_element["second"][0].reshape(len(params), len(params), *shape),
            {"long_name": "second-order Sobol' index (Saltelli 2002; NaN on the diagonal)"},
        )
        out["sobol_second_interval"] = (
            ["interval", "parameter", "parameter_2", *el.order],
            per_element_ci["second"].reshape(2, len(params), len(params), *shape),
            {"long_name": f"{CONFIDENCE:.0%} bootstrap interval of sobol_second (resampled base points)"},
        )
        out["sobol_second_aggregated"] = (
            ["parameter", "parameter_2"],
            overall["second"][0],
            {"long_name": "second-order Sobol' index (Saltelli 2002), aggregated (variance weights)"},
        )
        out["sobol_second_aggregated_interval"] = (
            ["interval", "parameter", "parameter_2"],
            overall_ci["second"],
            {"long_name": f"{CONFIDENCE:.0%} bootstrap interval of sobol_second_aggregated"},
        )
    out |= _convergence(streamed.levels)
    out["sobol_failed_base_points"] = (
        [],
        int((~keep).sum()),
        {"long_name": "base points left out because an evaluation was NaN or Inf", "units": "1"},
    )
    coords = {**el.coords, "interval": ["low", "high"], "parameter": params, "parameter_2": params}
    return xr.Dataset(out, coords=coords), keep


def _convergence(levels: dict[int, tuple[int, dict[str, np.ndarray]]]) -> dict[str, tuple]:
    """The aggregated indices and their intervals from the first N/8, N/4, N/2 and N base points
    (``levels``: :attr:`Streamed.levels`)."""
    rows: dict[str, list] = {"first": [], "total": [], "first_ci": [], "total_ci": []}
    for _used, found in levels.values():
        for kind in ("first", "total"):
            rows[kind].append(found[kind][0])
            rows[f"{kind}_ci"].append(percentiles(found[kind][1:]))
    used = [count for count, _ in levels.values()]
    out = {}
    for kind in ("first", "total"):
        out[f"sobol_{kind}_convergence"] = (
            ["base_points", "parameter"],
            np.array(rows[kind]).reshape(len(used), -1),
            {"long_name": f"sobol_{kind}_aggregated from the first base_points base points"},
        )
        out[f"sobol_{kind}_convergence_interval"] = (
            ["interval", "base_points", "parameter"],
            np.array(rows[f"{kind}_ci"]).reshape(len(used), 2, -1).transpose(1, 0, 2),
            {"long_name": f"{CONFIDENCE:.0%} bootstrap interval of sobol_{kind}_convergence"},
        )
    used_attrs = {"long_name": "base points used", "units": "1"}
    out["base_points"] = (["base_points"], np.array(used, dtype=np.int64), used_attrs)
    return out
