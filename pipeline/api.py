"""``sensitivity()``: the notebook entry point, and what every workflow job calls."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.utils._pytree import tree_map

from pipeline import __version__
from pipeline.checks import (
    HIDDEN_POLICIES,
    NAN_POLICIES,
    check_attrs,
    check_bind,
    check_choice,
    check_dataset_names,
    check_device,
    check_method_options,
    check_parameter_name,
    is_tensor_path,
)
from pipeline.config.sizes import check_grid_size, check_result_size
from pipeline.derivatives.chunking import ChunkHints
from pipeline.derivatives.compiled import compiled_forward, warn_if_unrolled
from pipeline.derivatives.fallback import LADDER, REVERSE_FIRST, REVERSE_LADDER, auto
from pipeline.derivatives.methods import FORWARD_MODE, METHODS, Derivatives, ieee_float32
from pipeline.derivatives.opcost import CallCost, call_cost, is_op_bound
from pipeline.derivatives.routine import Routine, as_routine
from pipeline.derivatives.structure import check_against_differences, check_structure, probe_indices
from pipeline.derivatives.zerotensor import cheap_zero_tangents
from pipeline.design.sampling import Design
from pipeline.errors import RANDOMNESS, ConfigError, DerivativeError, Kind
from pipeline.inputs import input_leaves, input_tree, to_run
from pipeline.storage.dataset import build_dataset, dataset_dims

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


def _check_x(x: torch.Tensor, name: str = "x") -> None:
    """Each input needs a sample dim, no empty dim, and real numbers."""
    if x.dim() == 0:
        raise ConfigError(f"invalid {name}: need a leading sample dim, got a scalar")
    if 0 in x.shape:
        dims = ", ".join(f"{'sample' if i == 0 else f'dim {i}'}={n}" for i, n in enumerate(x.shape) if n == 0)
        raise ConfigError(
            f"invalid {name} of shape {tuple(x.shape)}: empty ({dims}); every dim needs at least one entry"
        )
    if x.is_complex():
        raise ConfigError(
            f"invalid {name}: complex inputs ({str(x.dtype).removeprefix('torch.')}) are not supported; "
            "pass the real and imaginary parts as separate features"
        )


def _check_samples(leaves: dict[str, torch.Tensor]) -> None:
    """Every input of a dict or tuple has the same number of samples (its leading dim)."""
    counts = {name: leaf.shape[0] for name, leaf in leaves.items()}
    if len(set(counts.values())) > 1:
        found = ", ".join(f"{name}: {n}" for name, n in counts.items())
        raise ConfigError(f"invalid x: the inputs have different numbers of samples (leading dim) ({found})")


def _describe(x: Any) -> str:
    """``x of shape (4, 2) (float32)``, or the shape and dtype of each input of a dict or tuple."""
    parts = [
        f"{name} of shape {tuple(t.shape)} ({str(t.dtype).removeprefix('torch.')})"
        for name, t in input_leaves(x).items()
    ]
    return ", ".join(parts)


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _check_cast(
    leaves: dict[str, torch.Tensor],
    run_leaves: dict[str, torch.Tensor],
    grid: dict[str, np.ndarray],
    dtype: torch.dtype,
    collisions: bool = True,
) -> None:
    """Values the run's dtype cannot hold fail here, named: nothing is computed at an altered value."""
    name = str(dtype).removeprefix("torch.")
    for key, x in leaves.items():
        if not x.is_floating_point():
            continue
        overflow = (torch.isfinite(x) & ~torch.isfinite(run_leaves[key].to(x.device))).cpu().numpy()
        if overflow.any():
            at = _first(overflow)
            raise ConfigError(
                f"invalid {key} for dtype={name}: {int(overflow.sum())} values overflow it, e.g. "
                f"{float(x[at]):.6g} at index {at}; use dtype=float64 or rescale x"
            )
    np_dtype = np.dtype(name)
    for param, values in grid.items():
        with np.errstate(over="ignore"):
            cast = values.astype(np_dtype)
        if not np.isfinite(cast).all():
            bad = values[~np.isfinite(cast)]
            raise ConfigError(
                f"invalid values of {param} for dtype={name}: {bad.size} overflow it, e.g. "
                f"{bad[0]:.6g}; use dtype=float64"
            )
        same = np.flatnonzero(np.diff(np.sort(cast)) == 0) if values.size > 1 and collisions else []
        if len(same):
            ordered = np.sort(values)
            a, b = ordered[same[0]], ordered[same[0] + 1]
            raise ConfigError(
                f"invalid values of {param} for dtype={name}: {len(same)} pairs of distinct values "
                f"become equal, e.g. {float(a)!r} and {float(b)!r}; use dtype=float64 or fewer, "
                "wider-spaced values"
            )


