"""Workflow stage 4: reduce ``sensitivity.nc`` to ``summary.nc``.

Per value of the swept parameter, reductions over samples; over the whole range, the
derivative-based global sensitivity measure (DGSM, mean of ``(dy/dC)^2`` over the sweep
points, Sobol' & Kucherenko 2009) and ``mu_star`` (mean ``|dy/dC|``, as in Morris screening).
Averages over the sweep weight every sweep point equally: uniform in C for a linear sweep,
uniform in log C for a log sweep. The input is opened lazily (dask), so the sweep need not
fit in memory.

``python -m pipeline.stages.summarise SENSITIVITY [SENSITIVITY ...] -o SUMMARY`` (``sensitivity.nc``, the
part files, or a ``parts/`` folder).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections.abc import Sequence

import xarray as xr

from pipeline.design.bounds import design_bounds
from pipeline.stages.cli import run_cli
from pipeline.storage.names import CONVENTIONS, derivative_name, sweep_dims, swept_parameters
from pipeline.storage.parts import Source, one_or_many, open_sensitivity, source_files
from pipeline.storage.read import reading
from pipeline.storage.write import write_netcdf


def _units(da: xr.DataArray, power: int = 1) -> dict[str, str]:
    units = da.attrs.get("units")
    if units is None:
        return {}
    return {"units": units if power == 1 else f"({units})^{power}"}


def summarise(ds: xr.Dataset) -> xr.Dataset:
    """Summary statistics of a sensitivity dataset (see module docstring), per swept parameter.

    For a sampled design (dim ``point``) the sweep-wide measures are the bounds of
    :mod:`pipeline.design.bounds` (DGSM with each parameter's distribution, Sobol' index bounds).
    """
    params = swept_parameters(ds)
    sweep = sweep_dims(ds)
    y = ds["y"].astype("float64")  # float64 sums: a float32 mean over 10^8 values is off by 1e-4
    variables = {
        "y_mean": (y.mean("sample"), "mean over samples of y", _units(y)),
        "y_std": (y.std("sample"), "standard deviation over samples of y", _units(y)),
        "elasticity_defined": ((y != 0).sum("sample"), "number of samples where elasticities are defined", {}),
    }
    for p in params:
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
    if sweep == ["point"]:
        summary.update(design_bounds(ds.load(), params))
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    keep = ("title", "study", "swept_parameters", "method", "device", "dtype", "sweep_kind", "source", "design")
    summary.attrs = {
        "Conventions": CONVENTIONS,
        **{k: ds.attrs[k] for k in keep if k in ds.attrs},
        "history": f"{now}: summary of the sensitivity dataset (pipeline.stages.summarise)",
    }
    return summary


REDUCE_CHUNK_ELEMENTS = 2**21
"""Elements per dask chunk of the reductions (8 MiB of float32), whatever the file's chunks.

The files' own chunks (about 2^18 elements) make a graph of thousands of tasks on a long sweep:
at 100,000 values x 10,000 outputs the summary peaked at 810 MB and took 79 s; chunks of 2^21
elements (209 values), with the float64 sums, take it to 702 MB and 64 s."""


def summarise_file(sensitivity: Source, output: str | os.PathLike) -> None:
    """Summarise a sensitivity NetCDF file (or part files, or a ``parts/`` folder) into ``output``, out of core.

    An input that turns out unreadable is moved aside and named (:func:`pipeline.storage.read.reading`).
    """
    with reading(source_files(sensitivity), "sensitivity file"), open_sensitivity(sensitivity, chunks={}) as ds:
        param = sweep_dims(ds)[0]
        per_value = max(1, ds["y"].size // ds.sizes[param])
        ds = ds.chunk({param: max(1, REDUCE_CHUNK_ELEMENTS // per_value)})
        write_netcdf(summarise(ds), output)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.stages.summarise", description=__doc__.splitlines()[0])
    parser.add_argument("sensitivity", nargs="+", help="sensitivity.nc, a study's part files, or its parts/ folder")
    parser.add_argument("-o", "--output", required=True, help="summary.nc to write")
    args = parser.parse_args(argv)
    run_cli(lambda: summarise_file(one_or_many(args.sensitivity), args.output))


if __name__ == "__main__":
    main()
