"""Which outputs the swept parameter reaches at all: structural independence vs a zero derivative.

# NOTE [Structural independence]
``dy/dC == 0`` can mean two things: a path from ``C`` to ``y`` exists and the derivative is
numerically zero there, or no path exists (a ``detach()``, a parameter the model does not use,
the branch a ``where``/``if`` did not select, an inactive ReLU). To tell them apart we push a
NaN tangent through the model with ``torch.func.jvp``: every op on a path multiplies or adds
it, and ``NaN * 0`` is still NaN, so an output is NaN exactly when some path carries C's
tangent to it; selections and cut paths leave 0. The check runs once per swept parameter (a NaN
in that direction only), at a few points of the sweep (first, middle, last of those given), and
an output counts as connected if any of them reaches it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jvp, vmap

from pipeline.memory import measure_peak_bytes

PROBES = 3
"""How many values of ``C`` the check uses."""


def check_structure(
    fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, points: Tensor
) -> tuple[Tensor | None, int | None]:
    """:func:`connected`, and a pessimistic bytes-per-point estimate for forward-mode methods.

    The check is a forward pass over a few points: its peak memory, counted as all per point
    and once per parameter direction, bounds what a forward pass needs per point (the
    ``memory_hint`` of :mod:`pipeline.derivatives`). ``None`` where it cannot be measured.
    """
    reached, peak = measure_peak_bytes(lambda: connected(fn, x, points), points.device)
    if peak is None or reached is None:
        return reached, None
    return reached, max(1, peak * points.shape[1] // len(probe_points(points)))


def probe_points(points: Tensor) -> Tensor:
    """The first, middle and last point (fewer when there are fewer)."""
    index = torch.linspace(0, len(points) - 1, min(PROBES, len(points))).round().long().unique()
    return points[index.to(points.device)]


def connected(fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, points: Tensor) -> Tensor | None:
    """Boolean tensor ``(*y.shape, P)``: True where parameter ``i`` reaches the output (NOTE above).

    Returns ``None`` when the model has no forward-mode rule for some op (no check possible).
    """
    reached = []
    for i in range(points.shape[1]):

        def nan_tangent(theta: Tensor, i: int = i) -> Tensor:
            direction = torch.zeros_like(theta)
            direction[i] = float("nan")
            return jvp(lambda t: fn(x, t), (theta,), (direction,))[1]

        try:
            tangents = vmap(nan_tangent)(probe_points(points))
        except (RuntimeError, NotImplementedError):
            return None
        reached.append(tangents.isnan().any(dim=0).cpu())
    return torch.stack(reached, dim=-1)