def _check_model_runs(
    fn: Callable, x: torch.Tensor, point: torch.Tensor, grid: dict[str, np.ndarray]
) -> tuple[torch.Tensor, CallCost]:
    """Evaluate the model once, before any derivative: bad inputs fail here with their shapes named.

    It runs on a copy of ``x``, which must come back unchanged: a model that changes its inputs in
    place would give every later point different inputs. Returns ``y`` and what that evaluation
    cost (:mod:`pipeline.derivatives.opcost`).
    """
    at = ", ".join(f"{p}={float(v):.6g}" for p, v in zip(grid, point[: len(grid)], strict=True)) or "the model's values"
    copy = tree_map(torch.clone, x)
    samples = next(iter(input_leaves(x).values())).shape[0]
    try:
        with torch.no_grad():
            y, cost = call_cost(lambda: fn(copy, point))
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise ConfigError(
            f"the model fails on {_describe(x)} at {at}: {str(err).splitlines()[0]}; "
            "check that the inputs match the model"
        ) from err
    if not all(_same(a, b) for a, b in zip(input_leaves(copy).values(), input_leaves(x).values(), strict=True)):
        raise ConfigError(
            "the model changes its input x in place (e.g. x.mul_(C) or x[...] = ...): every point "
            "would see different inputs; rewrite it out of place (y = x * C)"
        )
    _check_deterministic(fn, x, point, y, at)
    if not isinstance(y, torch.Tensor) or y.dim() < 1 or y.shape[0] != samples:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ConfigError(
            f"invalid model output: expected a tensor with a leading sample dim of {samples}, "
            f"got {shape} for {_describe(x)}"
        )
    if 0 in y.shape:
        raise ConfigError(
            f"invalid model output of shape {tuple(y.shape)} for {_describe(x)}: "
            "an empty dim; every output dim needs at least one entry"
        )
    if y.is_complex() or not y.is_floating_point():
        raise ConfigError(
            f"invalid model output of dtype {str(y.dtype).removeprefix('torch.')}: derivatives need "
            "real floating-point outputs"
        )
    return y, cost


