"""The plan of a sensitivity run: everything decided and checked before the first derivative.

:func:`plan` validates the options, the parameters and the inputs, resolves the device and dtype,
binds the model's parameters (:mod:`pipeline.derivatives.routine`), evaluates the model once and
checks the dataset's names and sizes; a failure names what to change before any compute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_map

from pipeline.checks import (
    check_attrs,
    check_bind,
    check_choice,
    check_dataset_names,
    check_device,
    check_parameter_name,
    is_tensor_path,
)
from pipeline.config.sizes import check_grid_size, check_result_size
from pipeline.derivatives.compiled import warn_if_unrolled
from pipeline.derivatives.guards import check_cast, check_model_runs, check_samples, check_x
from pipeline.derivatives.methods import ieee_float32
from pipeline.derivatives.opcost import is_op_bound
from pipeline.derivatives.routine import Routine, as_routine
from pipeline.design.sampling import Design
from pipeline.errors import ConfigError
from pipeline.inputs import InputTree, input_leaves, input_tree, to_run
from pipeline.options import Options
from pipeline.storage.dataset import dataset_dims

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else CPU; an unavailable CUDA is an error."""
    if str(device) == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    check_device(str(device))
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"invalid device={str(device)!r}: CUDA is not available on this machine; use device=auto or device=cpu"
        )
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, x: torch.Tensor | None) -> torch.dtype:
    """``None`` keeps a floating ``x``'s dtype, else torch's default dtype."""
    if dtype is None:
        if x is not None and x.is_floating_point() and x.dtype not in DTYPES.values():
            raise ConfigError(
                f"invalid x of dtype {str(x.dtype).removeprefix('torch.')}: sensweep computes in float32 or "
                "float64 (half precision has no room for derivatives checked against differences); pass "
                "dtype='float32' or dtype='float64' and x is converted"
            )
        return x.dtype if x is not None and x.is_floating_point() else torch.get_default_dtype()
    if isinstance(dtype, torch.dtype):
        return dtype
    check_choice("dtype", dtype, DTYPES)
    return DTYPES[dtype]


def _swept_grid(params: Mapping[str, Any], tensors_bound: bool = False) -> dict[str, np.ndarray]:
    """Validated 1-D values per swept parameter (several parameters form a grid); none is allowed
    when whole tensors are bound (derivatives at the model's own values only)."""
    if isinstance(params, Mapping) and not params and tensors_bound:
        return {}
    if not isinstance(params, Mapping) or not params:
        raise ConfigError(
            f"invalid params={params!r}: give the swept parameters and their values, e.g. {{'C': values}}"
        )
    grid = {}
    for name, values in params.items():
        check_parameter_name(name, "params")
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        values = np.array(values, dtype=np.float64)  # a copy: torch needs a writable array
        if values.ndim != 1 or values.size == 0:
            raise ConfigError(
                f"invalid params[{name!r}]: need a non-empty 1-D sequence of values, got shape {values.shape}"
            )
        if not np.isfinite(values).all():
            raise ConfigError(f"invalid params[{name!r}]: {int((~np.isfinite(values)).sum())} non-finite values")
        grid[name] = values
    return grid


def grid_points(grid: dict[str, np.ndarray]) -> np.ndarray:
    """All points of the grid, ``(N, P)``, first parameter slowest (C order); one point without any."""
    if not grid:
        return np.zeros((1, 0))
    mesh = np.meshgrid(*grid.values(), indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=-1)


@dataclass(frozen=True)
class Plan:
    """A checked run: the model as a routine, the points, the inputs on the device, and what the
    first evaluation told about the model."""

    options: Options
    routine: Routine
    grid: dict[str, np.ndarray]
    """The swept parameters' values: a grid's axes, or a design's columns."""
    design: Design | None
    x_run: InputTree
    """The inputs on the run's device and dtype, as the model gets them."""
    kept: InputTree
    """A copy of the inputs on the CPU: what the dataset stores, and what ``x_run`` must stay."""
    points: torch.Tensor
    """``(N, directions)``: the swept values, then each bound tensor's elements at the model's own values."""
    device: torch.device
    dtype: torch.dtype
    outputs: int
    """Output elements per point (samples x output elements)."""
    op_bound: bool
    """The model's cost is torch's cost per call (:mod:`pipeline.derivatives.opcost`)."""
    reverse_first: str
    """Why ``auto`` starts with reverse mode (more directions than outputs), or empty."""
    calls: int

    @property
    def swept(self) -> list[str]:
        return [*self.grid, *(t.name for t in self.routine.tensors)]


