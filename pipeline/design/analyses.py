"""The sweep-wide answers of a sampled design, chosen by its kind: derivative-based bounds for every
design, and variance-based Sobol' indices for a Saltelli design, checked against each other."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from pipeline.design.bounds import design_bounds
from pipeline.design.indices import sobol_indices
from pipeline.design.sampling import saltelli_group
from pipeline.storage.names import optional


def design_summary(ds: xr.Dataset, params: list[str]) -> tuple[xr.Dataset, dict[str, str | int]]:
    """The design's summary variables and the attrs that go with them.

    For a Saltelli design the bounds come from its ``A`` and ``B`` blocks (independent points of
    the distributions; the ``AB`` rows are not), from base points whose evaluations are all finite,
    and every Sobol' estimate is checked against them (:func:`contradictions`). Both read the design
    a block of points at a time.
    """
    if ds.attrs.get("design") != "saltelli":
        return design_bounds(ds, params), {}
    second_order = bool(ds.attrs.get("design_second_order", 0))
    if not ds.indexes["point"].is_monotonic_increasing:  # parts opened in another order
        ds = ds.sortby("point")
    group = saltelli_group(len(params), second_order)
    indices, complete = sobol_indices(ds, params, second_order)
    role = np.arange(len(complete) * group) % group
    kept = np.repeat(complete, group)
    independent = np.flatnonzero(kept & ((role == 0) | (role == group - 1)))
    bounds = design_bounds(ds.isel(point=independent), params)
    found = contradictions(indices, bounds, params)
    failed = int(indices["sobol_failed_base_points"])
    if failed:
        warnings.warn(
            f"{failed} of {len(complete)} base points of the Saltelli design were left out: an evaluation gave "
            "NaN or Inf; the indices are those of the model where it could be evaluated",
            RuntimeWarning,
            stacklevel=2,
        )
    if found:
        warnings.warn(
            f"Sobol' indices contradict the derivative bounds: {'; '.join(found)}", RuntimeWarning, stacklevel=2
        )
    attrs = {"sobol_consistent_with_bounds": int(not found), "sobol_contradictions": "; ".join(found) or "none"}
    return xr.merge([bounds, indices], compat="override"), attrs


def contradictions(indices: xr.Dataset, bounds: xr.Dataset, params: list[str]) -> list[str]:
    """Where the aggregated indices and bounds disagree beyond both intervals: a total index whose
    interval lies above its upper bound's, or a first-order index whose interval lies below its
    lower bound's (the estimators or the bounds cannot both be right there)."""
    found = []
    for i, p in enumerate(params):
        upper = optional(bounds, f"sobol_total_upper_{p}_aggregated")
        lower = optional(bounds, f"sobol_first_lower_{p}_aggregated")
        total_low = float(indices["sobol_total_aggregated_interval"][0, i])
        first_high = float(indices["sobol_first_aggregated_interval"][1, i])
        if upper is not None and total_low > upper.attrs.get("ci_high", float(upper)):
            found.append(f"S_T of {p} at least {total_low:.3g}, above its upper bound {float(upper):.3g}")
        if lower is not None and first_high < lower.attrs.get("ci_low", float(lower)):
            found.append(f"S of {p} at most {first_high:.3g}, below its lower bound {float(lower):.3g}")
    return found
