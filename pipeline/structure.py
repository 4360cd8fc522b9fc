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

import torch
from torch import Tensor
from torch.func import jvp, vmap

from pipeline.derivatives import central_points, fd_step
from pipeline.memory import measure_peak_bytes

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
    ``bytes_per_point`` of :class:`pipeline.memory.ChunkHints`). ``None`` where it cannot be measured, or is
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
    except (RuntimeError, NotImplementedError):
        return None
    reached = tangents.reshape(len(probes), count, *tangents.shape[1:]).isnan().any(dim=0)
    return reached.movedim(0, -1).cpu()


# NOTE [Hidden dependence]
# An op can ignore its inputs' tangents while its value still depends on them: a buffer bound as
# the parameter (BatchNorm's running_mean is not differentiated), a detach(), a write through
# .data. Forward mode then gives dy/dC = 0 exactly where y moves. At the structure check's
# points, central differences of the primal say whether y moves: an output whose value changes
# beyond round-off while its derivative is exactly 0 there is a hidden dependence. The step is
# finite_difference's (pipeline.derivatives.fd_step); a change counts once it exceeds
# MOVE_ROUNDOFF x eps of the values compared.

MOVE_ROUNDOFF = 64
"""A change of y counts as movement beyond this many units of round-off (eps x |y|)."""


def hidden_dependence(
    fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, points: Tensor, dy: Tensor
) -> tuple[Tensor, Tensor]:
    """Outputs that move with a parameter while their derivative is exactly 0 (NOTE above).

    ``dy`` holds the derivatives at every point, ``(N, *y.shape, P)``. Returns a boolean
    ``(*y.shape, P)`` (True: hidden at some probe point) and the largest finite-difference
    derivative seen there, per parameter.
    """
    index = probe_indices(len(points))
    probes = points[index.to(points.device)]
    eps = torch.finfo(points.dtype).eps

    def primal(thetas: Tensor) -> Tensor:
        with torch.no_grad():
            return over_points(lambda theta: fn(x, theta), thetas)

    hidden, largest = [], []
    for i in range(dy.shape[-1]):  # the parameters dy holds (the swept ones)
        up, down, width = central_points(probes, i, fd_step(probes[:, i]))
        y_up, y_down = primal(up).cpu(), primal(down).cpu()
        change = (y_up - y_down).abs()
        scale = torch.maximum(y_up.abs(), y_down.abs())
        moves = change > MOVE_ROUNDOFF * eps * scale
        shape = (-1,) + (1,) * (change.dim() - 1)
        differences = change / width.cpu().reshape(shape)
        zero = dy[index.cpu(), ..., i] == 0
        found = moves & zero
        hidden.append(found.any(dim=0))
        largest.append(differences[found].max() if found.any() else torch.zeros((), dtype=differences.dtype))
    return torch.stack(hidden, dim=-1), torch.stack(largest)