def _points(
    grid: dict[str, np.ndarray], design: Design | None, routine: Routine, options: Options, device, dtype
) -> torch.Tensor:
    """The points to evaluate: grid or design points, then each bound tensor's own values."""
    check_grid_size({"point": len(design)} if design else {p: len(v) for p, v in grid.items()}, key="params")
    table = design.table if design else grid_points(grid)
    points = torch.as_tensor(table, dtype=dtype, device=device)
    if not routine.tensors:
        return points
    if options.method == "none":
        names = ", ".join(t.name for t in routine.tensors)
        raise ConfigError(
            f"invalid method='none': it computes no derivative, and the bound tensors {names} ask for them"
        )
    if options.order == 2:
        raise ConfigError("invalid order=2: not with a whole tensor bound (second derivatives of swept scalars only)")
    own = torch.cat([t.values.reshape(-1) for t in routine.tensors]).to(device, dtype)
    return torch.cat([points, own.expand(len(points), -1)], dim=1)


def _inputs(x: Any) -> tuple[InputTree, dict[str, torch.Tensor]]:
    x = input_tree(x)
    leaves = input_leaves(x)
    for name, leaf in leaves.items():
        check_x(leaf, name)
    check_samples(leaves)
    return x, leaves


def plan(
    model: Callable | nn.Module,
    x: Any,
    params: Mapping[str, Any] | Design,
    options: Options,
    *,
    bind: Mapping[str, str] | None = None,
    output_dims: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    units: Mapping[str, str] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Plan:
    """Check everything :func:`pipeline.sensitivity` is given and evaluate the model once (its docstring
    describes the arguments); the returned plan is what :func:`pipeline.api.run` computes."""
    design = params if isinstance(params, Design) else None
    tensors_bound = any(is_tensor_path(str(v)) for v in (bind or {}).values())
    grid = design.columns() if design is not None else _swept_grid(params, tensors_bound=tensors_bound)
    options.checked(n_params=len(grid))
    check_bind(bind, grid)
    check_attrs(attrs)
    x, leaves = _inputs(x)
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, next((t for t in leaves.values() if t.is_floating_point()), None))
    routine = as_routine(
        model,
        list(grid),
        bind=dict(bind) if bind else None,
        device=device,
        dtype=dtype,
        output_dims=output_dims,
        units=dict(units or {}),
    )
    if options.step is not None and options.step >= torch.finfo(dtype).max:
        raise ConfigError(f"invalid step={options.step!r}: too large for dtype={str(dtype).removeprefix('torch.')}")
    x_run = to_run(x, device, dtype)
    kept = tree_map(lambda t: t.detach().to("cpu", copy=True), x_run)
    check_cast(leaves, input_leaves(x_run), grid, dtype, collisions=design is None)
    points = _points(grid, design, routine, options, device, dtype)
    swept = [*grid, *(t.name for t in routine.tensors)]
    names = {"inputs": input_leaves(x_run), "design": design is not None}
    check_dataset_names(swept, output_dims=(), **names)
    with ieee_float32(device):
        y0, cost = check_model_runs(routine.fn, x_run, points[0], grid)
        out_dims, in_dims = dataset_dims(routine, x_run, y0)
    check_dataset_names(swept, output_dims=out_dims, input_dims=in_dims, **names)
    if options.compile:
        warn_if_unrolled(cost.calls, routine.stepper)
    directions = points.shape[1]
    derivatives = 0 if options.method == "none" else directions + (options.order == 2)
    check_result_size(len(points), y0.numel(), 1 + derivatives, torch.finfo(dtype).bits // 8)
    reverse_first = ""
    if options.method == "auto" and options.order == 1 and not options.compile and directions > y0.numel():
        what = "parameters and tensor elements" if routine.tensors else "parameters"
        reverse_first = f"reverse mode: {directions} directions ({what}) outnumber {y0.numel()} outputs"
    return Plan(
        options=options,
        routine=routine,
        grid=grid,
        design=design,
        x_run=x_run,
        kept=kept,
        points=points,
        device=device,
        dtype=dtype,
        outputs=y0.numel(),
        op_bound=device.type == "cpu" and options.chunk_size is None and is_op_bound(cost),
        reverse_first=reverse_first,
        calls=cost.calls,
    )
