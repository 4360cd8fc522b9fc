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

import warnings

import numpy as np
import xarray as xr

from pipeline.dataset import derivative_name
from pipeline.design import Distribution, parse

BOOTSTRAP = 200
"""Resamples of the points for the intervals on the aggregated bounds."""

CONFIDENCE = 0.95

BOOTSTRAP_BATCH_VALUES = 2**24
"""Point counts held at once (128 MiB of float64): resamples are drawn in batches of this size."""


def stein_weight(dist: Distribution, v: np.ndarray) -> np.ndarray:
    """``k(v)`` of NOTE [Bounds from derivatives] for the variable of ``dist``."""
    var = dist.variable()
    if dist.kind in ("normal", "lognormal"):
        return np.full_like(v, dist.args[1] ** 2)
    if dist.kind in ("uniform", "loguniform"):
        low, high = var.support()
        return (v - low) * (high - v) / 2
    mean, std, _, high = dist.args  # truncated normal: sigma^2 (rho(v) - rho(b)) + (mu - m)(1 - F(v))
    rho = var.pdf(v)
    tail = std**2 * (rho - var.pdf(high)) + (mean - var.mean()) * var.sf(v)
    return np.where(rho > 0, tail / np.where(rho > 0, rho, 1), 0.0)


def _variable(ds: xr.Dataset, p: str, dist: Distribution) -> tuple[xr.DataArray, xr.DataArray]:
    """``v`` at each point and ``dy/dv``."""
    values = ds[p].astype("float64")
    dy = ds[derivative_name(p)].astype("float64")
    if dist.log:
        return np.log(values), dy * values
    return values, dy


