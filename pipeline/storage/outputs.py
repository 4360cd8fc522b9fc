"""Several named outputs in the dataset: ``<name>``, ``d<name>_d<param>`` with each output's own dims.

The engine computes one flat output (:mod:`pipeline.derivatives.outputs`); :func:`split_outputs`
turns its ``y``, ``dy_d<param>``, ``d2y_d<param>2`` and connectivity flags into one variable per
named output, each with its own dims (``output_dims`` per name, else ``<name>_dim<i>``), coordinates
and units (``units`` per name). The analyses read one output at a time as if it were the only one
(:func:`select_output`: ``<name>`` as ``y``), and verify reads them all as the flat output again
(:func:`flat_outputs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from pipeline.errors import ConfigError
from pipeline.storage.units import power, ratio

if TYPE_CHECKING:  # the reading stages start without torch
    from pipeline.derivatives.outputs import Outputs

FLAT = "output"
"""The flat output dim the dataset is built with before it is split."""


def output_names(ds: xr.Dataset) -> list[str]:
    """The dataset's outputs: its attr ``output_names``, or ``["y"]`` for a model of one tensor."""
    return str(ds.attrs["output_names"]).split() if ds.attrs.get("output_names") else ["y"]


def renamed(var: str, name: str) -> str | None:
    """``y``-based variable name ``var`` for output ``name`` (``dy_dC`` -> ``dT_dC``), None if not one."""
    if var == "y":
        return name
    for prefix in ("dy_", "d2y_"):
        if var.startswith(prefix):
            return prefix.replace("y", name) + var[len(prefix) :]
    return None


def _units(var: str, name: str, params: list[str], units: dict[str, str]) -> str | None:
    y = units.get(name)
    if y is None or var.endswith("_connected"):
        return None
    if var == "y":
        return y
    for p in params:
        if var == f"dy_d{p}" and p in units:
            return ratio(y, units[p])
        if var == f"d2y_d{p}2" and p in units:
            return ratio(y, power(units[p], 2))
    return None


def _dims(outputs: Outputs, name: str, shape: tuple[int, ...]) -> list[str]:
    dims = outputs.dims.get(name)
    if dims is None:
        return [f"{name}_dim{i}" for i in range(len(shape))]
    if len(dims) != len(shape):
        raise ConfigError(
            f"the model declares output dims {list(dims)} for {name!r} but that output has {len(shape)} dims "
            f"after the sample dim (shape {shape})"
        )
    return list(dims)


def split_outputs(
    ds: xr.Dataset, outputs: Outputs, params: list[str], units: dict[str, str], coords: dict[str, Any]
) -> xr.Dataset:
    """``ds`` built on the flat output, with one variable per named output instead (module doc)."""
    clash = [n for n in outputs.names if n in ds.variables or n in params]
    if clash:
        raise ConfigError(
            f"invalid output names {clash}: they are already a parameter, input or variable of the dataset; "
            "rename the model's outputs"
        )
    taken = {*params, "point", "sample", *(d for v in ds.data_vars if FLAT not in ds[v].dims for d in ds[v].dims)}
    for name, shape in zip(outputs.names, outputs.shapes, strict=True):
        reused = [d for d in _dims(outputs, name, shape) if d in taken]
        if reused:
            raise ConfigError(
                f"invalid output dims {reused} of output {name!r}: already a parameter, the sample or point dim, "
                "or an input dim; give the output's dims names of their own"
            )
    bounds = np.cumsum([0, *outputs.sizes])
    variables: dict[str, xr.DataArray] = {}
    for var, da in ds.data_vars.items():
        if FLAT not in da.dims:
            variables[var] = da
            continue
        axis = da.dims.index(FLAT)
        for i, (name, shape) in enumerate(zip(outputs.names, outputs.shapes, strict=True)):
            values = da.isel({FLAT: slice(int(bounds[i]), int(bounds[i + 1]))}).values
            dims = _dims(outputs, name, shape)
            attrs = {k: v for k, v in da.attrs.items() if k != "units"}
            if "long_name" in attrs:
                attrs["long_name"] = (
                    attrs["long_name"].replace("output y", f"output {name}").replace(" y ", f" {name} ")
                )
            found = _units(str(var), name, params, units)
            out = xr.DataArray(
                values.reshape(*values.shape[:axis], *shape, *values.shape[axis + 1 :]),
                dims=[*da.dims[:axis], *dims, *da.dims[axis + 1 :]],
                attrs={**attrs, **({"units": found} if found else {})},
            )
            variables[renamed(str(var), name) or f"{var}_{name}"] = out
    split = xr.Dataset(variables, coords={k: v for k, v in ds.coords.items() if k != FLAT})
    for name, shape in zip(outputs.names, outputs.shapes, strict=True):
        for dim, size in zip(_dims(outputs, name, shape), shape, strict=True):
            given = coords.get(dim)
            split.coords[dim] = np.asarray(given) if given is not None and len(given) == size else np.arange(size)
            split[dim].attrs = {"long_name": dim.replace("_", " "), **({"units": units[dim]} if dim in units else {})}
    split.attrs = {**ds.attrs, "output_names": " ".join(outputs.names), "output_structure": outputs.structure}
    return split


