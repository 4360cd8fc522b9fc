"""Which outputs the swept parameter reaches at all: structural independence vs a zero derivative.

# NOTE [Structural independence]
``dy/dC == 0`` can mean two things: a path from ``C`` to ``y`` exists and the derivative is
numerically zero there, or no path exists (a ``detach()``, a parameter the model does not use,
the branch a ``where``/``if`` did not select, an inactive ReLU). To tell them apart we push a
NaN tangent through the model with ``torch.func.jvp``: every op on a path multiplies or adds
it, and ``NaN * 0`` is still NaN, so an output is NaN exactly when some path carries C's
tangent to it; selections and cut paths leave 0. The check pushes one tangent per swept parameter
(a NaN in that direction only), all in one batched call, at a few points of the sweep (first,
middle, last of those given), and an output counts as connected if any of them reaches it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import jvp, vmap

from pipeline.derivatives.heap import measure_peak_bytes
from pipeline.derivatives.methods import fd_step

PROBES = 3
"""How many values of ``C`` the check uses."""


def check_structure(
    fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    points: Tensor,
    columns: int | None = None,
    measure: bool = True,
) -> tuple[Tensor | None, int | None]:
    """:func:`connected`, and a pessimistic bytes-per-point estimate for forward-mode methods.

    The check is a forward pass over a few points: its peak memory, counted as all per point
    and once per parameter direction, bounds what a forward pass needs per point (the
    ``bytes_per_point`` of :class:`pipeline.derivatives.chunking.ChunkHints`). ``None`` where it
    cannot be measured, or is
    not asked for (``measure=False``: a run in reverse mode, which measures its own). Only the
    first ``columns`` directions (the swept parameters, not a bound tensor's elements) are checked.
    """
    if not measure:
        return connected(fn, x, points, columns), None
    reached, peak = measure_peak_bytes(lambda: connected(fn, x, points, columns), points.device)
    if peak is None or reached is None:
        return reached, None
    evaluations = len(probe_points(points)) * reached.shape[-1]  # (point, direction) pairs at once
    return reached, max(1, peak * points.shape[1] // evaluations)


def over_points(f: Callable[..., Tensor], *args: Tensor) -> Tensor:
    """``f`` at each point (the rows of ``args``): vmapped, or one at a time where the model cannot be batched."""
    try:
        return vmap(f)(*args)
    except (RuntimeError, NotImplementedError):
        return torch.stack([f(*row) for row in zip(*args, strict=True)])


def probe_indices(count: int) -> Tensor:
    """Indices of the first, middle and last of ``count`` points (fewer when there are fewer)."""
    return torch.linspace(0, count - 1, min(PROBES, count)).round().long().unique()


def probe_points(points: Tensor) -> Tensor:
    """The first, middle and last point (:func:`probe_indices`)."""
    return points[probe_indices(len(points)).to(points.device)]


def connected(
    fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, points: Tensor, columns: int | None = None
) -> Tensor | None:
    """Boolean tensor ``(*y.shape, P)``: True where parameter ``i`` reaches the output (NOTE above).

    Returns ``None`` when the model has no forward-mode rule for some op (no check possible).
    """
    count = points.shape[1] if columns is None else columns
    if count == 0:
        return None
    probes = probe_points(points)
    one_hot = torch.eye(count, points.shape[1], dtype=torch.bool, device=points.device)
    directions = torch.zeros(one_hot.shape, dtype=points.dtype, device=points.device).masked_fill(one_hot, float("nan"))
    thetas = probes.repeat_interleave(count, dim=0)  # each probe point once per direction

    def nan_tangent(theta: Tensor, direction: Tensor) -> Tensor:
        return jvp(lambda t: fn(x, t), (theta,), (direction,))[1]

    try:
        tangents = over_points(nan_tangent, thetas, directions.repeat(len(probes), 1))
    except (RuntimeError, NotImplementedError, ValueError, ArithmeticError, AssertionError, IndexError):
        return None  # no forward-mode rule, or the model raised at a probe point: connectivity unknown
    reached = tangents.reshape(len(probes), count, *tangents.shape[1:]).isnan().any(dim=0)
    return reached.movedim(0, -1).cpu()


# NOTE [Checked against the model itself]
# Autodiff can return a wrong number without any error: part of the model computed outside torch
# (``np.interp`` on ``z.detach().numpy()``, ``float(C)``), a custom ``autograd.Function`` with a
# wrong ``jvp`` or ``backward``, a buffer bound as the parameter (BatchNorm's ``running_mean``), a
# ``detach()``. At the structure check's points the derivatives are compared with the model's own
# values, one parameter at a time (a bound tensor's elements along one random direction):
# one-sided differences to the left and to the right with steps ``h`` and ``h/2`` (``h`` is
# finite_difference's, pipeline.derivatives.methods.fd_step, at the largest value moved), each pair
# extrapolated (Richardson, ``2 D(h/2) - D(h)``) with ``|D(h/2) - D(h)|`` as its error estimate. A
# derivative is accepted when it lies between the left and the right estimate (a kink at the point:
# autodiff gives one side or a subgradient) widened by a tolerance: ``SAFETY`` times both error
# estimates (truncation, a kink or a jump inside the step, an adaptive solver's noise all show as
# disagreement between ``h`` and ``h/2``), round-off (``MOVE_ROUNDOFF`` units of eps of the values
# compared, over the step) and ``eps^(1/3)`` relative to the values compared. Two findings:
#
# - *hidden dependence*: the derivative is exactly 0, outside that range, while the value moves
#   beyond round-off (a cut the model may mean: a ``detach()`` that stops the derivative);
# - *mismatch*: any other disagreement (a derivative that is simply wrong).

MOVE_ROUNDOFF = 64
"""A change of y counts as movement beyond this many units of round-off (eps x |y|)."""


SAFETY = 3
"""Multiple of the one-sided differences' error estimates (steps ``h`` and ``h/2``) that a
derivative may lie outside them."""


@dataclass
class DifferenceCheck:
    """What :func:`check_against_differences` found: booleans ``(*y.shape, P)`` (True: at some probe
    point), and for the first mismatch per parameter where and what (``None`` if none)."""

    hidden: Tensor
    mismatch: Tensor
    largest_hidden: Tensor
    """The largest finite-difference derivative among the hidden ones, per parameter."""
    first: list[Mismatch | None]


@dataclass
class Mismatch:
    """One derivative that disagrees with the model's differences: at which point, output, and values."""

    point: int
    output: tuple[int, ...]
    derivative: float
    low: float
    high: float


def check_against_differences(
    fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, points: Tensor, dy: Tensor, directions: Tensor | None = None
) -> DifferenceCheck:
    """Derivatives at the structure check's points against the model's own differences (NOTE above).

    ``dy`` holds the derivatives at the probe points (:func:`probe_indices`), ``(probes, *y.shape,
    D)``, along ``D`` directions in parameter space (``directions``, ``(D, points.shape[1])``;
    default: the first ``D`` parameters). A direction over many elements (a bound tensor's) checks
    them all at the cost of one.
    """
    index = probe_indices(len(points))
    probes = points[index.to(points.device)]
    eps = torch.finfo(points.dtype).eps
    if directions is None:
        directions = torch.eye(dy.shape[-1], points.shape[1], dtype=points.dtype, device=points.device)

    def primal(thetas: Tensor) -> Tensor:
        with torch.no_grad():
            return over_points(lambda theta: fn(x, theta), thetas).cpu()

    hidden, mismatch, largest, first = [], [], [], []
    y0 = primal(probes)
    for i, direction in enumerate(directions):
        j = int(direction.abs().argmax())  # the component whose representable move is the step
        h = fd_step(probes[:, direction != 0].abs().amax(dim=1)).unsqueeze(1)
        moves = [probes + h * direction, probes - h * direction, probes + h / 2 * direction, probes - h / 2 * direction]
        moved = primal(torch.cat(moves)).reshape(4, *y0.shape)
        y_up, y_down, y_half_up, y_half_down = moved.unbind(0)
        ys = torch.cat([y0.unsqueeze(0), moved])
        shape = (-1,) + (1,) * (y0.dim() - 1)
        steps = [((a[:, j] - probes[:, j]) / direction[j]).abs().cpu().reshape(shape) for a in moves]
        right, right_half = (y_up - y0) / steps[0], (y_half_up - y0) / steps[2]
        left, left_half = (y0 - y_down) / steps[1], (y0 - y_half_down) / steps[3]
        right_est, left_est = 2 * right_half - right, 2 * left_half - left
        error = (right_half - right).abs() + (left_half - left).abs()
        roundoff = 10 * MOVE_ROUNDOFF * eps * ys.abs().amax(dim=0) / steps[3]
        low, high = torch.minimum(left_est, right_est), torch.maximum(left_est, right_est)
        derivative = dy[..., i].cpu().to(ys.dtype)
        size = torch.maximum(derivative.abs(), high.abs().maximum(low.abs()))
        tol = SAFETY * error + roundoff + eps ** (1 / 3) * size
        outside = (derivative < low - tol) | (derivative > high + tol)
        changes = (y_up - y_down).abs() > MOVE_ROUNDOFF * eps * torch.maximum(y_up.abs(), y_down.abs())
        found = changes & (derivative == 0) & outside
        wrong = outside & ~found
        hidden.append(found.any(dim=0))
        mismatch.append(wrong.any(dim=0))
        central = (y_up - y_down) / (steps[0] + steps[1])
        largest.append(central[found].abs().max() if found.any() else torch.zeros((), dtype=central.dtype))
        first.append(_first_mismatch(wrong, index, derivative, low, high))
    return DifferenceCheck(torch.stack(hidden, dim=-1), torch.stack(mismatch, dim=-1), torch.stack(largest), first)


def _first_mismatch(wrong: Tensor, index: Tensor, derivative: Tensor, low: Tensor, high: Tensor) -> Mismatch | None:
    """The first disagreeing derivative (probe point, output element) with the range the differences allow."""
    if not wrong.any():
        return None
    at = tuple(int(i) for i in wrong.nonzero()[0])
    return Mismatch(int(index[at[0]]), at[1:], float(derivative[at]), float(low[at]), float(high[at]))
