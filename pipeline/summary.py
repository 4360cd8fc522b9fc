"""The summary of a sensitivity dataset: statistics over samples per sweep point, and sweep-wide measures.

Per value of the swept parameter, reductions over samples; over the whole range, the
derivative-based global sensitivity measure (DGSM, mean of ``(dy/dC)^2`` over the sweep
points, Sobol' & Kucherenko 2009) and ``mu_star`` (mean ``|dy/dC|``, as in Morris screening).
Averages over the sweep weight every sweep point equally: uniform in C for a linear sweep,
uniform in log C for a log sweep. Reductions are lazy where the dataset is (dask), so the sweep
need not fit in memory.
"""

from __future__ import annotations

import xarray as xr

from pipeline.design.analyses import design_summary
from pipeline.storage.names import derivative_name, header, sweep_dims, swept_parameters
from pipeline.storage.units import power as units_power


def _units(da: xr.DataArray, power: int = 1) -> dict[str, str]:
    units = da.attrs.get("units")
    if units is None:
        return {}
    return {"units": units_power(units, power)}


def summarise(ds: xr.Dataset) -> xr.Dataset:
    """Summary statistics of a sensitivity dataset (see module docstring), per swept parameter.

    For a sampled design (dim ``point``) the sweep-wide measures are those of
    :func:`pipeline.design.analyses.design_summary`: DGSM and bounds on Sobol' indices, and for a
    Saltelli design the Sobol' indices themselves.
    """
    params = swept_parameters(ds)
    sweep = sweep_dims(ds)
    y = ds["y"].astype("float64")  # float64 sums: a float32 mean over 10^8 values is off by 1e-4
    variables = {
        "y_mean": (y.mean("sample"), "mean over samples of y", _units(y)),
        "y_std": (y.std("sample"), "standard deviation over samples of y", _units(y)),
        "elasticity_defined": (
            (y != 0).sum("sample"),
            "number of samples where elasticities are defined",
            {"units": "1"},
        ),
    }
    for p in [p for p in params if derivative_name(p) in ds]:  # none with method "none"
        name = derivative_name(p)
        dy = ds[name].astype("float64")
        elasticity = ds[p] * dy / y.where(y != 0)  # NaN (skipped by the mean) where y == 0
        variables.update(
            {
                f"{name}_mean": (dy.mean("sample"), f"mean over samples of dy/d{p}", _units(dy)),
                f"{name}_std": (dy.std("sample"), f"standard deviation over samples of dy/d{p}", _units(dy)),
                f"{name}_abs_mean": (abs(dy).mean("sample"), f"mean over samples of |dy/d{p}|", _units(dy)),
                f"elasticity_{p}_mean": (
                    elasticity.mean("sample"),
                    f"mean over samples of the elasticity {p}/y dy/d{p} (where y != 0)",
                    {"units": "1"},
                ),
            }
        )
        if sweep == params:  # a grid: means over its points, each weighted equally
            variables.update(
                {
                    f"dgsm_{p}": ((dy**2).mean(params), f"DGSM: mean over the sweep of (dy/d{p})^2", _units(dy, 2)),
                    f"dgsm_{p}_mean": (
                        (dy**2).mean([*params, "sample"]),
                        f"DGSM of {p} averaged over samples",
                        _units(dy, 2),
                    ),
                    f"mu_star_{p}": (
                        abs(dy).mean([*params, "sample"]),
                        f"mean over sweep and samples of |dy/d{p}|",
                        _units(dy),
                    ),
                }
            )
    summary = xr.Dataset()
    for key, (da, long_name, attrs) in variables.items():
        summary[key] = da.assign_attrs(long_name=long_name, **attrs)
    extra: dict[str, str | int] = {}
    if sweep == ["point"]:
        analyses, extra = design_summary(ds.load(), params)
        summary.update(analyses)
    keep = ("title", "study", "swept_parameters", "method", "device", "dtype", "sweep_kind", "source", "design")
    summary.attrs = {
        **header(ds.attrs.get("title", ""), "summary of the sensitivity dataset (pipeline.summary)"),
        **{k: ds.attrs[k] for k in keep if k in ds.attrs},
        **extra,
    }
    return summary
