"""``method="auto"`` (the default): batched forward mode where torch can batch the model, else a fallback.

# NOTE [The fallback ladder]
``forward`` (``jvp`` vmapped over the points) is the fast path. Where torch cannot run it (the
model branches on a value or calls ``.item()``, writes in place into a tensor it made, uses an op
without a batching rule) the run goes down the ladder until a rung works:

1. ``forward_per_point``: dual tensors, one point at a time, still batched over the samples;
2. ``reverse_per_point``: plain autograd (an op without a forward-mode rule starts here);
3. ``finite_difference_per_point``: central differences of plain calls.

A model that leaves torch for its arithmetic (``float(C)``, ``C.numpy()`` on a dual tensor) loses
the tangent without an error: the hidden-dependence check (NOTE [Hidden dependence]) warns.

One warning names why the batched pass failed, where in the model, and the method used; the
dataset records both (attrs ``method``, ``method_requested``, ``fallback_reason``). Errors that
no other method can cure are raised at once: random numbers drawn inside the pass, running out of
memory, a :class:`~pipeline.errors.ConfigError`. A method named explicitly never falls back.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from pipeline.derivatives.chunking import ChunkHints
from pipeline.derivatives.diagnose import describe, diagnose
from pipeline.derivatives.methods import FORWARD_MODE, METHODS, Derivatives, RoutineFn
from pipeline.errors import ConfigError, DerivativeError, Kind

LADDER = ("forward", "forward_per_point", "reverse_per_point", "finite_difference_per_point")
"""The methods ``auto`` tries, in order (NOTE above)."""

REVERSE_LADDER = ("reverse", "reverse_per_point", "finite_difference_per_point")
"""Where a bound tensor's elements outnumber the outputs per point, reverse mode comes first."""

REVERSE_FIRST = ("reverse", *LADDER)
"""Where swept parameters outnumber the outputs per point (a design over one output): reverse mode
costs a pass per output, forward mode one per parameter (``benchmarks/directions.py``)."""


@dataclass
class Fallback:
    """What ``auto`` ran: the derivatives, the method that gave them, and why others were passed over."""

    result: Derivatives
    method: str
    reason: str = ""


def _is_final(err: BaseException) -> bool:
    """Errors no other method cures: randomness under vmap, memory, bad configuration."""
    if isinstance(err, ConfigError | torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(err, DerivativeError) and err.kind is Kind.RANDOMNESS


def auto(
    fn: RoutineFn,
    x: Tensor,
    points: Tensor,
    *,
    chunk_size: int | None = None,
    max_memory_mb: int | None = None,
    hints: ChunkHints | None = None,
    ladder: tuple[str, ...] = LADDER,
) -> Fallback:
    """Derivatives by the first method of :data:`LADDER` that works (NOTE above), with one warning if not the first.

    >>> def branchy(x, C):
    ...     return C * x if C.item() > 0 else -C * x
    >>> fn = lambda x, t: branchy(x, t[0])
    >>> with warnings.catch_warnings(record=True):
    ...     run = auto(fn, torch.arange(3.0), torch.tensor([[2.0], [-1.0]]))
    >>> run.method, run.result.dy[..., 0].tolist()
    ('forward_per_point', [[0.0, 1.0, 2.0], [-0.0, -1.0, -2.0]])
    """
    failures: list[tuple[str, BaseException]] = []
    remaining = list(ladder)
    while remaining:
        method = remaining.pop(0)
        try:
            result = METHODS[method](fn, x, points, chunk_size=chunk_size, max_memory_mb=max_memory_mb, hints=hints)
        except (RuntimeError, NotImplementedError, TypeError, ValueError, DerivativeError) as err:
            if _is_final(err):
                raise
            failures.append((method, err))
            if diagnose(err).kind is Kind.NO_FORWARD_RULE:
                remaining = [m for m in remaining if m not in FORWARD_MODE]
            continue
        if not failures:
            return Fallback(result, method)
        reason = "; ".join(describe(m, err) for m, err in failures)
        slower = (
            ", which runs one parameter point at a time (slower than the batched pass)"
            if method.endswith("_per_point")
            else ""
        )
        warnings.warn(f"method=auto used {method}{slower}: {reason}", RuntimeWarning, stacklevel=3)
        return Fallback(result, method, reason)
    raise DerivativeError(
        "no method could differentiate this model: " + "; ".join(describe(m, err) for m, err in failures),
        Kind.NO_METHOD,
    ) from failures[-1][1]
