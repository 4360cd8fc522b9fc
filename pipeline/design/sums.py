"""What the derivative-based analyses of a design need, as sums over its points that add up.

A design's DGSM, bounds, mu*, sigma, delta-method variance, gradient outer product and their
bootstrap intervals (:mod:`pipeline.design.bounds`) are functions of a few sums over the points:
:class:`DesignSums` holds them for a block of points, and two blocks' sums add up (``+``) to those
of both. So a design is summarised a block at a time (a part of the workflow, or a slice of a
file), never holding more than one block's derivatives. Means and variances merge by Chan's
formula (no cancellation where the mean is large against the spread); the bootstrap's weighted
sums (:func:`~pipeline.design.resampling.poisson_weights`, by point index) are plain sums.

The bootstrap of the gradient outer product (the active subspace's intervals) weighs buckets of
:func:`outer_bucket` consecutive points, one Poisson weight each (a weight stream of its own):
weighing each point's ``P x P`` matrix costs ``resamples x P^2`` per point, against ``resamples x
2P`` for every other statistic. Resampling buckets of independent points resamples the points (each
bucket's sum is a sum of independent terms); with up to 3 parameters a bucket is one point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.design.resampling import BOOTSTRAP, BOOTSTRAP_BATCH_VALUES, poisson_weights_at


def outer_bucket(parameters: int) -> int:
    """Consecutive points (by index) whose gradient outer products share one bootstrap weight
    (module doc): ``P / 2``, so that their bootstrap costs about what the other statistics' does."""
    return max(1, parameters // 2)


@dataclass
class Running:
    """Count, mean and sum of squared deviations along the first axis; ``+`` merges two (Chan et al.)."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray) -> Running:
        mean = values.mean(axis=0)
        return cls(len(values), mean, ((values - mean) ** 2).sum(axis=0))

    def __add__(self, other: Running) -> Running:
        n = self.n + other.n
        delta = other.mean - self.mean
        return Running(n, self.mean + delta * (other.n / n), self.m2 + other.m2 + delta**2 * (self.n * other.n / n))

    def var(self) -> np.ndarray:
        """The variance with ``ddof=1`` (0 for one point)."""
        return self.m2 / (self.n - 1) if self.n > 1 else np.zeros_like(self.m2)


@dataclass
class Parameter:
    """One parameter's sums: ``dv`` its derivatives in its variable (``Running``), and the sums of
    ``dv^2`` (the DGSM), ``k dv`` (Stein's covariance) and ``|dv|`` (mu*), per element ``(rows, last)``."""

    dv: Running
    dv2: np.ndarray
    kdv: np.ndarray
    adv: np.ndarray

    def __add__(self, other: Parameter) -> Parameter:
        return Parameter(self.dv + other.dv, self.dv2 + other.dv2, self.kdv + other.kdv, self.adv + other.adv)


@dataclass
class DesignSums:
    """The sums of a block of a design's points (module doc).

    ``boot_total`` ``(resample,)`` and ``boot`` ``(resample, column, rows, last)``: each resample's
    total weight and weighted sums of y - shift, (y - shift)^2, then dv^2 and k dv of each parameter
    (``shift``: the first block's mean of y, so that a variance is not the difference of two large
    numbers; adding moves the other block's sums to it); ``outer``
    ``(P, P)``: the sum over points of each point's gradient outer product (summed over elements),
    ``outer_boot`` ``(resample, P, P)`` the same weighted by bucket (module doc), ``outer_total``
    ``(resample,)`` each resample's weighted count of points, ``outer_along`` ``(last, P, P)`` the sum
    over points and rows at each entry of the last output dim.
    """

    y: Running
    params: dict[str, Parameter]
    boot_total: np.ndarray
    boot: np.ndarray
    outer: np.ndarray
    outer_boot: np.ndarray
    outer_total: np.ndarray
    outer_along: np.ndarray
    shift: np.ndarray  # (rows, last): the bootstrap's y columns are of y - shift (no cancellation)

    def __add__(self, other: DesignSums) -> DesignSums:
        boot = other.boot.copy()  # other's y columns moved to this shift: exact algebra
        d = (other.shift - self.shift)[None]
        weight = other.boot_total[:, None, None]
        boot[:, 1] += 2 * d * other.boot[:, 0] + d**2 * weight
        boot[:, 0] += d * weight
        return DesignSums(
            self.y + other.y,
            {p: self.params[p] + other.params[p] for p in self.params},
            self.boot_total + other.boot_total,
            self.boot + boot,
            self.outer + other.outer,
            self.outer_boot + other.outer_boot,
            self.outer_total + other.outer_total,
            self.outer_along + other.outer_along,
            self.shift,
        )

    @classmethod
    def of(
        cls, Y: np.ndarray, gradients: dict[str, tuple[np.ndarray, np.ndarray]], points: np.ndarray, seed: int
    ) -> DesignSums:
        """The sums of a block: ``Y`` ``(point, rows, last)``, per parameter ``(dv, k)`` (derivatives in
        its variable, same shape, and Stein's weight per point), ``points`` the block's point indices
        in the design (they choose the bootstrap's weights)."""
        weights = poisson_weights_at(seed, points, BOOTSTRAP)
        params = {
            p: Parameter(
                Running.of(dv),
                np.einsum("nre,nre->re", dv, dv),
                np.einsum("nre,n->re", dv, k),
                np.abs(dv).sum(axis=0),
            )
            for p, (dv, k) in gradients.items()
        }
        shift = Y.mean(axis=0)
        total, boot = _weighted_columns(Y - shift, gradients, weights)
        if gradients:
            G = np.stack([dv for dv, _ in gradients.values()], axis=-1)  # (point, rows, last, parameter)
        else:  # method "none": y only
            G = np.zeros((*Y.shape, 0))
        outer, outer_boot, outer_total = _outer_sums(G, np.asarray(points), seed)
        return cls(Running.of(Y), params, total, boot, outer, outer_boot, outer_total, _outer_along(G), shift)


def _weighted_columns(
    Y: np.ndarray, gradients: dict[str, tuple[np.ndarray, np.ndarray]], weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each resample's total weight, and its weighted sums of y, y^2, dv^2 and k dv of every parameter,
    per element; rows are taken in slabs so that the values held at once stay under
    :data:`BOOTSTRAP_BATCH_VALUES` (no resampled copies)."""
    n, rows, last = Y.shape
    P = len(gradients)
    columns = 2 + 2 * P
    resamples = len(weights)
    slab = max(1, BOOTSTRAP_BATCH_VALUES // (max(n, resamples) * last * columns))
    sums = np.empty((resamples, columns, rows, last))
    for r0 in range(0, rows, slab):
        r1 = min(rows, r0 + slab)
        stacked = np.empty((n, columns, r1 - r0, last))
        stacked[:, 0] = Y[:, r0:r1]
        np.square(Y[:, r0:r1], out=stacked[:, 1])
        for i, (dv, k) in enumerate(gradients.values()):
            np.square(dv[:, r0:r1], out=stacked[:, 2 + i])
            np.multiply(dv[:, r0:r1], k[:, None, None], out=stacked[:, 2 + P + i])
        sums[:, :, r0:r1] = (weights @ stacked.reshape(n, -1)).reshape(resamples, columns, r1 - r0, last)
    return weights.sum(axis=1), sums


def _outer_along(G: np.ndarray) -> np.ndarray:
    """Sum over points and rows of the gradient outer products at each entry of the last dim:
    ``(last, P, P)`` from ``G`` ``(point, rows, last, P)``, one matrix product per entry."""
    n, rows, last, P = G.shape
    out = np.empty((last, P, P))
    for t in range(last):
        g = G[:, :, t].reshape(n * rows, P)
        out[t] = g.T @ g
    return out


def _outer_sums(G: np.ndarray, points: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sum over points of the gradient outer products (summed over elements) ``(P, P)``, the
    bootstrap's sums weighted by bucket ``(resample, P, P)`` and weighted counts ``(resample,)``
    (module doc): each bucket's sum is one matrix product of its points' gradients."""
    P = G.shape[-1]
    flat = G.reshape(len(G), int(np.prod(G.shape[1:-1])), P)  # (point, element, P)
    buckets, inverse, counts = np.unique(points // outer_bucket(P), return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    per_bucket = np.empty((len(buckets), P, P))
    for k, mine in enumerate(np.split(order, np.cumsum(counts)[:-1])):
        g = flat[mine].reshape(len(mine) * flat.shape[1], P)
        per_bucket[k] = g.T @ g
    weights = poisson_weights_at(seed, buckets, BOOTSTRAP, stream=1)
    boot = (weights @ per_bucket.reshape(len(buckets), P * P)).reshape(len(weights), P, P)
    return per_bucket.sum(axis=0), boot, weights @ counts
