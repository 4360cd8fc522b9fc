"""Turn a user's model into a pure function ``f(x, theta) -> y`` of the swept parameters.

``theta`` is a 1-D tensor holding one value per swept parameter, in the order of
``Routine.params``. A function model is called as ``f(x, **{name: theta[i]})``. An
``nn.Module`` is called as ``module(x)`` through :func:`torch.func.functional_call`, with each
bound parameter (or one element of one, ``"branch_b.0.bias[1]"``) replaced by its value. The
module itself is never mutated: its tensors are detached and moved to the run's device and
dtype in a copy.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from pipeline.derivatives.outputs import Outputs
from pipeline.derivatives.timestepper import TimeStepper
from pipeline.errors import ConfigError

_PATH = re.compile(r"^(?P<name>\w[\w.]*?)(?:\[(?P<index>[\d,:\s]+)\])?$")


@dataclass(eq=False)  # hashable by identity: pipeline.derivatives.compiled caches per stepper
class StepFunctions:
    """A :class:`~pipeline.derivatives.timestepper.TimeStepper` model as pure functions of ``theta``.

    ``y = stack([observe(s_0), ..., observe(s_steps)], -1)`` with ``s_0 = initial(x)`` and
    ``s_k+1 = step(s_k)``: what :mod:`pipeline.derivatives.compiled` needs to compile one step.
    """

    initial: Callable[[Tensor, Tensor], tuple[Tensor, ...]]
    step: Callable[[tuple[Tensor, ...], Tensor], tuple[Tensor, ...]]
    observe: Callable[[tuple[Tensor, ...], Tensor], Tensor]
    steps: int


@dataclass
class TensorParameter:
    """A whole tensor (or a slice of one) bound by name: derivatives at the model's own values.

    Its ``values`` (flattened) follow the swept parameters in ``theta``; ``dims`` and ``coords``
    name the kept dims of the selection and their indices in the original tensor.
    """

    name: str
    path: str
    values: Tensor
    dims: list[str]
    coords: list[np.ndarray]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.coords)


@dataclass
class Routine:
    """A pure ``fn(x, theta) -> y`` plus what the dataset needs to name its dims.

    ``theta`` holds the swept parameters (``params``), then the elements of each tensor
    parameter (``tensors``), flattened.
    """

    fn: Callable[[Tensor, Tensor], Tensor]
    params: list[str]
    tensors: list[TensorParameter] = field(default_factory=list)
    bound_to: dict[str, str] = field(default_factory=dict)
    input_dims: Sequence[str] | None = None
    output_dims: Sequence[str] | None = None
    input_coords: dict[str, Any] = field(default_factory=dict)
    output_coords: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    stepper: StepFunctions | None = None
    outputs: Outputs = field(default_factory=Outputs)


def parse_bind_path(path: str) -> tuple[str, tuple[int | slice, ...]]:
    """Split ``"branch_b.0.bias[1]"`` into ``("branch_b.0.bias", (1,))``; ``"w[0:8, 2]"`` into
    ``("w", (slice(0, 8), 2))``."""
    match = _PATH.match(path.replace(" ", ""))
    if match is None:
        raise ConfigError(
            f"invalid bind path {path!r}: expected a dotted parameter name with an optional "
            "index, e.g. 'branch_b.0.bias[1]' or 'conv.weight[0,0,0]', or a slice, e.g. '0.bias[0:8]'"
        )
    index = match["index"]
    if not index:
        return match["name"], ()
    parts: list[int | slice] = []
    for part in index.split(","):
        if ":" in part:
            bounds = part.split(":")
            if len(bounds) != 2:
                raise ConfigError(f"invalid bind path {path!r}: slices take start:stop, e.g. '0.bias[0:8]'")
            parts.append(slice(*(int(b) if b else None for b in bounds)))
        else:
            parts.append(int(part))
    return match["name"], tuple(parts)


def _tensor_parameter(
    param: str, path: str, target: Tensor, selection: tuple[int | slice, ...]
) -> tuple[TensorParameter, Tensor]:
    """The tensor parameter ``param`` and the flat indices it replaces in ``target``."""
    if len(selection) > target.dim():
        raise ConfigError(f"invalid bind {param}={path!r}: {target.dim()} dims, {len(selection)} indices")
    positions = torch.arange(target.numel(), device=target.device).reshape(target.shape)
    try:
        chosen = positions[selection]
    except IndexError as err:
        raise ConfigError(f"invalid bind {param}={path!r}: {err} (shape {tuple(target.shape)})") from err
    if chosen.numel() == 0:
        raise ConfigError(f"invalid bind {param}={path!r}: the selection is empty (shape {tuple(target.shape)})")
    full = (*selection, *([slice(None)] * (target.dim() - len(selection))))
    coords = [np.arange(n)[s] for n, s in zip(target.shape, full, strict=True) if isinstance(s, slice)]
    dims = [f"{param}_dim{i}" for i in range(len(coords))]
    flat = chosen.reshape(-1)
    return TensorParameter(param, path, target.reshape(-1)[flat].clone(), dims, coords), flat


class _Method(nn.Module):
    """Calls ``inner.<method>``, so that :func:`functional_call` can swap the tensors of any method."""

    def __init__(self, inner: nn.Module, method: str):
        super().__init__()
        self.inner = inner
        self.method = method

    def forward(self, *args: Any) -> Any:
        return getattr(self.inner, self.method)(*args)


class _Bindings:
    """Where each swept parameter's value goes in a module's tensors: an element (by mask) for a swept
    scalar, flat indices for a bound tensor or slice; every claim checked against the others."""

    def __init__(self, module: nn.Module, bind: dict[str, str], device: torch.device, dtype: torch.dtype) -> None:
        tensors = {k: v.detach() for k, v in [*module.named_parameters(), *module.named_buffers()]}
        self.tensors = {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in tensors.items()}
        self.module, self.bind = module, bind
        self.elements: list[tuple[str, Tensor, int]] = []  # (tensor name, mask, index in theta), in order
        self.slices: list[tuple[str, Tensor, int]] = []  # (tensor name, flat indices, start in theta)
        self.tensor_params: list[TensorParameter] = []
        self.claimed: dict[str, list[tuple[str, Tensor]]] = {}  # tensor name -> (parameter, mask it replaces)

    def _bound(self, param: str) -> tuple[str, tuple[int | slice, ...]]:
        """The tensor name and index of ``bind[param]``; a name the module lacks fails, naming its tensors."""
        path = self.bind[param]
        name, index = parse_bind_path(path)
        if name not in self.tensors:
            valid = ", ".join(f"{k} {tuple(v.shape)}" for k, v in self.module.named_parameters())
            close = difflib.get_close_matches(name, list(self.tensors), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"invalid bind {param}={path!r}: {type(self.module).__name__} has no parameter {name!r}; "
                f"{hint}Its parameters are: {valid}"
            )
        return name, index

    def _claim(self, param: str, name: str, mask: Tensor) -> None:
        """Two parameters that replace the same element would both be set, the last one winning:
        the other's derivative would be 0, silently. Refused, naming both."""
        for other, other_mask in self.claimed.get(name, []):
            if (mask & other_mask).any():
                raise ConfigError(
                    f"invalid bind: {other}={self.bind[other]!r} and {param}={self.bind[param]!r} both replace "
                    f"{int((mask & other_mask).sum())} element(s) of {name}; bind each parameter to its own "
                    "elements (e.g. 'bias[0]' and 'bias[1:4]')"
                )
        self.claimed.setdefault(name, []).append((param, mask))

    def add_tensor(self, param: str, start: int) -> int:
        """Bind a whole tensor or a slice (not swept: its own values); returns its number of elements."""
        path = self.bind[param]
        name, selection = self._bound(param)
        target = self.tensors[name]
        if not target.is_floating_point():
            raise ConfigError(f"invalid bind {param}={path!r}: {name} is not floating point")
        tensor_param, flat = _tensor_parameter(param, path, target, selection)
        mask = torch.zeros(target.numel(), dtype=torch.bool, device=flat.device)
        mask[flat] = True
        self._claim(param, name, mask.reshape(target.shape))
        self.slices.append((name, flat, start))
        self.tensor_params.append(tensor_param)
        return flat.numel()

    def add_element(self, param: str, i: int) -> None:
        """Bind swept parameter ``i`` to one element of a tensor."""
        path = self.bind[param]
        name, index = self._bound(param)
        target = self.tensors[name]
        in_range = len(index) == target.dim() and all(0 <= k < n for k, n in zip(index, target.shape, strict=True))
        if not in_range:
            example = f"{name}[{','.join(['0'] * target.dim())}]" if target.dim() else name
            raise ConfigError(
                f"invalid bind {param}={path!r}: {name} has shape {tuple(target.shape)}; "
                f"give one in-range index per dim, e.g. {example!r}"
            )
        mask = torch.zeros_like(target, dtype=torch.bool)
        mask[index] = True
        self._claim(param, name, mask)
        self.elements.append((name, mask, i))

    def replaced(self, theta: Tensor) -> dict[str, Tensor]:
        """The module's tensors with the bound elements taken from ``theta``."""
        out = dict(self.tensors)
        for name, flat, first in self.slices:
            values = theta[first : first + flat.numel()]
            out[name] = out[name].reshape(-1).scatter(0, flat, values).reshape(out[name].shape)
        for name, mask, i in self.elements:
            # where() keeps the value exactly theta[i] and its tangent exactly 1 at the bound element.
            out[name] = torch.where(mask, theta[i], out[name])
        return out


