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

import numpy as np
import xarray as xr

from pipeline.design.distributions import Distribution, parse
from pipeline.design.resampling import (
    BOOTSTRAP,
    BOOTSTRAP_BATCH_VALUES,
    CONFIDENCE,
    WEIGHT_BLOCK,
    Elements,
    as_divisor,
    percentiles,
    poisson_weights,
)
from pipeline.storage.names import derivative_name


def _parameter_bounds(
    el: Elements, p: str, dist: Distribution, values: np.ndarray, dv: np.ndarray, D: np.ndarray
) -> tuple[dict[str, tuple], tuple[np.ndarray, np.ndarray, float, float]]:
    """The DGSM, the bounds and mu* of one parameter (``dv``: its derivatives in its variable), and
    what the bootstrap needs: ``(dv, k, C, Var v)``."""
    n = len(dv)
    positive, D_along, total_D = as_divisor(D), as_divisor(D.sum(axis=0)), float(D.sum())
    v = np.log(values) if dist.log else values
    k = dist.stein_weight(v)
    nu = np.einsum("nre,nre->re", dv, dv) / n
    cov = np.einsum("nre,n->re", dv, k) / n
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
        f"mu_star_{p}": el.var(np.abs(dv).mean(axis=0), f"mean over the points of |dy/d{wrt}|"),
        f"mu_star_scaled_{p}": el.var(
            np.abs(dv).mean(axis=0) * var_v**0.5,
            f"mean over the points of |dy/d{wrt}| times the standard deviation of {wrt} (comparable across parameters)",
        ),
        f"sigma_{p}": el.var(
            dv.std(axis=0, ddof=1) if n > 1 else np.zeros(dv.shape[1:]),
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
    return out, (dv, k, constant, var_v)


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


def _gradient_outer_product(gradients: dict[str, np.ndarray], seed: int = 0, first: int = 0) -> dict[str, tuple]:
    """E[grad y grad y^T] over the points, summed over elements, its eigenvalues and eigenvectors
    (active directions), activity scores, and their bootstrap: intervals on the eigenvalues and how
    far the resampled active subspaces of each dimension lie from the estimated one."""
    names = list(gradients)
    G = np.stack([gradients[p].reshape(len(gradients[p]), -1) for p in names], axis=-1)  # (point, element, param)
    per_point = np.einsum("nep,neq->npq", G, G)  # each point's outer product, summed over elements
    matrix = per_point.mean(axis=0)
    eigenvalues, eigenvectors = _eigen(matrix)
    counts = poisson_weights(seed, first, len(G), BOOTSTRAP)
    resampled = np.einsum("rn,npq->rpq", counts, per_point) / counts.sum(axis=1)[:, None, None]
    values, vectors = np.linalg.eigh(resampled)
    values, vectors = values[:, ::-1], vectors[:, :, ::-1]
    dims = np.arange(1, len(names))
    distance = np.empty((BOOTSTRAP, len(dims)))
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
                "each dimension: small means that subspace is well determined"
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


def _active_along(gradients: dict[str, np.ndarray], along: str) -> dict[str, tuple]:
    """The active subspace at each entry of the last output dim (e.g. time), over the other element
    dims: where in the output a direction of parameter space takes over."""
    G = np.stack(list(gradients.values()), axis=-1)  # (point, rows, last, parameter)
    matrix = np.einsum("nrtp,nrtq->tpq", G, G) / len(G)
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


def design_bounds(ds: xr.Dataset, params: list[str], rng_seed: int = 0) -> xr.Dataset:
    """The variables of NOTE [Bounds from derivatives], each with its ``long_name``.

    Computed on plain arrays of ``(point, rows, last)``; the results get their dims back in one
    Dataset.
    """
    el = Elements.of(ds["y"])
    Y = el.array(ds["y"])
    D = Y.var(axis=0, ddof=1)
    out: dict[str, tuple] = {"y_var": el.var(D, "D: variance of y over the design's points")}
    dists = {
        p: parse(ds.attrs[f"distribution_{p}"])
        for p in params
        if f"distribution_{p}" in ds.attrs and derivative_name(p) in ds  # no derivatives: method "none"
    }
    gradients: dict[str, np.ndarray] = {}
    weights: dict[str, tuple[np.ndarray, np.ndarray, float, float]] = {}
    for p, dist in dists.items():
        values = ds[p].values.astype(np.float64).reshape(len(Y))
        dv = el.array(ds[derivative_name(p)])
        if dist.log:  # the variable is ln p; dy/d(ln p) = p dy/dp
            dv = dv * values[:, None, None]
        bounds, weights[p] = _parameter_bounds(el, p, dist, values, dv, D)
        out |= bounds
        gradients[p] = dv
    first = int(ds["point"].values[0]) if "point" in ds.coords and ds.sizes["point"] else 0
    if weights:
        _with_intervals(out, el, _bootstrap(Y, weights, rng_seed, first))
    if weights:  # linearised variance: sum over parameters of E[dy/dv]^2 Var v (independent parameters)
        linear = sum(w[0].mean(axis=0) ** 2 * w[3] for w in weights.values())
        out["y_var_linear"] = el.var(
            linear, "delta-method variance of y: sum of E[dy/dv]^2 Var v over the parameters (compare y_var)"
        )
    coords = {**el.coords, "interval": ["low", "high"]}
    if len(gradients) > 1:
        out |= _gradient_outer_product(gradients, rng_seed, first)
        if el.along:
            out |= _active_along(gradients, el.along[0])
        coords.update(parameter=list(gradients), parameter_2=list(gradients))
    return xr.Dataset(out, coords=coords)


def _bootstrap(
    Y: np.ndarray, weights: dict[str, tuple[np.ndarray, np.ndarray, float, float]], seed: int, first: int = 0
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, tuple[float, float]]]]:
    """Percentile intervals of every parameter's upper and lower bounds: per element ``(2, rows,
    last)``, along the last dim aggregated over rows ``(2, last)``, and aggregated over all, from
    the same :data:`BOOTSTRAP` Poisson resamples of the points (``first``: the index of ``Y``'s first
    point in the design): :func:`bootstrap_sums`, then :func:`bootstrap_intervals`."""
    total, sums = bootstrap_sums(Y, weights, seed, first)
    names = list(weights)
    return bootstrap_intervals(total, sums, names, [weights[p][2] for p in names], [weights[p][3] for p in names])


