"""``sensitivity()``: the notebook entry point, and what every workflow job calls.

It is three steps, each importable on its own: :func:`pipeline.plan.plan` checks everything and
evaluates the model once, :func:`run` computes and checks the derivatives, :func:`dataset` builds
the xarray dataset with the attrs that say how.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from pipeline import __version__
from pipeline.derivatives.chunking import ChunkHints
from pipeline.derivatives.compiled import compiled_forward
from pipeline.derivatives.fallback import LADDER, REVERSE_FIRST, REVERSE_LADDER, auto
from pipeline.derivatives.guards import check_derivatives, check_failed, check_finite, check_inputs_kept
from pipeline.derivatives.methods import FORWARD_MODE, METHODS, Derivatives, ieee_float32, primal
from pipeline.derivatives.routine import Routine
from pipeline.derivatives.structure import check_structure
from pipeline.derivatives.zerotensor import cheap_zero_tangents
from pipeline.design.sampling import Design
from pipeline.options import Options
from pipeline.plan import Plan, grid_points, plan, resolve_device, resolve_dtype
from pipeline.storage.dataset import build_dataset

__all__ = ["Run", "dataset", "grid_points", "plan", "resolve_device", "resolve_dtype", "run", "sensitivity"]


@dataclass
class Run:
    """What :func:`run` computed: the derivatives, how, and what the checks found."""

    result: Derivatives
    method: str
    """The method that gave the derivatives."""
    fallback_reason: str
    wall: float
    checks: dict[str, int]
    """Counts for the attrs: hidden dependences, mismatches, non-finite values."""
    reached: torch.Tensor | None
    """Per output and swept parameter: whether the parameter reaches it (None: unknown)."""


def _run_method(plan: Plan, hints: ChunkHints) -> tuple[Derivatives, str, str, float]:
    """The derivatives by the plan's method (``auto``: the fallback ladder), the method used, why it
    fell back (empty if it did not) and the wall time."""
    options, routine, x, points = plan.options, plan.routine, plan.x_run, plan.points
    start = time.perf_counter()
    used, fallback_reason = ("forward" if options.method == "auto" else options.method), ""
    sizes = {"chunk_size": options.chunk_size, "max_memory_mb": options.max_memory_mb, "hints": hints}
    if options.method == "none":
        result = primal(routine.fn, x, points, **sizes)
    elif options.compile:
        # a step's observation is one tensor; named outputs (flattened by routine.fn) compile whole
        stepper = None if routine.outputs.named else routine.stepper
        result = compiled_forward(routine.fn, x, points, stepper=stepper, **sizes)
    elif options.method == "auto" and options.order == 1:
        ladder = (REVERSE_LADDER if routine.tensors else REVERSE_FIRST) if plan.reverse_first else LADDER
        fallback = auto(routine.fn, x, points, ladder=ladder, **sizes)
        result, used, fallback_reason = fallback.result, fallback.method, fallback.reason
    else:
        extra = {"step": options.step} if options.step is not None else {}
        if options.order == 2:
            extra["order"] = 2
        result = METHODS[used](routine.fn, x, points, **sizes, **extra)
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


def run(plan: Plan) -> Run:
    """Compute the derivatives the plan describes, with its method (``auto``: the fallback ladder), and
    check them: inputs unchanged, against the model's own differences, finite."""
    options, routine = plan.options, plan.routine
    forward_mode = not plan.reverse_first and (options.method == "auto" or options.method in FORWARD_MODE)
    with ieee_float32(plan.device), cheap_zero_tangents(enabled=not options.compile, numbers=forward_mode):
        # the memory hint is for forward mode: reverse mode (first, or asked for) measures its own
        measure = not plan.reverse_first and options.method != "reverse"
        reached, bytes_per_point = (
            check_structure(routine.fn, plan.x_run, plan.points, columns=len(plan.grid), measure=measure)
            if options.method != "none"  # no derivative: nothing connects
            else (None, None)
        )
        hints = ChunkHints(bytes_per_point, op_bound=plan.op_bound)
        result, used, fallback_reason, wall = _run_method(plan, hints)
        check_inputs_kept(plan.x_run, plan.kept, used)
        checks: dict[str, int] = {}
        if not used.startswith("finite_difference") and used != "none":  # nothing to check against itself
            checks, mismatch = check_derivatives(
                routine, plan.x_run, plan.points, result.dy, plan.grid, options.hidden_policy
            )
            if mismatch and options.method == "auto" and not options.compile:
                result, used, fallback_reason = _differences_instead(routine, plan.x_run, plan.points, used, mismatch)
            elif mismatch:
                warnings.warn(f"method={options.method}: {mismatch}", RuntimeWarning, stacklevel=3)
        swept_dy = result.dy[..., : len(plan.grid)]
        checks |= check_failed(result.failed, plan.points, plan.grid, options.nan_policy)
        checks |= check_finite(result.y, result.dy, plan.grid, options.nan_policy, design=plan.design is not None)
    if reached is not None:  # a derivative that is not zero somewhere means a path exists
        reached = reached | swept_dy.any(dim=0)
    return Run(result, used, fallback_reason, wall, checks, reached)