def _bind_module(
    module: nn.Module, bind: dict[str, str], params: list[str], device: torch.device, dtype: torch.dtype
) -> tuple[Callable, StepFunctions | None, list[TensorParameter]]:
    bindings = _Bindings(module, bind, device, dtype)
    start = len(params)
    for param in [p for p in bind if p not in params]:
        start += bindings.add_tensor(param, start)
    for i, param in enumerate(params):
        bindings.add_element(param, i)
    replaced, tensor_params = bindings.replaced, bindings.tensor_params

    def fn(x: Tensor, theta: Tensor) -> Tensor:
        return functional_call(module, replaced(theta), (x,))

    if not isinstance(module, TimeStepper):
        return fn, None, tensor_params

    def method(name: str) -> Callable:
        wrapper = _Method(module, name)

        def call(arg: Any, theta: Tensor) -> Any:
            return functional_call(wrapper, {f"inner.{k}": v for k, v in replaced(theta).items()}, (arg,))

        return call

    return fn, StepFunctions(method("initial"), method("step"), method("observe"), module.steps), tensor_params


def as_routine(
    model: Callable | nn.Module,
    params: Sequence[str],
    *,
    bind: dict[str, str] | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    output_dims: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    units: dict[str, str] | None = None,
) -> Routine:
    """Wrap ``model`` as a :class:`Routine` of the swept parameters ``params``.

    A model returning a dict or tuple of tensors is called through
    :meth:`~pipeline.derivatives.outputs.Outputs.flat`; its ``output_dims`` are then a dict per name.
    """
    device = device or torch.device("cpu")
    params = list(params)
    if isinstance(model, nn.Module):
        missing = [p for p in params if not bind or p not in bind]
        if missing:
            names = ", ".join(n for n, _ in model.named_parameters())
            raise ConfigError(
                f"missing bind for {missing[0]!r}: an nn.Module needs bind={{'{missing[0]}': "
                f"'<parameter path>'}}; its parameters are: {names}"
            )
        fn, stepper, tensor_params = _bind_module(model, dict(bind), params, device, dtype)
        bound_to = dict(bind)
    elif callable(model):
        if bind:
            raise ConfigError(
                f"invalid bind={dict(bind)!r}: bind applies to nn.Module models, "
                f"a function is called as f(x, {', '.join(f'{p}=value' for p in params)})"
            )

        def fn(x: Tensor, theta: Tensor) -> Tensor:
            return model(x, **{p: theta[i] for i, p in enumerate(params)})

        bound_to, stepper, tensor_params = {}, None, []
    else:
        raise ConfigError(f"invalid model {model!r}: expected a function f(x, {', '.join(params)}) or an nn.Module")
    dims = output_dims or getattr(model, "output_dims", None)
    per_name = {str(k): list(v) for k, v in dims.items()} if isinstance(dims, Mapping) else {}
    outputs = Outputs(declared_names=getattr(model, "output_names", None), dims=per_name)
    return Routine(
        fn=outputs.wrap(fn),
        params=params,
        tensors=tensor_params,
        bound_to=bound_to,
        input_dims=getattr(model, "input_dims", None),
        output_dims=None if per_name else dims,
        outputs=outputs,
        input_coords=dict(getattr(model, "input_coords", {})),
        output_coords=dict(getattr(model, "output_coords", {})),
        units={**getattr(model, "units", {}), **(units or {})},
        stepper=stepper,
    )
