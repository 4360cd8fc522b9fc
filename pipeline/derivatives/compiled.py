"""``method.compile=true``: forward mode through :func:`torch.compile`.

- A :class:`~pipeline.derivatives.timestepper.TimeStepper` model: one step's batched ``jvp`` (vmapped over the
  points of a chunk and the parameter directions) is compiled once; the time loop stays in
  Python and carries the state and its tangent from step to step. Compile time is that of one
  step, whatever the number of steps (compiling the unrolled loop takes minutes).
- Any other model: the batched ``jvp`` of the whole model, the function ``forward`` runs
  eagerly, is compiled.

Compiled graphs are specialised to shapes (``dynamic=False``), so every chunk is padded to the
chunk size (repeating its last point; the padded rows are dropped) and a sweep compiles once.
The chunk size is ``chunk_size``, or all points, or the largest power of two the memory hint
fits in the budget: no probe chunks, since every new size would compile anew. A time stepper on
the CPU runs all points in one chunk: its results are written in place (a block of steps at a
time) and kept. Compiled callables are cached per routine, so a second sweep of the same routine
does not compile again.
"""

from __future__ import annotations

import math
import types
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.func import jvp, vmap
from torch.utils._pytree import tree_map

from pipeline.derivatives.chunking import ChunkHints, budget_bytes
from pipeline.derivatives.methods import Derivatives, RoutineFn, in_chunks, value_and_jacobian
from pipeline.derivatives.routine import StepFunctions
from pipeline.errors import DerivativeError, Kind

_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

UNROLLED_CALLS = 1000
"""A model that is not a :class:`~pipeline.derivatives.timestepper.TimeStepper` and makes more torch calls than
this per evaluation gets a warning before it is compiled: torch.compile traces every call (a
Python loop is unrolled), so compiling a plain time loop takes longer the more steps it has,
minutes for a few hundred."""


def warn_if_unrolled(calls: int, stepper: StepFunctions | None) -> None:
    """Warn before compiling a plain model of more than :data:`UNROLLED_CALLS` torch calls."""
    if stepper is None and calls > UNROLLED_CALLS:
        warnings.warn(
            f"method.compile=true: the model makes {calls:,} torch calls per evaluation, and torch.compile "
            "traces every one (a Python time loop is unrolled): compiling can take many minutes. Write a "
            "time loop as a TimeStepper (docs/how-to/performance.md) to compile one step, or set method.compile=false",
            RuntimeWarning,
            stacklevel=3,
        )


def _compile_cached(key: object, make: Callable[[], Callable], role: str = "model") -> Callable:
    """The compiled function ``role`` of ``key`` (a routine), compiled on first use.

    Dynamo counts recompilations per code object, and every routine's function comes from the
    same code: a copy with its own code object keeps one routine's compilations from using up
    another's recompile limit (after which torch falls back to eager).
    """
    compiled = _COMPILED.setdefault(key, {})
    if role not in compiled:
        f = make()
        fresh = types.FunctionType(f.__code__.replace(), f.__globals__, f.__name__, f.__defaults__, f.__closure__)
        compiled[role] = torch.compile(fresh, dynamic=False)
    return compiled[role]


def _batch_whole_model(fn: RoutineFn) -> Callable:
    """``(x, chunk) -> (y, dy)``: the batched jvp of the whole model.

    ``x + 0 * sum(theta)`` (exactly ``x``; sweep values are finite) gives every tensor computed
    from ``x`` a tangent, so forward AD makes no "efficient zero" tangents: torch's CPU inductor
    crashes reading them (pytorch/pytorch#197067). Structural independence still comes from the
    eager structure check.
    """
    return lambda x, chunk: vmap(lambda theta: value_and_jacobian(lambda t: fn(_touched(x, t), t), theta))(chunk)


def _advance_with_tangents(
    f: Callable, state: tuple[Tensor, ...], tangents: tuple, theta: Tensor, stepper: StepFunctions
):
    """``f`` (``state -> state``) and the observation, with their tangents along every parameter.

    ``tangents`` holds one state tangent per parameter direction; directions are a Python loop
    (the parameters are few), not a nested vmap, which torch.compile does not trace here.
    """
    d_news, dys = [], []
    for i, tangent in enumerate(tangents):
        direction = torch.zeros_like(theta)
        direction[i] = 1
        # As in _batch_whole_model: every state component gets a tangent, so none is an "efficient zero".
        new, d_new = jvp(lambda s, t: f(tuple(c + 0 * t.sum() for c in s), t), (state, theta), (tangent, direction))
        y, dy = jvp(stepper.observe, (new, theta), (d_new, direction))
        d_news.append(d_new)
        dys.append(dy)
    return new, tuple(d_news), y, torch.stack(dys, dim=-1)


def _batch_one_step(stepper: StepFunctions) -> Callable:
    """``(state, tangents, chunk) -> (state, tangents, y, dy)``: one step and its observation, batched."""
    return vmap(lambda state, tangents, theta: _advance_with_tangents(stepper.step, state, tangents, theta, stepper))


