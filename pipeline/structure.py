"""Which outputs the swept parameter reaches at all: structural independence vs a zero derivative.

# NOTE [Structural independence]
``dy/dC == 0`` can mean two things: a path from ``C`` to ``y`` exists and the derivative is
numerically zero there, or no path exists (a ``detach()``, a parameter the model does not use,
the branch a ``where``/``if`` did not select, an inactive ReLU). To tell them apart we push a
NaN tangent through the model with ``torch.func.jvp``: every op on a path multiplies or adds
it, and ``NaN * 0`` is still NaN, so an output is NaN exactly when some path carries C's
tangent to it; selections and cut paths leave 0. The check runs at a few values of ``C``
(first, middle, last of those given) and an output counts as connected if any of them reaches it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jvp, vmap

PROBES = 3
"""How many values of ``C`` the check uses."""


def probe_values(values: Tensor) -> Tensor:
    """The first, middle and last value (fewer when there are fewer)."""
    index = torch.linspace(0, len(values) - 1, min(PROBES, len(values))).round().long().unique()
    return values[index.to(values.device)]


def connected(fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, values: Tensor) -> Tensor | None:
    """Boolean tensor shaped like ``y``: True where C reaches the output (NOTE above).

    Returns ``None`` when the model has no forward-mode rule for some op (no check possible).
    """

    def nan_tangent(c: Tensor) -> Tensor:
        return jvp(lambda c_: fn(x, c_), (c,), (torch.full_like(c, float("nan")),))[1]

    try:
        tangents = vmap(nan_tangent)(probe_values(values))
    except (RuntimeError, NotImplementedError):
        return None
    return tangents.isnan().any(dim=0).cpu()