def _check_inputs_kept(x_run: Any, kept: Any, method: str) -> None:
    """The inputs the model was given must be unchanged after the run: a model that writes into
    its input (``x[x > 3 / C] = 0``) gave each later evaluation other inputs than the caller's."""
    pairs = zip(input_leaves(x_run).items(), input_leaves(kept).values(), strict=True)
    changed = [name for (name, a), b in pairs if not _same(a.detach().cpu(), b)]
    if changed:
        raise ConfigError(
            f"the model changes its input {', '.join(changed)} in place (e.g. x.mul_(C) or x[...] = ...) during "
            f"method={method}: later evaluations saw other inputs than the ones given, so no result is returned; "
            "rewrite it out of place (y = x * C, torch.where(mask, 0, x))"
        )


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN where NaN."""
    return torch.equal(a, b) or torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)


def _check_deterministic(fn: Callable, x: Any, point: torch.Tensor, y: Any, at: str) -> None:
    """A second evaluation at the same point must give the same ``y`` (up to a GPU's reduction order):
    a model drawing random numbers would give every derivative method noise, not derivatives."""
    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        return
    with torch.no_grad():
        again = fn(tree_map(torch.clone, x), point)
    if not isinstance(again, torch.Tensor) or again.shape != y.shape:
        raise DerivativeError(
            f"the model gives different outputs on two evaluations at {at}; {RANDOMNESS}", Kind.RANDOMNESS
        )
    eps = torch.finfo(y.dtype).eps
    differs = (again - y).abs() > eps**0.5 * float(torch.nan_to_num(y).abs().max()) + 64 * eps * y.abs()
    differs &= ~(y.isnan() & again.isnan())
    if differs.any():
        raise DerivativeError(
            f"the model gives different outputs on two evaluations at {at} ({int(differs.sum())} of {y.numel()} "
            f"values differ): it draws random numbers (e.g. dropout in training mode, torch.rand); {RANDOMNESS}",
            Kind.RANDOMNESS,
        )


LIKELY_CAUSES = (
    "part of the model computed outside torch (numpy, .item(), float() of a tensor used as a value), "
    "a custom autograd.Function with a wrong jvp or backward, a buffer bound as the parameter, a detach()"
)
"""What makes autodiff disagree with the model's own differences (NOTE [Checked against the model itself])."""


def _point_text(points: torch.Tensor, k: int, grid: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{p}={float(v):.6g}" for p, v in zip(grid, points[k, : len(grid)], strict=True))


OWN_VALUES = "the model's own values"


def _checked_directions(
    routine: Routine, points: torch.Tensor, dy: torch.Tensor, grid: dict[str, np.ndarray]
) -> tuple[list[str], list[str], torch.Tensor, torch.Tensor]:
    """What the difference check compares: each swept parameter's axis, and for each bound tensor one
    seeded random direction over its elements (one check for all of them). Returns the names, how
    messages call them, the directions ``(D, P)`` and the derivatives along them at the probe points."""
    at = dy[probe_indices(len(points))]  # (probes, *y, P): dy is on the CPU
    names, labels = list(grid), list(grid)
    directions = list(torch.eye(len(grid), points.shape[1], dtype=points.dtype))
    derivatives = [at[..., i] for i in range(len(grid))]
    start, generator = len(grid), torch.Generator().manual_seed(0)
    for tensor in routine.tensors:
        count = tensor.values.numel()
        v = torch.randn(count, generator=generator, dtype=at.dtype)
        v /= v.abs().max()
        direction = torch.zeros(points.shape[1], dtype=points.dtype)
        direction[start : start + count] = v.to(points.dtype)
        directions.append(direction)
        derivatives.append((at[..., start : start + count] * v).sum(-1))
        names.append(tensor.name)
        labels.append(f"{tensor.name} (along a random direction of its {count} elements)")
        start += count
    return names, labels, torch.stack(directions).to(points.device), torch.stack(derivatives, dim=-1)


def _check_against_differences(
    routine: Routine,
    x: Any,
    points: torch.Tensor,
    dy: torch.Tensor,
    grid: dict[str, np.ndarray],
    policy: str,
) -> tuple[dict[str, int], str]:
    """The derivatives against the model's own differences at the structure check's points (NOTE
    [Checked against the model itself]). Hidden dependences (exact zeros where the value moves) are
    counted in attrs ``hidden_dependence_dy_d<p>`` and warned about; other disagreements in
    ``derivative_mismatch_dy_d<p>``, returned as a message (empty if none) for the caller to act on.
    ``hidden_policy="raise"`` makes either an error."""
    if policy == "off":
        return {}, ""
    names, labels, directions, derivatives = _checked_directions(routine, points, dy, grid)
    try:
        check = check_against_differences(routine.fn, x, points, derivatives, directions)
    except (RuntimeError, NotImplementedError):  # a model vmap cannot batch: nothing to compare here
        return {}, ""
    counts = {f"hidden_dependence_dy_d{p}": int(check.hidden[..., i].sum()) for i, p in enumerate(names)}
    counts.update({f"derivative_mismatch_dy_d{p}": int(check.mismatch[..., i].sum()) for i, p in enumerate(names)})
    problems = [
        f"{counts[f'hidden_dependence_dy_d{p}']} outputs move with {label} (finite differences see |dy/d{p}| up "
        f"to {float(check.largest_hidden[i]):.3g}) where autodiff gives exactly 0"
        for i, (p, label) in enumerate(zip(names, labels, strict=True))
        if counts[f"hidden_dependence_dy_d{p}"]
    ]
    if problems:
        text = (
            f"{'; '.join(problems)}: an op ignores the parameter's tangent (a buffer such as BatchNorm's "
            "running_mean bound as the parameter, a detach(), a write through .data, arithmetic outside torch), "
            "so those derivatives are wrong, unless the cut is meant (a detach() to stop the derivative); "
            "method=finite_difference sees the dependence"
        )
        if policy == "raise":
            raise DerivativeError(f"{text} (hidden_policy=raise)", Kind.POLICY)
        warnings.warn(text, RuntimeWarning, stacklevel=3)
    mismatches = [
        f"dy/d{label} disagrees with the model's own differences at {counts[f'derivative_mismatch_dy_d{p}']} "
        f"outputs, e.g. at {_point_text(points, m.point, grid) or OWN_VALUES}, output {m.output}: "
        f"{m.derivative:.6g} where the differences give {m.low:.6g}"
        + (f" to {m.high:.6g}" if f"{m.high:.6g}" != f"{m.low:.6g}" else "")
        for p, label, m in zip(names, labels, check.first, strict=True)
        if m is not None
    ]
    if not mismatches:
        return counts, ""
    text = f"{'; '.join(mismatches)}; likely causes: {LIKELY_CAUSES}"
    if policy == "raise":
        raise DerivativeError(f"{text} (hidden_policy=raise)", Kind.POLICY)
    return counts, text


def _finite(values: torch.Tensor, dim: int | None = None) -> bool:
    """No NaN or Inf in ``values``, read from their min and max (along ``dim``: for each index left)."""
    if values.numel() == 0:
        return True
    low, high = torch.aminmax(values) if dim is None else torch.aminmax(values, dim=dim)
    return bool(torch.isfinite(low).all() and torch.isfinite(high).all())


def _check_finite(
    y: torch.Tensor, dy: torch.Tensor, grid: dict[str, np.ndarray], policy: str, design: bool = False
) -> dict[str, int]:
    """Count NaN/Inf in ``y`` and each ``dy/dp``; warn, or raise naming the first bad point and sample.

    A NaN or Inf shows in the min or max (both propagate NaN): one pass without temporaries
    (0.2 s on 400 MB of results, where ``isfinite`` masks took 1.7 s); the masks only where one is found.
    """
    if _finite(y) and _finite(dy.reshape(-1, dy.shape[-1]), dim=0):
        return {"nonfinite_y": 0, **{f"nonfinite_dy_d{p}": 0 for p in grid}}
    bad_y, bad_dy = ~torch.isfinite(y), ~torch.isfinite(dy)
    counts = {"nonfinite_y": int(bad_y.sum())}
    counts.update({f"nonfinite_dy_d{p}": int(bad_dy[..., i].sum()) for i, p in enumerate(grid)})
    if not any(counts.values()):
        return counts
    bad = (bad_y | bad_dy.any(-1)).reshape(y.shape[0], y.shape[1], -1).any(-1).nonzero()
    first_point, first_sample = (int(i) for i in bad[0])
    if design:
        where = f"point {first_point} (" + ", ".join(f"{p}={grid[p][first_point]:.6g}" for p in grid) + ")"
    else:
        index = np.unravel_index(first_point, [len(v) for v in grid.values()])
        where = ", ".join(f"{p}={grid[p][i]:.6g} (index {i})" for p, i in zip(grid, index, strict=True))
    found = ", ".join(f"{n} in {k.removeprefix('nonfinite_').replace('_d', '/d', 1)}" for k, n in counts.items())
    text = f"non-finite results: {found}; first at {where}, sample {first_sample}"
    if policy == "raise":
        raise DerivativeError(f"{text} (nan_policy=raise)", Kind.POLICY)
    warnings.warn(text, RuntimeWarning, stacklevel=3)
    return counts


def _run_method(
    routine: Routine,
    x: Any,
    points: torch.Tensor,
    *,
    method: str,
    reverse_first: bool,
    compile: bool,
    order: int,
    step: float | None,
    chunk_size: int | None,
    max_memory_mb: int | None,
    hints: ChunkHints,
) -> tuple[Derivatives, str, str, float]:
    """The derivatives by ``method`` (``auto``: the fallback ladder), the method used, why it fell
    back (empty if it did not) and the wall time."""
    start = time.perf_counter()
    used, fallback_reason = ("forward" if method == "auto" else method), ""
    sizes = {"chunk_size": chunk_size, "max_memory_mb": max_memory_mb, "hints": hints}
    if compile:
        result = compiled_forward(routine.fn, x, points, stepper=routine.stepper, **sizes)
    elif method == "auto" and order == 1:
        ladder = (REVERSE_LADDER if routine.tensors else REVERSE_FIRST) if reverse_first else LADDER
        run = auto(routine.fn, x, points, ladder=ladder, **sizes)
        result, used, fallback_reason = run.result, run.method, run.reason
    else:
        options = {"step": step} if step is not None else {}
        if order == 2:
            options["order"] = 2
        result = METHODS[used](routine.fn, x, points, **sizes, **options)
    return result, used, fallback_reason, time.perf_counter() - start


DIFFERENCES_LADDER = ("finite_difference", "finite_difference_per_point")
"""Where ``method=auto`` goes when autodiff disagrees with the model's differences (one point at a
time where the model could not be batched)."""


def _differences_instead(
    routine: Routine, x: Any, points: torch.Tensor, used: str, mismatch: str
) -> tuple[Derivatives, str, str]:
    """``method=auto``'s answer to derivatives that disagree with the model's differences: central
    differences (batched where the model batches), with one warning that says why."""
    ladder = DIFFERENCES_LADDER[1:] if used.endswith("_per_point") else DIFFERENCES_LADDER
    with warnings.catch_warnings():  # the ladder's own note on a batched pass that failed: one warning below
        warnings.filterwarnings("ignore", message="method=auto used", category=RuntimeWarning)
        run = auto(routine.fn, x, points, ladder=ladder)
    reason = f"{used} gave derivatives that are wrong: {mismatch}"
    warnings.warn(f"method=auto used {run.method}: {reason}", RuntimeWarning, stacklevel=3)
    return run.result, run.method, reason


def sensitivity(
    model: Callable | nn.Module,
    x: torch.Tensor | np.ndarray | Sequence[float],
    params: Mapping[str, Any],
    *,
    method: str = "auto",
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    chunk_size: int | None = None,
    bind: Mapping[str, str] | None = None,
    max_memory_mb: int | None = None,
    step: float | None = None,
    nan_policy: str = "warn",
    hidden_policy: str = "warn",
    order: int = 1,
    compile: bool = False,
    output_dims: Sequence[str] | None = None,
    units: Mapping[str, str] | None = None,
    title: str = "",
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """``y`` and ``dy/dC`` of ``model`` for every value of ``C``, every sample and output element.

    Parameters
    ----------
    model : callable or nn.Module
        A function ``f(x, C=...)`` or a module called as ``module(x)`` with ``bind``.
    x : tensor or array
        Inputs; the leading dim indexes samples.
    params : dict
        ``{"C": values}``: the swept parameter and its 1-D values. Several parameters form a
        grid (one dim each, in the given order) and give one ``dy_d<name>`` each.
    method : str, default: "auto"
        ``auto``: ``forward`` where torch can batch the model (``reverse`` first where the swept
        parameters outnumber the outputs per point: attr ``method_choice``), else the first of
        ``forward_per_point``, ``reverse_per_point``, ``finite_difference_per_point`` that works,
        with a warning (:mod:`pipeline.derivatives.fallback`). ``forward``: ``torch.func.jvp`` vmapped over
        the values of a chunk; ``forward_dual``: ``torch.autograd.forward_ad`` dual tensors;
        ``reverse``: vmapped vector-Jacobian products; ``loop``: one ``autograd.grad`` per output
        element (a slow reference); ``finite_difference``: central differences. The
        ``*_per_point`` methods run one point at a time without ``vmap`` (data-dependent control
        flow, ``.item()``, in-place writes, ODE solvers). A named method never falls back.
    device : {"auto", "cpu", "cuda", "cuda:<index>"}, default: "auto"
        ``auto`` picks CUDA when available.
    dtype : {"float32", "float64"} or torch.dtype, optional
        Defaults to ``x``'s floating dtype, else torch's default.
    chunk_size : int, optional
        Values per batched pass; ``None`` picks the largest that fits ``max_memory_mb``.
    bind : dict, optional
        For a module: ``{"C": "branch_b.0.bias[1]"}``, the parameter (element) that plays each
        swept parameter.
    max_memory_mb : int, optional
        Memory budget of one batched pass; ``None`` is a quarter of the free memory.
    step : float, optional
        Step of ``finite_difference(_per_point)``; default ``eps^(1/3) * max(|C|, 1)``.
    nan_policy : {"warn", "raise"}, default: "warn"
        NaN or Inf in ``y`` or ``dy/dC`` are counted (attrs ``nonfinite_y``, ``nonfinite_dy_dC``);
        ``warn`` warns, ``raise`` raises naming the first bad value of C and sample.
    hidden_policy : {"warn", "raise", "off"}, default: "warn"
        Derivatives checked at three points against one-sided differences of the model (NOTE
        [Checked against the model itself]): exact zeros where the value moves are counted
        (attrs ``hidden_dependence_dy_dC``) and warned about, other disagreements counted
        (``derivative_mismatch_dy_dC``) and, under ``method="auto"``, replaced by central
        differences with a warning (a named method warns); ``raise`` makes either an error.
    order : {1, 2}, default: 1
        ``2`` adds ``d2y_dC2`` (forward-over-forward; one swept parameter, ``method="forward"``
        or ``"auto"``, which then does not fall back).
    compile : bool, default: False
        ``method="forward"`` (or ``"auto"``, without fallback) through ``torch.compile`` (order 1): one step of a
        :class:`~pipeline.derivatives.timestepper.TimeStepper` model, else the whole batched jvp
        (:mod:`pipeline.derivatives.compiled`). Pays off for op-heavy models and long sweeps.
    output_dims : list of str, optional
        Names of y's dims after ``sample``; default: the model's ``output_dims`` or ``output``.
    units : dict, optional
        Units of ``x``, ``y``, the parameter and dims, e.g. ``{"y": "m", "C": "s-1"}``.
    title, attrs : optional
        Dataset title and extra global attributes.

    Returns
    -------
    xarray.Dataset
        Dims ``(C, sample, *output dims)`` (one leading dim per swept parameter); variables
        ``y``, ``dy_dC``, ``x`` and
        ``dy_dC_connected`` (1 where C reaches the output at all, 0 where it is structurally
        independent; see :mod:`pipeline.derivatives.structure`).

    Examples
    --------
    >>> ds = sensitivity(lambda x, C: C * x, torch.arange(10.0), {"C": [-5.0, 1.0]})
    >>> ds.dy_dC.sel(C=-5.0).values.tolist() == list(range(10))
    True
    """
    check_choice("nan_policy", nan_policy, NAN_POLICIES)
    check_choice("hidden_policy", hidden_policy, HIDDEN_POLICIES)
    design = params if isinstance(params, Design) else None
    if design is not None:
        grid = design.columns()
    else:
        grid = _swept_grid(params, tensors_bound=any(is_tensor_path(str(v)) for v in (bind or {}).values()))
    check_method_options(
        method,
        order=order,
        compile=compile,
        step=step,
        chunk_size=chunk_size,
        max_memory_mb=max_memory_mb,
        n_params=len(grid),
    )
    check_bind(bind, grid)
    check_attrs(attrs)
    x = input_tree(x)
    leaves = input_leaves(x)
    for name, leaf in leaves.items():
        _check_x(leaf, name)
    _check_samples(leaves)
    run_device = resolve_device(device)
    run_dtype = resolve_dtype(dtype, next((t for t in leaves.values() if t.is_floating_point()), None))
    routine = as_routine(
        model,
        list(grid),
        bind=dict(bind) if bind else None,
        device=run_device,
        dtype=run_dtype,
        output_dims=output_dims,
        units=dict(units or {}),
    )
    if step is not None and step >= torch.finfo(run_dtype).max:
        raise ConfigError(f"invalid step={step!r}: too large for dtype={str(run_dtype).removeprefix('torch.')}")
    x_run = to_run(x, run_device, run_dtype)
    kept = tree_map(lambda t: t.detach().to("cpu", copy=True), x_run)  # what is stored; what x must stay
    _check_cast(leaves, input_leaves(x_run), grid, run_dtype, collisions=design is None)
    check_grid_size({"point": len(design)} if design else {p: len(v) for p, v in grid.items()}, key="params")
    table = design.table if design else grid_points(grid)
    points = torch.as_tensor(table, dtype=run_dtype, device=run_device)
    if routine.tensors:  # each tensor's elements follow the swept values, at the model's own values
        if order == 2:
            raise ConfigError(
                "invalid order=2: not with a whole tensor bound (second derivatives of swept scalars only)"
            )
        own = torch.cat([t.values.reshape(-1) for t in routine.tensors]).to(run_device, run_dtype)
        points = torch.cat([points, own.expand(len(points), -1)], dim=1)
    directions = points.shape[1]

    swept = [*grid, *(t.name for t in routine.tensors)]
    check_dataset_names(swept, output_dims=(), inputs=input_leaves(x_run), design=design is not None)
    with ieee_float32(run_device):
        y0, cost = _check_model_runs(routine.fn, x_run, points[0], grid)
        out_dims, in_dims = dataset_dims(routine, x_run, y0)
        check_dataset_names(
            swept,
            output_dims=out_dims,
            inputs=input_leaves(x_run),
            input_dims=in_dims,
            design=design is not None,
        )
        if compile:
            warn_if_unrolled(cost.calls, routine.stepper)
        # outside the zero-tangent block, as the model's cost was measured: its mode makes calls dearer
        op_bound = run_device.type == "cpu" and chunk_size is None and is_op_bound(cost)
        check_result_size(len(points), y0.numel(), 1 + directions + (order == 2), torch.finfo(run_dtype).bits // 8)
        choice = ""
        if method == "auto" and order == 1 and not compile and directions > y0.numel():
            what = "parameters and tensor elements" if routine.tensors else "parameters"
            choice = f"reverse mode: {directions} directions ({what}) outnumber {y0.numel()} outputs"
        forward_mode = not choice and (method == "auto" or method in FORWARD_MODE)
        with cheap_zero_tangents(enabled=not compile, numbers=forward_mode):
            # the memory hint is for forward mode: reverse mode (first, or asked for) measures its own
            reached, bytes_per_point = check_structure(
                routine.fn, x_run, points, columns=len(grid), measure=not choice and method != "reverse"
            )
            hints = ChunkHints(bytes_per_point, op_bound=op_bound)
            result, used, fallback_reason, wall = _run_method(
                routine,
                x_run,
                points,
                method=method,
                reverse_first=bool(choice),
                compile=compile,
                order=order,
                step=step,
                chunk_size=chunk_size,
                max_memory_mb=max_memory_mb,
                hints=hints,
            )
            _check_inputs_kept(x_run, kept, used)
            checked = {}
            if not used.startswith("finite_difference"):  # differences need no check against themselves
                checked, mismatch = _check_against_differences(routine, x_run, points, result.dy, grid, hidden_policy)
                if mismatch and method == "auto" and not compile:
                    result, used, fallback_reason = _differences_instead(routine, x_run, points, used, mismatch)
                elif mismatch:
                    warnings.warn(f"method={method}: {mismatch}", RuntimeWarning, stacklevel=2)
            swept_dy = result.dy[..., : len(grid)]
            nonfinite = _check_finite(result.y, result.dy, grid, nan_policy, design=design is not None)
    if reached is not None:  # a derivative that is not zero somewhere means a path exists
        reached = reached | swept_dy.any(dim=0)
    # Timing and the chosen chunk size vary from run to run: they go into `history`, so that two
    # runs of the same study give identical datasets apart from it.
    rate = f"{len(points) / wall:.1f}" if wall > 0 else "inf"
    label = f"{used} (compiled)" if compile else used
    timing = (
        f"{label} on {run_device}: {len(points)} points in {wall:.3f} s wall time ({rate} points/s), "
        f"chunk size {result.chunk_size}"
    )
    return build_dataset(
        routine,
        grid,
        kept,
        result.y,
        result.dy,
        d2y=result.d2y,
        connected=reached,
        design=design,
        title=title,
        history_note=timing,
        attrs={
            **checked,
            "method": used,
            "method_requested": method,
            **({"fallback_reason": fallback_reason} if fallback_reason else {}),
            **({"method_choice": choice} if choice and not fallback_reason else {}),
            "compiled": int(compile),
            "device": str(run_device),
            "dtype": str(run_dtype).removeprefix("torch."),
            "torch_version": torch.__version__,
            "sensweep_version": __version__,
            **nonfinite,
            **(attrs or {}),
        },
    )
