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
from pipeline.storage.names import derivative_name, header, second_derivative_name, sweep_dims, swept_parameters
from pipeline.storage.outputs import output_names, renamed, select_output
from pipeline.storage.units import power as units_power

KEPT_ATTRS = ("title", "study", "swept_parameters", "method", "device", "dtype", "sweep_kind", "source", "design")
"""Attrs of the sensitivity dataset a summary keeps."""

SHARED_ATTRS = ("Conventions", "history", *KEPT_ATTRS)
"""Attrs of a summary that are the same for every named output (the others are each output's)."""


def _units(da: xr.DataArray, power: int = 1) -> dict[str, str]:
    units = da.attrs.get("units")
    if units is None:
        return {}
    return {"units": units_power(units, power)}


def _design_units(summary: xr.Dataset, ds: xr.Dataset, params: list[str]) -> None:
    """Units of a design's measures: indices and their bounds are fractions of a variance (``1``),
    variances in units(y)^2, the DGSM in units(dy/dv)^2 and mu*, sigma in units(dy/dv), where ``v``
    is ``ln p`` for a log distribution (``dy/d ln p`` has the units of y)."""
    y_units = ds["y"].attrs.get("units")
    for name in summary.data_vars:
        if name.startswith("sobol_") or name in ("activity_scores",):
            summary[name].attrs.setdefault("units", "1")
        elif name in ("y_var", "y_var_linear") and y_units:
            summary[name].attrs["units"] = units_power(y_units, 2)
    for p in params:
        log = str(ds.attrs.get(f"distribution_{p}", "")).startswith(("loguniform", "lognormal"))
        dy_units = y_units if log else ds[derivative_name(p)].attrs.get("units") if derivative_name(p) in ds else None
        if not dy_units:
            continue
        for name, exponent in ((f"dgsm_{p}", 2), (f"mu_star_{p}", 1), (f"sigma_{p}", 1)):
            if name in summary:
                summary[name].attrs["units"] = units_power(dy_units, exponent)
        if f"mu_star_scaled_{p}" in summary and y_units:
            summary[f"mu_star_scaled_{p}"].attrs["units"] = y_units


def summarise(ds: xr.Dataset) -> xr.Dataset:
    """Summary statistics of a sensitivity dataset (see module docstring), per swept parameter.

    For a sampled design (dim ``point``) the sweep-wide measures are those of
    :func:`pipeline.design.analyses.design_summary`: DGSM and bounds on Sobol' indices, and for a
    Saltelli design the Sobol' indices themselves. A model of several named outputs gets each
    output's summary, named for it (:func:`summary_of` gives one back as if it were the only one).
    """
    names = output_names(ds)
    if names != ["y"]:
        return _summarise_outputs(ds, names)
    params = swept_parameters(ds)
    sweep = sweep_dims(ds)
    if sweep == ["point"]:
        return _design(ds, params)
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
        second = second_derivative_name(p)
        if second in ds:  # method.order 2
            d2y = ds[second].astype("float64")
            variables[f"{second}_mean"] = (d2y.mean("sample"), f"mean over samples of d2y/d{p}2", _units(d2y))
            variables[f"{second}_std"] = (
                d2y.std("sample"),
                f"standard deviation over samples of d2y/d{p}2",
                _units(d2y),
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
    return _with_attrs(summary, ds)


def _design(ds: xr.Dataset, params: list[str]) -> xr.Dataset:
    """A sampled design's summary: its answers over the points (module doc), read a block of points at
    a time. No per-point reductions over samples: they would be as large as the data itself, which
    ``ds.mean("sample")`` gives where wanted."""
    summary, extra = design_summary(ds, params)
    _design_units(summary, ds, params)
    return _with_attrs(summary, ds, extra)


def _with_attrs(summary: xr.Dataset, ds: xr.Dataset, extra: dict[str, str | int] | None = None) -> xr.Dataset:
    summary.attrs = {
        **header(ds.attrs.get("title", ""), "summary of the sensitivity dataset (pipeline.summary)"),
        **{k: ds.attrs[k] for k in KEPT_ATTRS if k in ds.attrs},
        **(extra or {}),
    }
    return summary


def _summary_name(var: str, name: str) -> str:
    """A summary variable of output ``name``: ``y_mean`` -> ``T_mean``, ``dy_dC_mean`` -> ``dT_dC_mean``,
    ``sobol_total_aggregated`` -> ``T_sobol_total_aggregated``."""
    if var.startswith("y_"):
        return name + var[1:]
    return renamed(var, name) or f"{name}_{var}"


def _summarise_outputs(ds: xr.Dataset, names: list[str]) -> xr.Dataset:
    """Each named output summarised alone; its variables named for it (and tagged ``output``), its own
    attrs (the checks of its indices, ...) prefixed ``<name>_``."""
    parts, attrs = [], {}
    for name in names:
        part = summarise(select_output(ds, name))
        for var in part.data_vars:
            part[var].attrs.update(output=name, summary_variable=str(var))
        attrs = attrs or {k: v for k, v in part.attrs.items() if k in SHARED_ATTRS}
        attrs.update({f"{name}_{k}": v for k, v in part.attrs.items() if k not in SHARED_ATTRS})
        part = part.rename({v: _summary_name(str(v), name) for v in part.data_vars})
        part.attrs = {}
        parts.append(part)
    out = xr.merge(parts, combine_attrs="override")  # each variable is in one part: its own attrs
    out.attrs = {**attrs, "output_names": " ".join(names)}
    return out


def summary_of(summary: xr.Dataset, name: str) -> xr.Dataset:
    """The summary of output ``name`` of a several-output summary, named as if it were the only output."""
    if not summary.attrs.get("output_names"):
        return summary
    own = {v: summary[v].attrs["summary_variable"] for v in summary.data_vars if summary[v].attrs.get("output") == name}
    view = summary[list(own)].rename(own)
    prefix = f"{name}_"
    view.attrs = {
        **{k: v for k, v in summary.attrs.items() if k in SHARED_ATTRS},
        **{k.removeprefix(prefix): v for k, v in summary.attrs.items() if k.startswith(prefix)},
        "output_name": name,
    }
    return view