def bootstrap_sums(
    Y: np.ndarray, weights: dict[str, tuple[np.ndarray, np.ndarray, float, float]], seed: int, first: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Per resample, the total weight ``(resample,)`` and the weighted sums of the columns every bound
    needs, y, y^2, then (dy/dv)^2 and k dy/dv of each parameter: ``(resample, column, rows, last)``.

    Both add up over parts of a design (the weights are :func:`~pipeline.design.resampling.poisson_weights`
    of each point's index). No resampled copies are made: points are taken in blocks and rows in
    slabs, so that the values held at once stay under :data:`BOOTSTRAP_BATCH_VALUES`.
    """
    n, rows, last = Y.shape
    names = list(weights)
    P = len(names)
    columns = 2 + 2 * P
    slab = max(1, BOOTSTRAP_BATCH_VALUES // (WEIGHT_BLOCK * last * columns))
    total, sums = np.zeros(BOOTSTRAP), np.zeros((BOOTSTRAP, columns, rows, last))
    for a in range(0, n, WEIGHT_BLOCK):
        b = min(n, a + WEIGHT_BLOCK)
        w = poisson_weights(seed, first + a, b - a, BOOTSTRAP)
        total += w.sum(axis=1)
        for r0 in range(0, rows, slab):
            r1 = min(rows, r0 + slab)
            stacked = np.empty((b - a, columns, r1 - r0, last))
            stacked[:, 0] = Y[a:b, r0:r1]
            np.square(Y[a:b, r0:r1], out=stacked[:, 1])
            for i, p in enumerate(names):
                dv, k, _, _ = weights[p]
                np.square(dv[a:b, r0:r1], out=stacked[:, 2 + i])
                np.multiply(dv[a:b, r0:r1], k[a:b, None, None], out=stacked[:, 2 + P + i])
            sums[:, :, r0:r1] += (w @ stacked.reshape(b - a, -1)).reshape(BOOTSTRAP, columns, r1 - r0, last)
    return total, sums


def bootstrap_intervals(
    total: np.ndarray, sums: np.ndarray, names: list[str], constants: list[float], variances: list[float]
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, tuple[float, float]]]]:
    """The intervals of :func:`_bootstrap` from :func:`bootstrap_sums` (of one part, or added over parts)."""
    _, columns, rows, last = sums.shape
    P = len(names)
    constant = np.array(constants)[:, None, None]  # (parameter, 1, 1)
    var_v = np.array(variances)[:, None, None]
    weight = total[:, None, None]
    slab = max(1, BOOTSTRAP_BATCH_VALUES // (BOOTSTRAP * last * columns))
    element = np.empty((2, 2, P, rows, last))  # (low/high, upper/lower, parameter, rows, last)
    sum_D, sum_nu, sum_cov2 = (
        np.zeros((BOOTSTRAP, last)),
        np.zeros((BOOTSTRAP, P, last)),
        np.zeros((BOOTSTRAP, P, last)),
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
