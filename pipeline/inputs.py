"""Input batches ``x`` (leading dim = samples), generated from config or read from ``data/``.

Each builder is referenced from ``conf/inputs/*.yaml`` by ``_target_`` and returns a float64
tensor; the job casts it to the run's dtype. Reading never executes code from a data file
(``.npy`` is loaded with ``allow_pickle=False``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor
from torch.utils._pytree import tree_map

from pipeline.config.sizes import GIB, RESULT_MEMORY_FRACTION, available_ram_bytes
from pipeline.errors import ConfigError, clipped
from pipeline.paths import in_workflow, workflow_dir

SUFFIXES = (".npy", ".nc")

InputTree = Tensor | dict[str, Tensor] | tuple[Tensor, ...]
"""``x``: one tensor, or a dict or tuple of tensors (several inputs), each with the sample dim first."""


def input_tree(x: Any) -> InputTree:
    """``x`` as tensors: an array-like, a dict of them (string keys) or a tuple of them."""
    if isinstance(x, Mapping):
        if not x:
            raise ConfigError("invalid x: an empty dict; give at least one input tensor")
        for key in x:
            if not (isinstance(key, str) and key.isidentifier()):
                raise ConfigError(f"invalid x key {key!r}: the keys of a dict of inputs must be names (identifiers)")
        return {key: torch.as_tensor(value).detach() for key, value in x.items()}
    if isinstance(x, tuple) and x and all(isinstance(v, Tensor | np.ndarray) for v in x):
        return tuple(torch.as_tensor(v).detach() for v in x)
    return torch.as_tensor(x).detach()  # inputs are data: one that requires grad is taken as its values


def input_leaves(x: InputTree) -> dict[str, Tensor]:
    """The tensors of ``x`` by their dataset variable name: ``x``, or ``x_<key>`` / ``x_<index>``."""
    if isinstance(x, Tensor):
        return {"x": x}
    items = x.items() if isinstance(x, dict) else enumerate(x)
    return {f"x_{key}": value for key, value in items}


def to_run(x: InputTree, device: torch.device, dtype: torch.dtype) -> InputTree:
    """Floating inputs in the run's dtype, integer and bool inputs as they are (token ids, masks):
    always copies, so that a model writing into its inputs never changes the caller's."""
    return tree_map(lambda t: t.to(device, dtype, copy=True) if t.is_floating_point() else t.to(device, copy=True), x)


def input_from_dataset(ds: xr.Dataset) -> InputTree:
    """``x`` as the dataset stores it (:func:`pipeline.storage.dataset.input_variables`): floats as float64."""

    def tensor(name: str) -> Tensor:
        values = ds[name].values
        return torch.from_numpy(np.asarray(values, np.float64) if np.issubdtype(values.dtype, np.floating) else values)

    names, structure = _stored_inputs(ds)
    return _assembled({key: tensor(name) for key, name in names.items()}, structure)


def _stored_inputs(ds: xr.Dataset) -> tuple[dict[str, str], str | None]:
    """The inputs a dataset stores, ``{key: variable name}``, and how they go together: ``None``
    for the one variable ``x``, else ``"dict"`` or ``"tuple"`` (its attr ``input_structure``)."""
    if "x" in ds:
        return {"x": "x"}, None
    names = {ds[v].attrs["input_key"]: v for v in ds.data_vars if "input_key" in ds[v].attrs}
    return names, ds.attrs.get("input_structure", "dict")


def _assembled(tensors: dict[str, Tensor], structure: str | None) -> InputTree:
    """The tensors of :func:`_stored_inputs` as ``x``: one tensor, a tuple (by index) or a dict."""
    if structure is None:
        return tensors["x"]
    if structure == "tuple":
        return tuple(tensors[k] for k in sorted(tensors, key=int))
    return tensors


def input_arrays(ds: xr.Dataset) -> list[np.ndarray]:
    """The values of every input variable (what the fingerprint hashes)."""
    return [leaf.numpy() for leaf in input_leaves(input_from_dataset(ds)).values()]


def _check_size(elements: int, key: str) -> None:
    need = elements * 8
    if need > available_ram_bytes() * RESULT_MEMORY_FRACTION:
        raise ConfigError(
            f"invalid {key}: x would need {need / GIB:.3g} GiB ({elements:.3g} float64 values), more "
            f"than {RESULT_MEMORY_FRACTION:.0%} of the available memory; use fewer samples"
        )


def arange(num: int = 10) -> Tensor:
    """``x = arange(num)``, one scalar per sample."""
    if num < 1:
        raise ConfigError(f"invalid inputs.args.num={num!r}: must be >= 1")
    _check_size(num, "inputs.args.num")
    return torch.arange(num, dtype=torch.float64)