def select_output(ds: xr.Dataset, name: str) -> xr.Dataset:
    """The dataset of output ``name`` alone, as if it were the model's only output (``<name>`` as ``y``)."""
    names = output_names(ds)
    if names == ["y"]:
        return ds
    if name not in names:
        raise ValueError(f"no output {name!r}: the dataset's outputs are {', '.join(names)}")
    keep, rename = [], {}
    for var in map(str, ds.data_vars):
        owner = next((n for n in names if var == n or _belongs(var, n)), None)
        if owner in (None, name):  # the inputs, and this output's variables
            keep.append(var)
        if owner == name:  # the inverse of renamed(): T -> y, dT_dC -> dy_dC, d2T_dC2 -> d2y_dC2
            rename[var] = "y" if var == name else "d" + var[1:].replace(name, "y", 1)
    view = ds[keep].rename(rename)
    view.attrs = {**ds.attrs, "output_name": name}
    view.attrs.pop("output_names", None)
    return view


def _belongs(var: str, name: str) -> bool:
    return var.startswith((f"d{name}_d", f"d2{name}_d"))


def flat_outputs(ds: xr.Dataset, sweep: list[str], params: list[str]) -> xr.Dataset:
    """The dataset with its named outputs as the one flat output the engine computes (``y``, ``dy_d<p>``
    on dim ``output``, outputs in the model's order): what verify compares with a recomputation. Loads
    the values: give it the few points verify checks."""
    names = output_names(ds)
    if names == ["y"]:
        return ds
    lead = [*sweep, "sample"]

    def flat(var_of: Any) -> xr.DataArray:
        arrays, kept = [], []
        for n in names:
            da = ds[var_of(n)]
            kept = [d for d in lead if d in da.dims]
            da = da.transpose(*kept, ...)
            arrays.append(da.values.reshape(*da.shape[: len(kept)], -1))
        return xr.DataArray(np.concatenate(arrays, axis=-1), dims=[*kept, FLAT])

    variables = {"y": flat(lambda n: n)}
    for p in params:
        for template in ("d{n}_d{p}", "d{n}_d{p}_connected"):
            if all(template.format(n=n, p=p) in ds for n in names):
                variables[template.format(n="y", p=p)] = flat(lambda n, p=p, t=template: t.format(n=n, p=p))
    owned = {v for v in ds.data_vars if v in names or any(_belongs(str(v), n) for n in names)}
    others = {v: ds[v] for v in ds.data_vars if v not in owned}
    coords = {c: ds.coords[c] for c in ds.coords if set(ds.coords[c].dims) <= set(lead)}
    out = xr.Dataset({**variables, **others}, coords=coords)
    out.attrs = dict(ds.attrs)
    return out
