"""Derivative-based bounds on Sobol' indices from a sampled design (DGSM; Sobol' & Kucherenko 2009).

# NOTE [Bounds from derivatives]
For a parameter ``p`` with distribution ``mu`` (``v = p``, or ``v = ln p`` for log distributions,
whose derivative is ``p dy/dp``), over the design's points, per sample and output element:

- ``nu_p = E[(dy/dv)^2]`` (the DGSM) and ``D = Var y``;
- total index ``S_T,p <= C_p nu_p / D`` with ``C_p`` the Poincaré constant of ``mu``
  (:meth:`pipeline.design.distributions.Distribution.poincare_constant`; Lamboni, Iooss, Popelin & Gamboa 2013);
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

import itertools

import numpy as np
import xarray as xr

from pipeline.design.distributions import Distribution, parse
from pipeline.design.resampling import (
    BLOCK_VALUES,
    BOOTSTRAP_BATCH_VALUES,
    CONFIDENCE,
    Elements,
    as_divisor,
    percentiles,
)
from pipeline.design.sums import DesignSums, Parameter, outer_bucket
from pipeline.storage.names import derivative_name


def _parameter_bounds(el: Elements, p: str, dist: Distribution, sums: Parameter, D: np.ndarray) -> dict[str, tuple]:
    """The DGSM, the bounds, mu* and sigma of one parameter from its sums over the points."""
    n = sums.dv.n
    positive, D_along, total_D = as_divisor(D), as_divisor(D.sum(axis=0)), float(D.sum())
    nu, cov, mean_abs = sums.dv2 / n, sums.kdv / n, sums.adv / n
    constant, var_v = dist.poincare_constant(), dist.variance()
    wrt = f"ln {p}" if dist.log else p
    out = {
        f"dgsm_{p}": el.var(nu, f"DGSM nu: mean over the points of (dy/d{wrt})^2", distribution=str(dist)),
        f"sobol_total_upper_{p}": el.var(
            constant * nu / positive,
            f"upper bound on the total Sobol' index of {p}: C nu / D (C = {constant:.6g}, Poincare constant)",
            poincare_constant=constant,
        ),
        f"sobol_first_lower_{p}": el.var(
            cov**2 / (var_v * positive),
            f"lower bound on the first-order Sobol' index of {p}: E[dy/d{wrt} k]^2 / (Var {wrt} D)",
        ),
        f"mu_star_{p}": el.var(mean_abs, f"mean over the points of |dy/d{wrt}|"),
        f"mu_star_scaled_{p}": el.var(
            mean_abs * var_v**0.5,
            f"mean over the points of |dy/d{wrt}| times the standard deviation of {wrt} (comparable across parameters)",
        ),
        f"sigma_{p}": el.var(
            np.sqrt(sums.dv.var()),
            f"standard deviation over the points of dy/d{wrt} (Morris' sigma, from exact gradients)",
        ),
    }
    for name, total, what in (
        (f"sobol_total_upper_{p}", constant * nu, "upper bound on the total index"),
        (f"sobol_first_lower_{p}", cov**2 / var_v, "lower bound on the first-order index"),
    ):
        out[f"{name}_aggregated"] = (
            [],
            float(total.sum()) / total_D,
            {
                "long_name": f"{what} of {p}, aggregated over samples and outputs (variance weights)",
                "confidence": CONFIDENCE,
            },
        )
        if el.along:  # at each entry of the last output dim, weighted over the others: sum / sum D
            out[f"{name}_per_{el.along[0]}"] = el.var(
                total.sum(axis=0) / D_along,
                f"{name} at each {el.along[0]}, aggregated over the other element dims with variance weights",
                along=True,
            )
    return out


def _with_intervals(out: dict[str, tuple], el: Elements, intervals: dict[str, dict]) -> None:
    """The bootstrap intervals of every bound, beside it in ``out``."""
    for p, found in intervals.items():
        for kind, name in (("upper", f"sobol_total_upper_{p}"), ("lower", f"sobol_first_lower_{p}")):
            element, along, (low, high) = found[kind]
            out[f"{name}_aggregated"][2].update(ci_low=low, ci_high=high)
            out[f"{name}_interval"] = el.var(
                element, f"{CONFIDENCE:.0%} bootstrap interval of {name} (resampled points)", interval=True
            )
            if el.along:
                out[f"{name}_per_{el.along[0]}_interval"] = el.var(
                    along, f"{CONFIDENCE:.0%} bootstrap interval of {name}_per_{el.along[0]}", interval=True, along=True
                )


MAX_SUBSPACE_DIMENSION = 10
"""Active subspaces whose bootstrap distance is given: dimensions 1 to this (each costs a 2-norm of a
P x P matrix per resample; a subspace of more dimensions than this reduces little)."""


def _gradient_outer_product(sums: DesignSums, names: list[str]) -> dict[str, tuple]:
    """E[grad y grad y^T] over the points, summed over elements, its eigenvalues and eigenvectors
    (active directions), activity scores, and their bootstrap: intervals on the eigenvalues and how
    far the resampled active subspaces of each dimension lie from the estimated one."""
    matrix = sums.outer / sums.y.n
    eigenvalues, eigenvectors = _eigen(matrix)
    # a resample that weighs no point (a tiny design) is left out
    resampled = sums.outer_boot[sums.outer_total > 0] / sums.outer_total[sums.outer_total > 0, None, None]
    values, vectors = np.linalg.eigh(resampled)
    values, vectors = values[:, ::-1], vectors[:, :, ::-1]
    dims = np.arange(1, min(len(names), MAX_SUBSPACE_DIMENSION + 1))
    distance = np.empty((len(resampled), len(dims)))
    for i, r in enumerate(dims):
        resampled_projector = vectors[:, :, :r] @ vectors[:, :, :r].transpose(0, 2, 1)
        distance[:, i] = np.linalg.norm(resampled_projector - _projector(eigenvectors, r), 2, axis=(1, 2))
    return {
        "gradient_outer_product": (
            ["parameter", "parameter_2"],
            matrix,
            {
                "long_name": "E[grad y grad y^T] summed over samples and outputs "
                "(derivatives in each parameter's variable)"
            },
        ),
        "active_eigenvalues": (
            ["direction"],
            eigenvalues,
            {"long_name": "eigenvalues of gradient_outer_product, largest first (active directions)"},
        ),
        "active_eigenvalues_interval": (
            ["interval", "direction"],
            percentiles(values),
            {"long_name": f"{CONFIDENCE:.0%} bootstrap interval of active_eigenvalues (resampled points)"},
        ),
        "active_eigenvectors": (
            ["parameter", "direction"],
            eigenvectors,
            {
                "long_name": "eigenvectors of gradient_outer_product (columns, largest eigenvalue first; "
                "sign: largest component positive)"
            },
        ),
        "active_subspace_distance": (
            ["subspace_dimension"],
            np.percentile(distance, 100 * CONFIDENCE, axis=0) if len(dims) else np.zeros(0),
            {
                "long_name": f"{CONFIDENCE:.0%} percentile over bootstrap resamples of the distance (2-norm of the "
                "projectors' difference, 0 to 1) between the estimated and the resampled active subspace of "
                f"each dimension (up to {MAX_SUBSPACE_DIMENSION}): small means that subspace is well determined"
            },
        ),
        "subspace_dimension": (["subspace_dimension"], dims, {"long_name": "active subspace dimension"}),
        "activity_scores": (
            ["parameter"],
            eigenvalues[0] * eigenvectors[:, 0] ** 2,
            {"long_name": "activity score of each parameter in the first active direction (lambda_1 w_1^2)"},
        ),
    }


def _eigen(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues, largest first, and eigenvectors with their largest component positive (an
    eigenvector's sign is arbitrary: fixed, so that results compare); ``matrix`` may be a stack."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    eigenvalues, eigenvectors = eigenvalues[..., ::-1], eigenvectors[..., ::-1]
    largest = np.abs(eigenvectors).argmax(axis=-2)[..., None, :]
    sign = np.sign(np.take_along_axis(eigenvectors, largest, axis=-2))
    return eigenvalues, eigenvectors * np.where(sign == 0, 1.0, sign)


def _active_along(matrix: np.ndarray, along: str) -> dict[str, tuple]:
    """The active subspace at each entry of the last output dim (e.g. time), over the other element
    dims (``matrix``: ``(last, P, P)``, the mean over points of the gradient outer products there):
    where in the output a direction of parameter space takes over."""
    eigenvalues, eigenvectors = _eigen(matrix)
    return {
        f"active_eigenvalues_per_{along}": (
            [along, "direction"],
            eigenvalues,
            {"long_name": f"eigenvalues of the gradient outer product at each {along} (largest first)"},
        ),
        f"active_eigenvectors_per_{along}": (
            [along, "parameter", "direction"],
            eigenvectors,
            {"long_name": f"eigenvectors of the gradient outer product at each {along} (columns)"},
        ),
    }


def _projector(vectors: np.ndarray, r: int) -> np.ndarray:
    return vectors[:, :r] @ vectors[:, :r].T


def block_points(ds: xr.Dataset, params: list[str], block_values: int | None = None) -> int:
    """Points of a design :func:`design_bounds` reads at once: ``block_values`` (default
    :data:`BLOCK_VALUES`) over what a point costs (y and its derivatives, the bootstrap's columns, its
    share of the buckets' outer products). A summary reads the design in chunks of this many points."""
    el = Elements.of(ds["y"])
    P = sum(derivative_name(p) in ds for p in params)
    per_point = int(np.prod(el.shape)) * (1 + P) + el.shape[-1] * (2 + 2 * P) + P**2 // outer_bucket(P) + 1
    return max(1, (block_values or BLOCK_VALUES) // per_point)


def design_bounds(ds: xr.Dataset, params: list[str], rng_seed: int = 0, block_values: int | None = None) -> xr.Dataset:
    """The variables of NOTE [Bounds from derivatives], each with its ``long_name``.

    The points are read a block at a time (``block_values`` values of y and derivatives, default
    :data:`BLOCK_VALUES`) into sums that add up; the results are computed from those sums on
    plain arrays of ``(rows, last)`` and get their dims back in one Dataset.
    """
    el = Elements.of(ds["y"])
    dists = {
        p: parse(ds.attrs[f"distribution_{p}"])
        for p in params
        if f"distribution_{p}" in ds.attrs and derivative_name(p) in ds  # no derivatives: method "none"
    }
    names = ["y", *dists, *map(derivative_name, dists)]
    sums = None
    for start, stop in _blocks(ds, block_points(ds, params, block_values)):
        part = ds[names].isel(point=slice(start, stop)).compute()  # one read of every variable
        Y = el.array(part["y"])
        gradients = {}
        for p, dist in dists.items():
            values = part[p].values.astype(np.float64).reshape(len(Y))
            dv = el.array(part[derivative_name(p)])
            if dist.log:  # the variable is ln p; dy/d(ln p) = p dy/dp
                dv = dv * values[:, None, None]
            gradients[p] = (dv, dist.stein_weight(np.log(values) if dist.log else values))
        points = part["point"].values if "point" in part.coords else np.arange(start, stop)
        found = DesignSums.of(Y, gradients, points, rng_seed)
        sums = found if sums is None else sums + found
    return _from_sums(sums, el, dists)


def _blocks(ds: xr.Dataset, block: int) -> list[tuple[int, int]]:
    """Start and stop of each block of at most ``block`` points: within the dataset's dask chunks
    along ``point`` where it has them (a block that straddled two would read both)."""
    sizes = ds.chunksizes.get("point", (ds.sizes["point"],))
    edges = np.cumsum([0, *sizes])
    return [(int(b), int(min(b + block, hi))) for lo, hi in itertools.pairwise(edges) for b in range(lo, hi, block)]


def _from_sums(sums: DesignSums, el: Elements, dists: dict[str, Distribution]) -> xr.Dataset:
    """The bounds' variables from a design's sums (:func:`design_bounds`)."""
    D = sums.y.var()
    out: dict[str, tuple] = {"y_var": el.var(D, "D: variance of y over the design's points")}
    names = list(dists)
    for p, dist in dists.items():
        out |= _parameter_bounds(el, p, dist, sums.params[p], D)
    if names:
        constants, variances = [dists[p].poincare_constant() for p in names], [dists[p].variance() for p in names]
        _with_intervals(out, el, bootstrap_intervals(sums.boot_total, sums.boot, names, constants, variances))
        # linearised variance: sum over parameters of E[dy/dv]^2 Var v (independent parameters)
        linear = sum(sums.params[p].dv.mean ** 2 * dists[p].variance() for p in names)
        out["y_var_linear"] = el.var(
            linear, "delta-method variance of y: sum of E[dy/dv]^2 Var v over the parameters (compare y_var)"
        )
    coords = {**el.coords, "interval": ["low", "high"]}
    if len(names) > 1:
        out |= _gradient_outer_product(sums, names)
        if el.along:
            out |= _active_along(sums.outer_along / sums.y.n, el.along[0])
        coords.update(parameter=names, parameter_2=names)
    return xr.Dataset(out, coords=coords)


def bootstrap_intervals(
    total: np.ndarray, sums: np.ndarray, names: list[str], constants: list[float], variances: list[float]
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, tuple[float, float]]]]:
    """Percentile intervals of every parameter's upper and lower bounds: per element ``(2, rows,
    last)``, along the last dim aggregated over rows ``(2, last)``, and aggregated over all, from
    the bootstrap's weighted sums of a design (:class:`~pipeline.design.sums.DesignSums`)."""
    resamples, columns, rows, last = sums.shape
    P = len(names)
    constant = np.array(constants)[:, None, None]  # (parameter, 1, 1)
    var_v = np.array(variances)[:, None, None]
    weight = total[:, None, None]
    slab = max(1, BOOTSTRAP_BATCH_VALUES // (resamples * last * columns))
    element = np.empty((2, 2, P, rows, last))  # (low/high, upper/lower, parameter, rows, last)
    sum_D, sum_nu, sum_cov2 = (
        np.zeros((resamples, last)),
        np.zeros((resamples, P, last)),
        np.zeros((resamples, P, last)),
    )
    for r0 in range(0, rows, slab):
        r1 = min(rows, r0 + slab)
        means = sums[:, :, r0:r1] / total[:, None, None, None]
        D = (means[:, 1] - means[:, 0] ** 2) * weight / (weight - 1)
        nu, cov2 = means[:, 2 : 2 + P], means[:, 2 + P :] ** 2  # (resample, parameter, rows, last)
        sum_D += D.sum(axis=1)
        sum_nu += nu.sum(axis=2)
        sum_cov2 += cov2.sum(axis=2)
        positive = as_divisor(D)[:, None]
        element[..., r0:r1, :] = percentiles(np.stack([constant * nu / positive, cov2 / (var_v * positive)], axis=1))
    D_along, overall_D = as_divisor(sum_D)[:, None], as_divisor(sum_D.sum(axis=1))[:, None]
    constant, var_v = constant[..., 0], var_v[..., 0]  # (parameter, 1)
    along = percentiles(np.stack([constant * sum_nu / D_along, sum_cov2 / (var_v * D_along)], axis=1))
    overall = percentiles(
        np.stack(
            [constant[:, 0] * sum_nu.sum(axis=2) / overall_D, sum_cov2.sum(axis=2) / (var_v[:, 0] * overall_D)], axis=1
        )
    )
    return {
        p: {
            kind: (element[:, j, i], along[:, j, i], (float(overall[0, j, i]), float(overall[1, j, i])))
            for j, kind in enumerate(("upper", "lower"))
        }
        for i, p in enumerate(names)
    }
