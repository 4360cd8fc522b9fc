"""What the analyses of a design share: its values as plain arrays by element, and the bootstrap.

A bootstrap resample of N points is its count of each point, so every mean over it is a product
with the counts (no resampled copies); intervals are percentile intervals of the resamples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

BOOTSTRAP = 200
"""Resamples of the points for the intervals on the aggregated bounds."""

CONFIDENCE = 0.95

BOOTSTRAP_BATCH_VALUES = 2**24
"""Point counts held at once (128 MiB of float64): resamples are drawn in batches of this size."""


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
    """The :data:`CONFIDENCE` percentile interval along the first axis (resamples); NaN where a
    resample's bound is undefined (D = 0: y does not vary over those points)."""
    tail = (1 - CONFIDENCE) / 2 * 100
    return np.percentile(np.where(np.isfinite(values), values, np.nan), [tail, 100 - tail], axis=0)


def resample_counts(rng: np.random.Generator, resamples: int, n: int) -> np.ndarray:
    """Each resample's count of each of the ``n`` points: ``(resamples, n)``."""
    counts = np.empty((resamples, n))
    for row, draw in zip(counts, rng.integers(0, n, (resamples, n), dtype=np.int32), strict=True):  # 32 bits: faster
        row[:] = np.bincount(draw, minlength=n)  # one row at a time: its n counts stay in cache
    return counts
