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

from dataclasses import dataclass

import numpy as np
import xarray as xr

from pipeline.design.resampling import BOOTSTRAP, CONFIDENCE, Elements, as_divisor, percentiles, poisson_weights
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


def moments(blocks: Blocks, weights: np.ndarray) -> Moments:
    """The means of NOTE [Sobol' indices from a pick-freeze design] under ``weights`` ``(R, N)``
    (ones: the estimate; counts: bootstrap resamples), centring included."""
    total_weight = weights.sum(axis=1, keepdims=True)

    def mean(values: np.ndarray) -> np.ndarray:
        return weights @ values / total_weight

    a, b = blocks.a, blocks.b
    centre = (mean(a) + mean(b)) / 2
    var = (mean(a * a) + mean(b * b)) / 2 - centre**2
    change = blocks.ab - a  # (P, N, E)
    first = np.stack([mean(b * d) - centre * mean(d) for d in change], axis=1)
    total = np.stack([mean(d * d) / 2 for d in change], axis=1)
    second = None
    if blocks.ba is not None:
        p = len(change)
        base = mean(a * b) - centre * mean(a + b)
        second = np.empty((len(weights), p, p, a.shape[1]))
        for i in range(p):
            for j in range(p):
                cross = blocks.ba[i] * blocks.ab[j]
                second[:, i, j] = mean(cross) - centre * mean(blocks.ba[i] + blocks.ab[j]) - base
    return Moments(var, first, total, second)


def _levels(n: int) -> list[int]:
    """Base points of the convergence table: ``N/8``, ``N/4``, ``N/2``, ``N`` (those of at least 2)."""
    return [n // d for d in (8, 4, 2, 1) if n // d >= 2]


def sobol_indices(
    ds: xr.Dataset, params: list[str], second_order: bool, seed: int = 0, complete: np.ndarray | None = None
) -> xr.Dataset:
    """The variables of NOTE [Sobol' indices from a pick-freeze design] for a Saltelli dataset;
    ``complete``: the base points to use, if the caller has found them (:meth:`Blocks.complete`)."""
    el = Elements.of(ds["y"])
    y = el.array(ds["y"]).reshape(ds.sizes["point"], -1)
    everything = Blocks.of(y, len(params), second_order)
    keep = everything.complete() if complete is None else complete
    blocks = everything.rows(keep)
    n = len(blocks.a)
    estimate = moments(blocks, np.ones((1, n)))
    weights = _base_point_weights(ds, len(y), len(everything.a), seed)[:, keep]
    resampled = moments(blocks, weights) if n > 1 else estimate
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
    out |= _convergence(blocks, weights)
    out["sobol_failed_base_points"] = (
        [],
        int((~keep).sum()),
        {"long_name": "base points left out because an evaluation was NaN or Inf", "units": "1"},
    )
    coords = {**el.coords, "interval": ["low", "high"], "parameter": params, "parameter_2": params}
    return xr.Dataset(out, coords=coords)


def _base_point_weights(ds: xr.Dataset, points: int, base_points: int, seed: int) -> np.ndarray:
    """The bootstrap's Poisson weights of each base point, by its index in the design (the same in
    any part of it): ``(resample, base point)``."""
    group = points // max(base_points, 1)
    first = int(ds["point"].values[0]) // group if "point" in ds.coords and points else 0
    return poisson_weights(seed, first, base_points, BOOTSTRAP)


def _convergence(blocks: Blocks, weights: np.ndarray) -> dict[str, tuple]:
    """The aggregated indices and their intervals from the first N/8, N/4, N/2 and N base points
    (``weights``: the bootstrap's weights of every base point)."""
    levels = _levels(len(blocks.a))
    rows: dict[str, list] = {"first": [], "total": [], "first_ci": [], "total_ci": []}
    for k in levels:
        head = Blocks(blocks.a[:k], blocks.b[:k], blocks.ab[:, :k], None)
        point = moments(head, np.ones((1, k))).aggregated()
        spread = moments(head, weights[:, :k]).aggregated()
        for kind in ("first", "total"):
            rows[kind].append(point[kind][0])
            rows[f"{kind}_ci"].append(percentiles(spread[kind]))
    out = {}
    for kind in ("first", "total"):
        out[f"sobol_{kind}_convergence"] = (
            ["base_points", "parameter"],
            np.array(rows[kind]).reshape(len(levels), -1),
            {"long_name": f"sobol_{kind}_aggregated from the first base_points base points"},
        )
        out[f"sobol_{kind}_convergence_interval"] = (
            ["interval", "base_points", "parameter"],
            np.array(rows[f"{kind}_ci"]).reshape(len(levels), 2, -1).transpose(1, 0, 2),
            {"long_name": f"{CONFIDENCE:.0%} bootstrap interval of sobol_{kind}_convergence"},
        )
    out["base_points"] = (["base_points"], np.array(levels), {"long_name": "base points used", "units": "1"})
    return out
