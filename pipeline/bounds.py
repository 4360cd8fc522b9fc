"""Derivative-based bounds on Sobol' indices from a sampled design (DGSM; Sobol' & Kucherenko 2009).

# NOTE [Bounds from derivatives]
For a parameter ``p`` with distribution ``mu`` (``v = p``, or ``v = ln p`` for log distributions,
whose derivative is ``p dy/dp``), over the design's points, per sample and output element:

- ``nu_p = E[(dy/dv)^2]`` (the DGSM) and ``D = Var y``;
- total index ``S_T,p <= C_p nu_p / D`` with ``C_p`` the Poincaré constant of ``mu``
  (:meth:`pipeline.design.Distribution.poincare_constant`; Lamboni, Iooss, Popelin & Gamboa 2013);
- first-order index ``S_p >= Cov(y, v)^2 / (Var v D)``: the first-order index is the largest squared
  correlation of ``y`` with any function of ``p``, ``v`` itself among them; by Stein's identity
  ``Cov(y, v) = E[dy/dv k(v)]`` with ``k(v) = int_v^inf (t - E v) rho(t) dt / rho(v)`` (uniform on
  [a, b]: ``(v - a)(b - v) / 2``; normal: ``sigma^2``), which is what makes it derivative-based;
- aggregated over samples and output elements with variance weights (as OpenTURNS aggregates
  Sobol' indices): ``C_p sum nu / sum D`` and ``sum Cov^2 / (Var v sum D)``;
- bootstrap intervals (resampling the points) on the bounds of each element, on those aggregated
  over all but the last output dim (e.g. at each time) and on those aggregated over all;
- ``mu_star_p = E|dy/dv|``, and the P x P matrix ``E[grad y grad y^T]`` (aggregated) with its
  eigenvalues: the directions in parameter space along which y varies most (active subspaces).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from pipeline.design import Distribution, parse
from pipeline.schema import derivative_name

BOOTSTRAP = 200
"""Resamples of the points for the intervals on the aggregated bounds."""

CONFIDENCE = 0.95

BOOTSTRAP_BATCH_VALUES = 2**24
"""Point counts held at once (128 MiB of float64): resamples are drawn in batches of this size."""


def stein_weight(dist: Distribution, v: np.ndarray) -> np.ndarray:
    """``k(v)`` of NOTE [Bounds from derivatives] for the variable of ``dist``."""
    if dist.kind in ("normal", "lognormal"):
        return np.full_like(v, dist.args[1] ** 2)
    if dist.kind in ("uniform", "loguniform"):
        low, high = dist.support()
        return (v - low) * (high - v) / 2
    mean, std, _, high = dist.args  # truncated normal: sigma^2 (rho(v) - rho(b)) + (mu - m)(1 - F(v))
    var = dist.variable()
    rho = var.pdf(v)
    tail = std**2 * (rho - var.pdf(high)) + (mean - var.mean()) * var.sf(v)
    return np.where(rho > 0, tail / np.where(rho > 0, rho, 1), 0.0)


@dataclass
class _Elements:
    """A design's values as ``(point, rows, last)`` arrays: ``last`` is the last output dim (e.g.
    time), ``rows`` every other element dim (samples first); ``wrap`` gives results their dims back
    (by copying a template: far cheaper than building each DataArray's coords anew)."""

    dims: list[str]  # element dims, in the arrays' order
    along: list[str]  # [the last output dim], or [] when y has samples only
    templates: dict[tuple[bool, bool], xr.DataArray]  # (with interval, along only) -> empty result

    @classmethod
    def of(cls, y: xr.DataArray) -> _Elements:
        dims = [d for d in y.dims if d != "point"]
        along = [d for d in dims if d != "sample"][-1:]
        order = [*[d for d in dims if d not in along], *along]
        one = y.isel(point=0, drop=True).transpose(*order)
        interval = {"interval": ["low", "high"]}
        element = xr.DataArray(np.empty(one.shape), dims=order, coords=one.coords)
        templates = {
            (False, False): element,
            (True, False): element.expand_dims(interval).copy(),
        }
        if along:
            per = element.isel({d: 0 for d in order if d not in along}, drop=True)
            templates.update({(False, True): per, (True, True): per.expand_dims(interval).copy()})
        return cls(order, along, templates)

    def array(self, da: xr.DataArray) -> np.ndarray:
        order = [da.get_axis_num(d) for d in ("point", *self.dims)]
        values = np.transpose(da.values, order).astype(np.float64, copy=False)
        last = self.templates[False, False].sizes[self.along[0]] if self.along else 1
        return values.reshape(len(values), -1, last)

    def wrap(self, values: np.ndarray, interval: bool = False, along: bool = False) -> xr.DataArray:
        """``values`` of shape ``([2,] rows, last)`` (or ``([2,] last)`` ``along``) with their dims."""
        template = self.templates[interval, along]
        return template.copy(data=np.reshape(values, template.shape), deep=False)


def design_bounds(ds: xr.Dataset, params: list[str], rng_seed: int = 0) -> dict[str, tuple[xr.DataArray, str, dict]]:
    """The variables of NOTE [Bounds from derivatives]: ``{name: (data, long_name, attrs)}``.

    Computed on plain arrays of ``(point, rows, last)``; results get their dims back at the end.
    """
    el = _Elements.of(ds["y"])
    Y = el.array(ds["y"])
    n = len(Y)
    D = Y.var(axis=0, ddof=1)
    positive, D_along = _positive(D), _positive(D.sum(axis=0))  # per element; per entry of the last dim
    total_D = float(D.sum())
    out: dict[str, tuple[xr.DataArray, str, dict]] = {
        "y_var": (el.wrap(D), "D: variance of y over the design's points", {}),
    }
    dists = {p: parse(ds.attrs[f"distribution_{p}"]) for p in params if f"distribution_{p}" in ds.attrs}
    gradients: dict[str, np.ndarray] = {}
    weights: dict[str, tuple[np.ndarray, np.ndarray, float, float]] = {}
    for p, dist in dists.items():
        values = ds[p].values.astype(np.float64).reshape(n)
        dv = el.array(ds[derivative_name(p)])
        v = values
        if dist.log:  # the variable is ln p; dy/d(ln p) = p dy/dp
            v, dv = np.log(values), dv * values[:, None, None]
        gradients[p] = dv
        k = stein_weight(dist, v)
        nu = np.einsum("nre,nre->re", dv, dv) / n
        cov = np.einsum("nre,n->re", dv, k) / n
        constant, var_v = dist.poincare_constant(), dist.variance()
        wrt = f"ln {p}" if dist.log else p
        out[f"dgsm_{p}"] = (el.wrap(nu), f"DGSM nu: mean over the points of (dy/d{wrt})^2", {"distribution": str(dist)})
        out[f"sobol_total_upper_{p}"] = (
            el.wrap(constant * nu / positive),
            f"upper bound on the total Sobol' index of {p}: C nu / D (C = {constant:.6g}, Poincare constant)",
            {"poincare_constant": constant},
        )
        out[f"sobol_first_lower_{p}"] = (
            el.wrap(cov**2 / (var_v * positive)),
            f"lower bound on the first-order Sobol' index of {p}: E[dy/d{wrt} k]^2 / (Var {wrt} D)",
            {},
        )
        out[f"mu_star_{p}"] = (el.wrap(np.abs(dv).mean(axis=0)), f"mean over the points of |dy/d{wrt}|", {})
        for name, total, what in (
            (f"sobol_total_upper_{p}", constant * nu, "upper bound on the total index"),
            (f"sobol_first_lower_{p}", cov**2 / var_v, "lower bound on the first-order index"),
        ):
            out[f"{name}_aggregated"] = (
                xr.DataArray(float(total.sum()) / total_D),
                f"{what} of {p}, aggregated over samples and outputs (variance weights)",
                {"confidence": CONFIDENCE},
            )
            if el.along:  # at each entry of the last output dim, weighted over the others: sum / sum D
                out[f"{name}_per_{el.along[0]}"] = (
                    el.wrap(total.sum(axis=0) / D_along, along=True),
                    f"{name} at each {el.along[0]}, aggregated over the other element dims with variance weights",
                    {},
                )
        weights[p] = (dv, k, constant, var_v)
    for p, intervals in _bootstrap(Y, weights, rng_seed).items():
        for kind, name in (("upper", f"sobol_total_upper_{p}"), ("lower", f"sobol_first_lower_{p}")):
            element, along, (low, high) = intervals[kind]
            out[f"{name}_aggregated"][2].update(ci_low=low, ci_high=high)
            out[f"{name}_interval"] = (
                el.wrap(element, interval=True),
                f"{CONFIDENCE:.0%} bootstrap interval of {name} (resampled points)",
                {},
            )
            if el.along:
                out[f"{name}_per_{el.along[0]}_interval"] = (
                    el.wrap(along, interval=True, along=True),
                    f"{CONFIDENCE:.0%} bootstrap interval of {name}_per_{el.along[0]}",
                    {},
                )
    if len(gradients) > 1:
        names = list(gradients)
        G = np.stack([gradients[p].reshape(n, -1) for p in names], axis=-1)  # (point, element, parameter)
        matrix = np.einsum("nep,neq->pq", G, G) / n
        out["gradient_outer_product"] = (
            xr.DataArray(matrix, dims=["parameter", "parameter_2"], coords={"parameter": names, "parameter_2": names}),
            "E[grad y grad y^T] summed over samples and outputs (derivatives in each parameter's variable)",
            {},
        )
        out["active_eigenvalues"] = (
            xr.DataArray(np.linalg.eigvalsh(matrix)[::-1], dims="direction"),
            "eigenvalues of gradient_outer_product, largest first (active directions)",
            {},
        )
    return out


def _positive(variance: np.ndarray) -> np.ndarray:
    """``variance`` as a divisor: NaN where it is 0 (y does not vary there, so no bound is defined)."""
    return np.where(variance > 0, variance, np.nan)


def _percentiles(values: np.ndarray) -> np.ndarray:
    """The :data:`CONFIDENCE` percentile interval along the first axis (resamples); NaN where a
    resample's bound is undefined (D = 0: y does not vary over those points)."""
    tail = (1 - CONFIDENCE) / 2 * 100
    return np.percentile(np.where(np.isfinite(values), values, np.nan), [tail, 100 - tail], axis=0)


def _resample_counts(rng: np.random.Generator, resamples: int, n: int) -> np.ndarray:
    """Each resample's count of each of the ``n`` points, divided by ``n``: ``(resamples, n)``."""
    counts = np.empty((resamples, n))
    for row, draw in zip(counts, rng.integers(0, n, (resamples, n), dtype=np.int32), strict=True):  # 32 bits: faster
        row[:] = np.bincount(draw, minlength=n)  # one row at a time: its n counts stay in cache
    counts /= n
    return counts


def _bootstrap(
    Y: np.ndarray, weights: dict[str, tuple[np.ndarray, np.ndarray, float, float]], seed: int
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, tuple[float, float]]]]:
    """Percentile intervals of every parameter's upper and lower bounds: per element ``(2, rows,
    last)``, along the last dim aggregated over rows ``(2, last)``, and aggregated over all, from
    the same :data:`BOOTSTRAP` resamples of the points.

    A resample is its count of each point, so every mean over it is a product with the counts:
    the columns every bound needs (y, y^2, and per parameter (dy/dv)^2 and k dy/dv) are stacked
    and multiplied at once, no resampled copies made. Rows are taken in slabs so that the values
    held at once stay under :data:`BOOTSTRAP_BATCH_VALUES`.
    """
    n, rows, last = Y.shape
    names = list(weights)
    columns = 2 + 2 * len(names)  # y, y^2, then (dy/dv)^2 and k dy/dv of each parameter
    slab = max(1, BOOTSTRAP_BATCH_VALUES // (max(BOOTSTRAP, n) * last * columns))
    per_batch = max(1, BOOTSTRAP_BATCH_VALUES // n)  # resamples whose counts fit in 128 MiB
    upper = {p: np.empty((2, rows, last)) for p in names}
    lower = {p: np.empty((2, rows, last)) for p in names}
    sums = np.zeros((columns, BOOTSTRAP, last))  # D, nu and Cov^2 summed over rows: slots 0, 2.., 3..
    for r0 in range(0, rows, slab):
        r1 = min(rows, r0 + slab)
        values = [Y[:, r0:r1], Y[:, r0:r1] ** 2]
        for p in names:
            dv, k, _, _ = weights[p]
            values += [dv[:, r0:r1] ** 2, dv[:, r0:r1] * k[:, None, None]]
        stacked = np.stack(values, axis=1).reshape(n, -1)  # (point, column x rows x last)
        means = np.empty((BOOTSTRAP, columns, r1 - r0, last))
        rng = np.random.default_rng(seed)  # the same resamples for every slab
        for start in range(0, BOOTSTRAP, per_batch):
            stop = min(BOOTSTRAP, start + per_batch)
            means[start:stop] = (_resample_counts(rng, stop - start, n) @ stacked).reshape(
                stop - start, columns, r1 - r0, last
            )
        D = (means[:, 1] - means[:, 0] ** 2) * n / (n - 1)
        positive = _positive(D)
        sums[0] += D.sum(axis=1)
        for i, p in enumerate(names):
            _, _, constant, var_v = weights[p]
            nu, cov2 = means[:, 2 + 2 * i], means[:, 3 + 2 * i] ** 2
            sums[2 + 2 * i] += nu.sum(axis=1)
            sums[3 + 2 * i] += cov2.sum(axis=1)
            upper[p][:, r0:r1] = _percentiles(constant * nu / positive)
            lower[p][:, r0:r1] = _percentiles(cov2 / (var_v * positive))
    D_along, total = _positive(sums[0]), _positive(sums[0].sum(axis=1))

    def both(values: np.ndarray) -> tuple[float, float]:
        low, high = _percentiles(values)
        return float(low), float(high)

    out = {}
    for i, p in enumerate(names):
        _, _, constant, var_v = weights[p]
        nu, cov2 = sums[2 + 2 * i], sums[3 + 2 * i]
        out[p] = {
            "upper": (upper[p], _percentiles(constant * nu / D_along), both(constant * nu.sum(axis=1) / total)),
            "lower": (lower[p], _percentiles(cov2 / (var_v * D_along)), both(cov2.sum(axis=1) / (var_v * total))),
        }
    return out
