"""The sensitivity dataset: named dims, coordinates for every dim, CF attributes.

Dims are ``(<param>, sample, *output dims)`` for ``y`` and ``dy_d<param>``, and
``(sample, *input dims)`` for ``x``. Attrs carry meaning (units, long_name, provenance);
how it is stored on disk (compression, chunking) is :func:`pipeline.storage.write.encoding`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from pipeline.derivatives.routine import Routine
from pipeline.design.sampling import Design
from pipeline.errors import ConfigError
from pipeline.inputs import InputTree, input_leaves
from pipeline.storage.names import connected_name, derivative_name, header, second_derivative_name
from pipeline.storage.outputs import split_outputs
from pipeline.storage.units import power, ratio


def connected_variable(param: str, flags: np.ndarray, dims: list[str]) -> xr.DataArray:
    """CF flag variable: 1 where ``param`` reaches the output, 0 where it is structurally independent."""
    return xr.DataArray(
        flags.astype(np.int8),
        dims=dims,
        attrs={
            "long_name": f"whether {param} reaches y through the computation graph",
            "flag_values": np.array([0, 1], dtype=np.int8),
            "flag_meanings": "structurally_independent connected",
            "comment": "0: no path from the parameter to this output (detach, unused parameter, unselected "
            f"branch), so dy/d{param} is zero by structure, not by value; checked at the first, middle "
            "and last value of the sweep",
        },
    )


def _dim_names(declared: Sequence[str] | None, ndim: int, default: str, what: str) -> list[str]:
    if declared is not None:
        if len(declared) != ndim:
            raise ValueError(
                f"the model declares {what} dims {list(declared)} but its {what} has {ndim} dims after the sample dim"
            )
        return list(declared)
    return [default] if ndim == 1 else [f"{default}_{i}" for i in range(ndim)]


def dataset_dims(routine: Routine, x: InputTree, y: torch.Tensor) -> tuple[list[str], list[str]]:
    """The output dims and input dims a dataset of ``routine`` at inputs ``x`` (output ``y`` at
    one point) will have: known before anything is computed, so that names are checked first."""
    try:
        out_dims = _dim_names(routine.output_dims, y.dim() - 1, "output", "output")
        if isinstance(x, torch.Tensor):
            in_dims = _dim_names(routine.input_dims, x.dim() - 1, "feature", "input")
        else:
            in_dims = [
                f"{name.removeprefix('x_')}_dim{i}"
                for name, leaf in input_leaves(x).items()
                for i in range(1, leaf.dim())
            ]
    except ValueError as err:
        raise ConfigError(str(err)) from err
    checks = [("output", out_dims, tuple(y.shape[1:]), routine.output_coords)]
    if isinstance(x, torch.Tensor):
        checks.append(("input", in_dims, tuple(x.shape[1:]), routine.input_coords))
    for what, dims, shape, given in checks:
        for dim, size in zip(dims, shape, strict=True):
            if dim in given and len(given[dim]) != size:
                tensor = f"x of shape {tuple(x.shape)}" if what == "input" else f"its output of shape {tuple(y.shape)}"
                raise ConfigError(
                    f"{tensor} does not fit the model: its {what} dim {dim!r} has {len(given[dim])} entries "
                    f"({', '.join(map(str, given[dim]))}), not {size}; give inputs of the model's shape"
                )
    return out_dims, [*in_dims, *(d for t in routine.tensors for d in t.dims)]


def _coords(dims: list[str], shape: Sequence[int], given: dict[str, Any]) -> dict[str, Any]:
    coords = {}
    for dim, size in zip(dims, shape, strict=True):
        values = given.get(dim)
        if values is None:
            values = np.arange(size)
        elif len(values) != size:
            raise ValueError(f"coordinate {dim!r} has {len(values)} values for a dim of size {size}")
        coords[dim] = np.asarray(values)
    return coords


def _derivative_units(y_units: str | None, param_units: str | None) -> str | None:
    if y_units is None or param_units is None:
        return None
    return ratio(y_units, param_units)


def _with_coord_attrs(da: xr.DataArray, units: dict[str, str]) -> xr.DataArray:
    for dim in da.dims:
        da[dim].attrs = {"long_name": {"sample": "sample index", "t": "elapsed time"}.get(dim, dim.replace("_", " "))}
        if dim in units:
            da[dim].attrs["units"] = units[dim]
    return da


def input_variable(model: Any, x: torch.Tensor, units: dict[str, str]) -> xr.DataArray:
    """``x`` with dims ``(sample, *input dims)`` named by the model (``input_dims``), and coords."""
    dims = _dim_names(getattr(model, "input_dims", None), x.dim() - 1, "feature", "input")
    coords = {"sample": np.arange(x.shape[0]), **_coords(dims, x.shape[1:], getattr(model, "input_coords", {}))}
    attrs = {"long_name": "model input x", **_input_units(units.get("x"), dims, coords)}
    da = xr.DataArray(x.detach().cpu().numpy(), dims=["sample", *dims], coords=coords, attrs=attrs)
    return _with_coord_attrs(da, units)


def _input_units(given: Any, dims: list[str], coords: dict[str, Any]) -> dict[str, str]:
    """The units attr of ``x``; where its components differ in units (a state of position and
    velocity: ``{position: m, velocity: m s-1}`` by its last dim's coordinates), no single ``units``
    (it would be wrong for some) but ``units_by_<dim>``, and the components named in ``comment``."""
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        return {"units": str(given)}
    last = dims[-1] if dims else None
    names = [str(c) for c in coords.get(last, [])] if last else []
    if sorted(map(str, given)) != sorted(names):
        raise ConfigError(
            f"invalid units of x {dict(given)}: a unit per component names each coordinate of x's last dim "
            f"{last!r} ({', '.join(names) or 'it has none'})"
        )
    listed = "; ".join(f"{c}: {given[c]}" for c in names)
    return {f"units_by_{last}": listed, "comment": f"components in different units ({listed})"}


def input_variables(model: Any, x: InputTree, units: dict[str, str]) -> dict[str, xr.DataArray]:
    """The dataset variables of ``x``: ``x`` (:func:`input_variable`) for one tensor; for a dict or
    tuple of inputs one variable ``x_<key>`` each, dims ``(sample, <key>_dim1, ...)``, its key in the
    attr ``input_key`` (the dataset's attr ``input_structure`` says dict or tuple)."""
    if isinstance(x, torch.Tensor):
        return {"x": input_variable(model, x, units)}
    variables = {}
    for name, leaf in input_leaves(x).items():
        key = name.removeprefix("x_")
        dims = [f"{key}_dim{i}" for i in range(1, leaf.dim())]
        attrs = {"long_name": f"model input {key}", "input_key": key}
        if name in units:
            attrs["units"] = units[name]
        variables[name] = xr.DataArray(
            leaf.detach().cpu().numpy(),
            dims=["sample", *dims],
            coords={
                "sample": np.arange(leaf.shape[0]),
                **{d: np.arange(n) for d, n in zip(dims, leaf.shape[1:], strict=True)},
            },
            attrs=attrs,
        )
    return variables


def input_structure(x: InputTree) -> dict[str, str]:
    """The dataset attr that tells how to rebuild a dict or tuple of inputs (none for one tensor)."""
    return {} if isinstance(x, torch.Tensor) else {"input_structure": "dict" if isinstance(x, dict) else "tuple"}


def _connectivity(
    variables: dict[str, Any], params: list[str], connected: torch.Tensor | None, dims: list[str]
) -> dict[str, int]:
    """The connectivity flags of each parameter (into ``variables``) and their counts (attrs)."""
    if connected is None:
        return {}
    for i, param in enumerate(params):
        variables[connected_name(param)] = connected_variable(param, connected[..., i].numpy(), dims)
    return {"structurally_independent_outputs": int((~connected).sum()), "outputs": int(connected[..., 0].numel())}


def build_dataset(
    routine: Routine,
    grid: dict[str, np.ndarray],
    x: InputTree,
    y: torch.Tensor,
    dy: torch.Tensor,
    *,
    d2y: torch.Tensor | None = None,
    connected: torch.Tensor | None = None,
    design: Design | None = None,
    title: str = "",
    history_note: str = "",
    attrs: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Assemble ``y``, ``dy/d<param>`` per parameter and ``x`` into the dataset's schema (docs/reference/outputs.md).

    ``grid`` maps each swept parameter to its values; ``y`` and ``dy`` hold the grid's points
    flattened in C order (first parameter slowest), ``dy`` with one trailing entry per parameter.
    """
    params, units = list(grid), routine.units
    out_dims = _dim_names(routine.output_dims, y.dim() - 2, "output", "output")
    if design is None:  # a grid: one dim per parameter
        shape, sweep = [len(v) for v in grid.values()], params
        sweep_coords = {p: np.asarray(v, dtype=np.float64) for p, v in grid.items()}
    else:  # a sampled design: one dim `point`, a coordinate variable per parameter
        shape, sweep = [len(design)], ["point"]
        point = np.arange(design.first_point, design.first_point + len(design))
        sweep_coords = {"point": point, **{p: ("point", np.asarray(v)) for p, v in grid.items()}}
    coords = {
        **sweep_coords,
        "sample": np.arange(y.shape[1]),
        **_coords(out_dims, y.shape[2:], routine.output_coords),
    }
    dims = [*sweep, "sample", *out_dims]
    y_units = {"units": units["y"]} if "y" in units else {}
    variables = {"y": (dims, y.reshape(*shape, *y.shape[1:]).numpy(), {"long_name": "model output y", **y_units})}
    for i, param in enumerate(params if dy.shape[-1] else ()):  # method "none": no derivative
        dy_units = _derivative_units(units.get("y"), units.get(param))
        variables[derivative_name(param)] = (
            dims,
            dy[..., i].reshape(*shape, *y.shape[1:]).numpy(),
            {"long_name": f"derivative of y with respect to {param}", **({"units": dy_units} if dy_units else {})},
        )
    first = len(params)
    for tensor in routine.tensors:  # dims of the tensor (or slice) after y's, named <W>_dim<i>
        count = int(np.prod(tensor.shape))
        dy_units = _derivative_units(units.get("y"), units.get(tensor.name))
        variables[derivative_name(tensor.name)] = (
            [*dims, *tensor.dims],
            dy[..., first : first + count].reshape(*shape, *y.shape[1:], *tensor.shape).numpy(),
            {
                "long_name": f"derivative of y with respect to {tensor.path} (at the model's own values)",
                "bound_to": tensor.path,
                **({"units": dy_units} if dy_units else {}),
            },
        )
        coords.update({d: c for d, c in zip(tensor.dims, tensor.coords, strict=True)})
        first += count
    if d2y is not None:
        (param,) = params
        variables[second_derivative_name(param)] = (
            dims,
            d2y.reshape(*shape, *y.shape[1:]).numpy(),
            {
                "long_name": f"second derivative of y with respect to {param}",
                **({"units": ratio(units["y"], power(units[param], 2))} if "y" in units and param in units else {}),
            },
        )
    for name, x_var in input_variables(routine, x, units).items():
        clash = set(x_var.dims[1:]) & set(out_dims)
        variables[name] = x_var.rename({d: f"in_{d}" for d in clash})
    structure = _connectivity(variables, params, connected, dims[len(sweep) :])
    ds = xr.Dataset(variables, coords=coords)  # at once: one alignment, not one per variable
    _with_coord_attrs(ds["y"], units)
    if routine.outputs.named:  # a dict or tuple of outputs, computed as one flat output
        ds = split_outputs(ds, routine.outputs, params, units, routine.output_coords)
    for param in params:
        ds[param].attrs["long_name"] = f"swept parameter {param}"
    bound = "; ".join(f"{p}={path}" for p, path in routine.bound_to.items())
    ds.attrs = {
        **header(
            title or f"Sensitivity of {', '.join(routine.outputs.names) or 'y'} to {', '.join(params)}",
            " ".join(sys.argv) + (f" ({history_note})" if history_note else ""),
            "sensweep (pipeline.sensitivity)",
        ),
        "swept_parameters": " ".join(params),
        **({"bound_to": bound} if bound else {}),
        **structure,
        **input_structure(x),
        **(design.attrs() if design is not None else {}),
        **{k: ds.attrs[k] for k in ("output_names", "output_structure") if k in ds.attrs},
        **(attrs or {}),
    }
    return ds