def design_bounds(ds: xr.Dataset, params: list[str], rng_seed: int = 0) -> dict[str, tuple[xr.DataArray, str, dict]]:
    """The variables of NOTE [Bounds from derivatives]: ``{name: (data, long_name, attrs)}``."""
    y = ds["y"].astype("float64")
    element_dims = [d for d in y.dims if d != "point"]
    D = y.var("point", ddof=1)
    total_D = D.sum(element_dims)
    out: dict[str, tuple[xr.DataArray, str, dict]] = {
        "y_var": (D, "D: variance of y over the design's points", {}),
    }
    dists = {p: parse(ds.attrs[f"distribution_{p}"]) for p in params if f"distribution_{p}" in ds.attrs}
    gradients = {}
    weights: dict[str, tuple[xr.DataArray, np.ndarray, float, float]] = {}
    for p in params:
        dist = dists.get(p)
        if dist is None:
            continue
        v, dv = _variable(ds, p, dist)
        gradients[p] = dv
        nu = (dv**2).mean("point")
        constant = dist.poincare_constant()
        var_v = float(dist.variable().var())
        cov = (dv * xr.DataArray(stein_weight(dist, v.values), dims=v.dims, coords=v.coords)).mean("point")
        wrt = f"ln {p}" if dist.log else p
        out[f"dgsm_{p}"] = (nu, f"DGSM nu: mean over the points of (dy/d{wrt})^2", {"distribution": str(dist)})
        out[f"sobol_total_upper_{p}"] = (
            constant * nu / D.where(D > 0),
            f"upper bound on the total Sobol' index of {p}: C nu / D (C = {constant:.6g}, Poincare constant)",
            {"poincare_constant": constant},
        )
        out[f"sobol_first_lower_{p}"] = (
            cov**2 / (var_v * D.where(D > 0)),
            f"lower bound on the first-order Sobol' index of {p}: E[dy/d{wrt} k]^2 / (Var {wrt} D)",
            {},
        )
        out[f"mu_star_{p}"] = (abs(dv).mean("point"), f"mean over the points of |dy/d{wrt}|", {})
        upper_agg = constant * float(nu.sum(element_dims)) / float(total_D)
        lower_agg = float((cov**2).sum(element_dims)) / (var_v * float(total_D))
        out[f"sobol_total_upper_{p}_aggregated"] = (
            xr.DataArray(upper_agg),
            f"upper bound on the total index of {p}, aggregated over samples and outputs (variance weights)",
            {"confidence": CONFIDENCE},
        )
        out[f"sobol_first_lower_{p}_aggregated"] = (
            xr.DataArray(lower_agg),
            f"lower bound on the first-order index of {p}, aggregated over samples and outputs",
            {"confidence": CONFIDENCE},
        )
        weights[p] = (dv, stein_weight(dist, v.values), constant, var_v)
    along = [d for d in element_dims if d != "sample"][-1:]
    for p, intervals in _bootstrap(y, weights, rng_seed).items():
        for kind, name in (("upper", f"sobol_total_upper_{p}"), ("lower", f"sobol_first_lower_{p}")):
            low, high = intervals[kind]["aggregated"]
            out[f"{name}_aggregated"][2].update(ci_low=low, ci_high=high)
            out[f"{name}_interval"] = (
                intervals[kind]["element"],
                f"{CONFIDENCE:.0%} bootstrap interval of {name} (resampled points)",
                {},
            )
            if along:
                other = [d for d in element_dims if d != along[0]]
                out[f"{name}_per_{along[0]}"] = (
                    (out[name][0] * D).sum(other) / D.sum(other).where(lambda w: w > 0),
                    f"{name} at each {along[0]}, aggregated over {', '.join(other)} with variance weights",
                    {},
                )
                out[f"{name}_per_{along[0]}_interval"] = (
                    intervals[kind]["along"],
                    f"{CONFIDENCE:.0%} bootstrap interval of {name}_per_{along[0]}",
                    {},
                )
    if len(gradients) > 1:
        names = list(gradients)
        stacked = xr.concat([gradients[p] for p in names], dim="parameter").assign_coords(parameter=names)
        outer = (stacked * stacked.rename(parameter="parameter_2").assign_coords(parameter_2=names)).mean("point")
        matrix = outer.sum(element_dims)
        eigenvalues = np.linalg.eigvalsh(matrix.values)[::-1]
        out["gradient_outer_product"] = (
            matrix,
            "E[grad y grad y^T] summed over samples and outputs (derivatives in each parameter's variable)",
            {},
        )
        out["active_eigenvalues"] = (
            xr.DataArray(eigenvalues, dims="direction"),
            "eigenvalues of gradient_outer_product, largest first (active directions)",
            {},
        )
    return out


def _percentiles(values: np.ndarray) -> np.ndarray:
    """The :data:`CONFIDENCE` percentile interval along the first axis (resamples), NaN where none is finite."""
    tail = (1 - CONFIDENCE) / 2 * 100
    values = np.where(np.isfinite(values), values, np.nan)
    with warnings.catch_warnings():  # all-NaN slices (D = 0) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(values, [tail, 100 - tail], axis=0)