def random(samples: int = 32, shape: list[int] = (), seed: int = 0) -> Tensor:
    """Standard normal ``x`` of shape ``(samples, *shape)`` from a generator seeded with ``seed``."""
    if samples < 1 or any(n < 1 for n in shape):
        raise ConfigError(f"invalid inputs.args samples={samples!r}, shape={list(shape)!r}: sizes must be >= 1")
    _check_size(samples * math.prod(shape), "inputs.args.samples")
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(samples, *shape, generator=generator, dtype=torch.float64)


def from_file(path: str, variables: list[str] | None = None) -> InputTree:
    """Read ``x`` from a ``.npy`` array or a NetCDF file's variable ``x``; with ``variables``, the
    NetCDF file's variables of those names as a dict of inputs (``{name: tensor}``).

    A relative ``path`` is relative to the workflow folder (the one holding ``conf/``), so a study
    file's ``data/...`` means the same file whatever folder a job runs in.
    """
    return read_x(path, key="inputs.args.path", base=workflow_dir(), variables=variables)


def _checked(array: np.ndarray, key: str, path: str, name: str) -> Tensor:
    """One input array as a tensor: floats as float64, integers and booleans as they are."""
    what = f"{key}={path!r}" + (f" (variable {name!r})" if name != "x" else "")
    if np.iscomplexobj(array):
        raise ConfigError(
            f"invalid {what}: complex values ({array.dtype}) are not supported; store the real "
            "and imaginary parts as separate features"
        )
    if array.ndim == 0 or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ConfigError(
            f"invalid {what}: need a numeric array with a sample dim, got dtype {array.dtype}, shape {array.shape}"
        )
    if 0 in array.shape:
        raise ConfigError(
            f"invalid {what}: x has shape {array.shape}, an empty dim; every dim (samples first) "
            "needs at least one entry"
        )
    if not np.issubdtype(array.dtype, np.floating):
        return torch.from_numpy(np.ascontiguousarray(array))
    if not np.isfinite(array).all():
        raise ConfigError(f"invalid {what}: {np.size(array) - np.isfinite(array).sum()} non-finite values")
    return torch.from_numpy(np.asarray(array, dtype=np.float64))


def read_x(path: str, key: str, base: Path | None = None, variables: list[str] | None = None) -> InputTree:
    """Read ``x`` from ``path`` (relative to ``base`` if given); errors name the config ``key``.

    A NetCDF file holds ``x``, or several inputs (``variables``, or the ``x_<key>`` variables that
    :mod:`pipeline.stages.prepare` writes for a dict or tuple of inputs).
    """
    file = Path(path) if base is None else in_workflow(path, base)
    if file.suffix not in SUFFIXES:
        raise ConfigError(f"invalid {key}={path!r}: supported file types are {', '.join(SUFFIXES)}")
    if not file.is_file():
        where = f" (looked for {file})" if file != Path(path) else ""
        raise ConfigError(f"invalid {key}={path!r}: no such file{where}")
    if variables and file.suffix != ".nc":
        raise ConfigError(f"invalid inputs.args.variables={list(variables)!r}: several inputs need a NetCDF file")
    try:
        if file.suffix == ".npy":
            arrays, structure = {"x": np.load(file, allow_pickle=False)}, None
        else:
            with xr.open_dataset(file, engine="netcdf4") as ds:
                if variables:
                    missing = [v for v in variables if v not in ds.data_vars]
                    if missing:
                        raise ConfigError(
                            f"invalid inputs.args.variables: {path!r} has no variable {missing[0]!r} "
                            f"(has {list(ds.data_vars)})"
                        )
                    arrays, structure = {v: ds[v].values for v in variables}, "dict"
                else:
                    names, structure = _stored_inputs(ds)
                    arrays = {input_key: ds[name].values for input_key, name in names.items()}
                if not arrays:
                    raise ConfigError(f"invalid {key}={path!r}: no variable 'x' (has {list(ds.data_vars)})")
    except (OSError, ValueError, RuntimeError) as err:
        if isinstance(err, ConfigError):
            raise
        what = "not a NetCDF file, or a corrupt one" if file.suffix == ".nc" else "not a .npy file, or a corrupt one"
        raise ConfigError(
            f"invalid {key}={path!r}: cannot read it: {what} ({clipped(str(err), 200) or type(err).__name__})"
        ) from err
    return _assembled({name: _checked(array, key, path, name) for name, array in arrays.items()}, structure)