def dataset(plan: Plan, run: Run, *, title: str = "", attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """The dataset of a run, with attrs that say how it was computed."""
    options = plan.options
    # Timing and the chosen chunk size vary from run to run: they go into `history`, so that two
    # runs of the same study give identical datasets apart from it.
    points = len(plan.points)
    rate = f"{points / run.wall:.1f}" if run.wall > 0 else "inf"
    label = f"{run.method} (compiled)" if options.compile else run.method
    timing = (
        f"{label} on {plan.device}: {points} points in {run.wall:.3f} s wall time ({rate} points/s), "
        f"chunk size {run.result.chunk_size}"
    )
    how = {
        "method": run.method,
        "method_requested": options.method,
        **({"fallback_reason": run.fallback_reason} if run.fallback_reason else {}),
        **({"method_choice": plan.reverse_first} if plan.reverse_first and not run.fallback_reason else {}),
        "compiled": int(options.compile),
        "device": str(plan.device),
        "dtype": str(plan.dtype).removeprefix("torch."),
        "torch_version": torch.__version__,
        "sensweep_version": __version__,
    }
    return build_dataset(
        plan.routine,
        plan.grid,
        plan.kept,
        run.result.y,
        run.result.dy,
        d2y=run.result.d2y,
        connected=run.reached,
        design=plan.design,
        title=title,
        history_note=timing,
        attrs={**how, **run.checks, **(attrs or {})},
    )


def sensitivity(
    model: Callable | nn.Module,
    x: torch.Tensor | np.ndarray | Sequence[float],
    params: Mapping[str, Any] | Design,
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
    output_dims: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
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
    output_dims : list of str, or dict of them, optional
        Names of y's dims after ``sample``; default: the model's ``output_dims`` or ``output``. For a
        model returning a dict or tuple of outputs, a dict per output name (default ``<name>_dim<i>``).
    units : dict, optional
        Units of ``x``, ``y`` (or each named output), the parameter and dims, e.g. ``{"y": "m", "C": "s-1"}``.
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
    options = Options(
        method=str(method),
        device=str(device),
        dtype=str(dtype).removeprefix("torch.") if isinstance(dtype, torch.dtype) else dtype,
        chunk_size=chunk_size,
        max_memory_mb=max_memory_mb,
        step=step,
        nan_policy=nan_policy,
        hidden_policy=hidden_policy,
        order=order,
        compile=compile,
    )
    planned = plan(model, x, params, options, bind=bind, output_dims=output_dims, units=units, attrs=attrs)
    return dataset(planned, run(planned), title=title, attrs=attrs)