def _touched(x: Any, theta: Tensor) -> Any:
    """``x + 0 * sum(theta)`` for each floating input (see :func:`_batch_whole_model`)."""
    return tree_map(lambda a: a + 0 * theta.sum() if a.is_floating_point() else a, x)


BLOCK_STEPS = 16
"""Observations are gathered this many steps at a time before going to the time-last results."""


def _put_block(ys: Tensor, dys: Tensor, block_y: Tensor, block_dy: Tensor) -> None:
    """Copy a block of steps (step first) into its place in the time-last results."""
    ys.copy_(block_y.movedim(0, -1))
    dys.copy_(block_dy.movedim(0, -2))


def _run_time_loop(
    stepper: StepFunctions, x: Tensor, chunk: Tensor, step: Callable, put: Callable
) -> tuple[Tensor, Tensor]:
    """Run the time loop for one chunk: ``y`` (chunk, ..., steps+1), ``dy`` (..., steps+1, P).

    Each step's observation goes to a block of :data:`BLOCK_STEPS` steps, step first, and each full
    block to the results with ``put`` (compiled :func:`_put_block`). Writing every step straight into
    the time-last results touches every cache line of them at every step, far dearer than the
    compiled steps themselves; stacking lists of steps costs as much.
    """

    def start(theta: Tensor):
        zeros = tuple(() for _ in range(len(theta)))
        # As in _batch_whole_model: the initial state depends on theta (by 0), so its tangents are real
        # tensors, not "efficient zeros" or stride-0 expansions the compiled step cannot take.
        return _advance_with_tangents(lambda _, t: stepper.initial(_touched(x, t), t), (), zeros, theta, stepper)

    state, tangents, y, dy = vmap(start)(chunk)
    ys = y.new_empty((*y.shape, stepper.steps + 1))
    dys = dy.new_empty((*dy.shape[:-1], stepper.steps + 1, dy.shape[-1]))
    ys[..., 0], dys[..., 0, :] = y, dy
    block_y = y.new_empty((BLOCK_STEPS, *y.shape))
    block_dy = dy.new_empty((BLOCK_STEPS, *dy.shape))
    for first in range(1, stepper.steps + 1, BLOCK_STEPS):
        count = min(BLOCK_STEPS, stepper.steps + 1 - first)
        for j in range(count):
            state, tangents, block_y[j], block_dy[j] = step(state, tangents, chunk)
        block = slice(first, first + count)
        if count == BLOCK_STEPS:
            put(ys[..., block], dys[..., block, :], block_y, block_dy)
        else:  # the last, shorter block: not compiled for a shape of its own
            _put_block(ys[..., block], dys[..., block, :], block_y[:count], block_dy[:count])
    return ys, dys


def compiled_forward(
    fn: RoutineFn,
    x: Tensor,
    points: Tensor,
    *,
    stepper: StepFunctions | None = None,
    chunk_size: int | None = None,
    max_memory_mb: int | None = None,
    hints: ChunkHints | None = None,
) -> Derivatives:
    """Forward mode as :func:`pipeline.derivatives.methods.forward` (order 1), compiled (module docstring)."""
    if chunk_size is None and stepper is not None and points.device.type == "cpu":
        # The results are written in place and kept (one chunk): a step's state is small beside them,
        # and the memory hint, measured on the eager model, counts every step's intermediates.
        chunk_size = len(points)
    if chunk_size is None:  # a power of two: free memory varies a little from run to run, shapes should not
        per_point = hints.bytes_per_point if hints else None
        fits = len(points) if per_point is None else budget_bytes(points.device, max_memory_mb) // per_point
        chunk_size = len(points) if fits >= len(points) else 2 ** int(math.log2(max(fits, 1)))
    if stepper is not None:
        step = _compile_cached(stepper, lambda: _batch_one_step(stepper), role="step")
        put = _compile_cached(stepper, lambda: _put_block, role="put")
        run = lambda chunk: _run_time_loop(stepper, x, chunk, step, put)  # noqa: E731
    else:
        whole = _compile_cached(fn, lambda: _batch_whole_model(fn))
        run = lambda chunk: whole(x, chunk)  # noqa: E731

    def padded(chunk: Tensor) -> tuple[Tensor, ...]:
        short = chunk_size - len(chunk)
        if short:
            chunk = torch.cat([chunk, chunk[-1:].expand(short, -1)])
        try:
            result = run(chunk)
        except torch._dynamo.exc.TorchDynamoException as err:
            raise DerivativeError(
                f"method.compile=true failed: torch.compile cannot compile this model "
                f"({str(err).splitlines()[0]}); set method.compile=false",
                Kind.COMPILE,
            ) from err
        return tuple(t[: len(t) - short] for t in result) if short else result

    return in_chunks(padded, points, chunk_size=chunk_size, max_memory_mb=max_memory_mb, method="forward")
