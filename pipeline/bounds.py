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
- bootstrap intervals (resampling the points) on the aggregated bounds;
- ``mu_star_p = E|dy/dv|``, and the P x P matrix ``E[grad y grad y^T]`` (aggregated) with its
  eigenvalues: the directions in parameter space along which y varies most (active subspaces).
"""

from __future__ import annotations

import math

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
    for p, ((upper_low, upper_high), (lower_low, lower_high)) in _bootstrap(y, weights, rng_seed).items():
        out[f"sobol_total_upper_{p}_aggregated"][2].update(ci_low=upper_low, ci_high=upper_high)
        out[f"sobol_first_lower_{p}_aggregated"][2].update(ci_low=lower_low, ci_high=lower_high)
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


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    finite = values[np.isfinite(values)]
    if not finite.size:
        return math.nan, math.nan
    return float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))


def _bootstrap(
    y: xr.DataArray, weights: dict[str, tuple[xr.DataArray, np.ndarray, float, float]], seed: int
) -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
    """Percentile intervals of every parameter's aggregated upper and lower bounds, from the same
    :data:`BOOTSTRAP` resamples of the points. A resample is its count of each point, so every
    mean over it is a matrix product (counts @ values / n): no resampled copies of the data."""
    axis = y.get_axis_num("point")
    n = y.sizes["point"]
    yv = np.moveaxis(y.values, axis, 0).reshape(n, -1)
    rng = np.random.default_rng(seed)
    per_batch = max(1, BOOTSTRAP_BATCH_VALUES // n)  # resamples whose counts fit in 128 MiB
    grads = {p: np.moveaxis(dv.transpose(*y.dims).values, axis, 0).reshape(n, -1) for p, (dv, *_) in weights.items()}
    D, nu, cov2 = [], {p: [] for p in weights}, {p: [] for p in weights}
    for start in range(0, BOOTSTRAP, per_batch):
        draws = rng.integers(0, n, (min(per_batch, BOOTSTRAP - start), n))
        counts = np.stack([np.bincount(row, minlength=n) for row in draws]).astype(np.float64) / n
        D.append(((counts @ yv**2 - (counts @ yv) ** 2) * n / (n - 1)).sum(axis=-1))
        for p, (_, k, _, _) in weights.items():
            nu[p].append((counts @ grads[p] ** 2).sum(axis=-1))
            cov2[p].append(((counts @ (grads[p] * k[:, None])) ** 2).sum(axis=-1))
    total = np.concatenate(D)
    total = np.where(total > 0, total, np.nan)
    return {
        p: (
            _percentiles(constant * np.concatenate(nu[p]) / total),
            _percentiles(np.concatenate(cov2[p]) / (var_v * total)),
        )
        for p, (_, _, constant, var_v) in weights.items()
    }