def _bootstrap(
    y: xr.DataArray, weights: dict[str, tuple[xr.DataArray, np.ndarray, float, float]], seed: int
) -> dict[str, dict[str, dict[str, xr.DataArray | tuple[float, float]]]]:
    """Percentile intervals of every parameter's upper and lower bounds, per element, along the
    last output dim (aggregated over the others) and aggregated over all, from the same
    :data:`BOOTSTRAP` resamples of the points.

    A resample is its count of each point, so every mean over it is a matrix product (counts @
    values / n): no resampled copies of the data. Elements are taken in slabs of whole rows of the
    last dim, so that the resampled values held at once stay under :data:`BOOTSTRAP_BATCH_VALUES`.
    """
    element_dims = [d for d in y.dims if d != "point"]
    along = [d for d in element_dims if d != "sample"][-1:]
    y = y.transpose("point", *[d for d in element_dims if d not in along], *along)
    n = y.sizes["point"]
    last = y.sizes[along[0]] if along else 1
    yv = y.values.reshape(n, -1, last)
    rows = yv.shape[1]
    grads = {p: dv.transpose(*y.dims).values.reshape(n, rows, last) for p, (dv, *_) in weights.items()}
    stein = {p: k.reshape(n, 1, 1) for p, (_, k, _, _) in weights.items()}
    held = BOOTSTRAP * last * (1 + 2 * len(weights))
    slab = max(1, BOOTSTRAP_BATCH_VALUES // held)
    per_batch = max(1, BOOTSTRAP_BATCH_VALUES // n)  # resamples whose counts fit in 128 MiB
    upper = {p: np.empty((2, rows, last)) for p in weights}
    lower = {p: np.empty((2, rows, last)) for p in weights}
    D_along = np.zeros((BOOTSTRAP, last))
    nu_along = {p: np.zeros((BOOTSTRAP, last)) for p in weights}
    cov2_along = {p: np.zeros((BOOTSTRAP, last)) for p in weights}
    for r0 in range(0, rows, slab):
        r1 = min(rows, r0 + slab)
        rng = np.random.default_rng(seed)  # the same resamples for every slab
        D = np.empty((BOOTSTRAP, r1 - r0, last))
        nu = {p: np.empty_like(D) for p in weights}
        cov2 = {p: np.empty_like(D) for p in weights}
        Y = yv[:, r0:r1].reshape(n, -1)
        for start in range(0, BOOTSTRAP, per_batch):
            stop = min(BOOTSTRAP, start + per_batch)
            draws = rng.integers(0, n, (stop - start, n))
            counts = np.stack([np.bincount(row, minlength=n) for row in draws]).astype(np.float64) / n
            D[start:stop] = ((counts @ Y**2 - (counts @ Y) ** 2) * n / (n - 1)).reshape(-1, r1 - r0, last)
            for p in weights:
                G = grads[p][:, r0:r1]
                nu[p][start:stop] = (counts @ (G**2).reshape(n, -1)).reshape(-1, r1 - r0, last)
                cov2[p][start:stop] = ((counts @ (G * stein[p]).reshape(n, -1)) ** 2).reshape(-1, r1 - r0, last)
        D_along += D.sum(axis=1)
        positive = np.where(D > 0, D, np.nan)
        for p, (_, _, constant, var_v) in weights.items():
            nu_along[p] += nu[p].sum(axis=1)
            cov2_along[p] += cov2[p].sum(axis=1)
            upper[p][:, r0:r1] = _percentiles(constant * nu[p] / positive)
            lower[p][:, r0:r1] = _percentiles(cov2[p] / (var_v * positive))

    def element(values: np.ndarray) -> xr.DataArray:
        other = [d for d in y.dims[1:] if d not in along]
        shape = [2, *(y.sizes[d] for d in other), *([last] if along else [])]
        coords = {d: y[d] for d in y.dims[1:] if d in y.coords}
        return xr.DataArray(
            values.reshape(shape), dims=["interval", *other, *along], coords={"interval": ["low", "high"], **coords}
        )

    def per_along(values: np.ndarray) -> xr.DataArray | None:
        if not along:
            return None
        coords = {"interval": ["low", "high"], **({along[0]: y[along[0]]} if along[0] in y.coords else {})}
        return xr.DataArray(values, dims=["interval", along[0]], coords=coords)

    def aggregated(values: np.ndarray) -> tuple[float, float]:
        low, high = _percentiles(values)
        return float(low), float(high)

    total = np.where(D_along.sum(axis=1) > 0, D_along.sum(axis=1), np.nan)
    D_positive = np.where(D_along > 0, D_along, np.nan)
    out = {}
    for p, (_, _, constant, var_v) in weights.items():
        out[p] = {
            "upper": {
                "element": element(upper[p]),
                "along": per_along(_percentiles(constant * nu_along[p] / D_positive)),
                "aggregated": aggregated(constant * nu_along[p].sum(axis=1) / total),
            },
            "lower": {
                "element": element(lower[p]),
                "along": per_along(_percentiles(cov2_along[p] / (var_v * D_positive))),
                "aggregated": aggregated(cov2_along[p].sum(axis=1) / (var_v * total)),
            },
        }
    return out
