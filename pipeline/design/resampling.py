"""What the analyses of a design share: its values as plain arrays by element, and the bootstrap.

A bootstrap resample of N points is its weight of each point, so every mean over it is a product
with the weights (no resampled copies); intervals are percentile intervals of the resamples.
Resamples of the points are Poisson bootstraps (:func:`poisson_weights`): each point's weight in
each resample is drawn from the seed and the point's index alone, so a part of a design draws its
own points' weights, and every weighted sum over the parts adds up to the sum over the whole.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr

BOOTSTRAP = 200
"""Resamples of the points for the intervals on the aggregated bounds."""

CONFIDENCE = 0.95

BLOCK_VALUES = 2**24
"""Values a design's summary holds at once (128 MiB of float64): the derivative bounds
(:func:`~pipeline.design.bounds.design_bounds`) and the Sobol' indices
(:func:`~pipeline.design.indices.saltelli_sums`) read a design a block of points at a time."""

BOOTSTRAP_BATCH_VALUES = 2**24
"""Values held at once by the bootstrap's weighted sums (128 MiB of float64)."""


@dataclass
class Elements:
    """A design's values as ``(point, rows, last)`` arrays: ``last`` is the last output dim (e.g.
    time), ``rows`` every other element dim (samples first); :meth:`var` gives a result its dims
    back and :attr:`coords` are theirs (the results make one Dataset, built at once: far cheaper
    than a DataArray per variable)."""

    order: list[str]  # element dims, in the arrays' order
    along: list[str]  # [the last output dim], or [] when y has samples only
    shape: tuple[int, ...]  # sizes of ``order``
    coords: dict[str, xr.Variable]

    @classmethod
    def of(cls, y: xr.DataArray) -> Elements:
        dims = [d for d in y.dims if d != "point"]
        along = [d for d in dims if d != "sample"][-1:]
        order = [*[d for d in dims if d not in along], *along]
        coords = {k: c.variable for k, c in y.coords.items() if "point" not in c.dims}
        return cls(order, along, tuple(y.sizes[d] for d in order), coords)

    def array(self, da: xr.DataArray) -> np.ndarray:
        values = da.variable.transpose("point", *self.order).values.astype(np.float64, copy=False)
        return values.reshape(len(values), -1, self.shape[-1] if self.along else 1)

    def var(
        self, values: np.ndarray, long_name: str, interval: bool = False, along: bool = False, **attrs: object
    ) -> tuple[list[str], np.ndarray, dict[str, object]]:
        """``values`` of shape ``([2,] rows, last)`` (``([2,] last)`` ``along``) as a Dataset variable."""
        dims = (["interval"] if interval else []) + (self.along if along else self.order)
        shape = ((2,) if interval else ()) + (self.shape[-1:] if along else self.shape)
        return dims, np.reshape(values, shape), {"long_name": long_name, **attrs}


def as_divisor(variance: np.ndarray) -> np.ndarray:
    """``variance`` as a divisor: NaN where it is 0 (y does not vary there, so no bound is defined)."""
    return np.where(variance > 0, variance, np.nan)


def percentiles(values: np.ndarray) -> np.ndarray:
    """The :data:`CONFIDENCE` percentile interval along the first axis (resamples). A resample whose
    value is undefined (D = 0: y does not vary over its points; a Poisson resample of a tiny design
    may weigh fewer than two points) is left out; NaN where every resample's is."""
    tail = (1 - CONFIDENCE) / 2 * 100
    finite = np.where(np.isfinite(values), values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: NaN is the answer
        return np.nanpercentile(finite, [tail, 100 - tail], axis=0)


_POISSON_CDF = np.cumsum([math.exp(-1) / math.factorial(k) for k in range(20)]).astype(np.float32)

WEIGHT_BLOCK = 4096
"""Points whose Poisson weights one generator draws: block ``b`` (points ``b * WEIGHT_BLOCK`` on)
is drawn from ``default_rng([seed, b])``, so any range of points gets the same weights."""


def poisson_weights(seed: int, first: int, count: int, resamples: int = BOOTSTRAP, stream: int = 0) -> np.ndarray:
    """Each resample's Poisson(1) weight of points ``first .. first + count - 1``: ``(resamples, count)``,
    the same whichever range of points asks (module doc); ``stream``: another set of weights from
    the same seed (0: the points')."""
    weights = np.empty((resamples, count))
    end = first + count
    for block in range(first // WEIGHT_BLOCK, -(-end // WEIGHT_BLOCK)):
        start = block * WEIGHT_BLOCK
        entropy = [seed, block, stream] if stream else [seed, block]
        uniform = np.random.default_rng(entropy).random((resamples, WEIGHT_BLOCK), dtype=np.float32)
        drawn = np.searchsorted(_POISSON_CDF, uniform)  # inverse CDF: 3x faster than rng.poisson
        lo, hi = max(first, start), min(end, start + WEIGHT_BLOCK)
        weights[:, lo - first : hi - first] = drawn[:, lo - start : hi - start]
    return weights


def poisson_weights_at(seed: int, points: np.ndarray, resamples: int = BOOTSTRAP, stream: int = 0) -> np.ndarray:
    """:func:`poisson_weights` of the points with indices ``points`` (any order, any gaps):
    ``(resamples, len(points))``; only the blocks holding them are drawn."""
    points = np.asarray(points, dtype=np.int64)
    weights = np.empty((resamples, len(points)))
    blocks = points // WEIGHT_BLOCK
    for block in np.unique(blocks):
        mine = np.flatnonzero(blocks == block)
        drawn = poisson_weights(seed, int(block) * WEIGHT_BLOCK, WEIGHT_BLOCK, resamples, stream)
        weights[:, mine] = drawn[:, points[mine] - int(block) * WEIGHT_BLOCK]
    return weights
