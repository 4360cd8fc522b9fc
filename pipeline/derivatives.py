"""Batched derivatives ``dy/dC`` of a routine ``fn(x, c)`` for many values of ``c``.

Every method has the signature ``method(fn, x, values, *, chunk_size, max_memory_mb)`` and
returns :class:`Derivatives` with ``y`` and ``dy`` of shape ``(len(values), *y.shape)``, on
the CPU. ``chunk_size`` means what it means for :func:`torch.func.vmap`: the number of
values per batched pass; ``None`` picks the largest that fits the memory budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import jvp, vmap
from tqdm.auto import tqdm

from pipeline.memory import PROBE_SIZES, budget_bytes, fit_chunk_size, measure_peak_bytes, output_bytes

Routine = Callable[[Tensor, Tensor], Tensor]


class DerivativeError(RuntimeError):
    """A derivative cannot be computed with the chosen method; the message says what to do."""


@dataclass
class Derivatives:
    """``y`` and ``dy/dC`` per value (leading dim), and the chunk size that was used."""

    y: Tensor
    dy: Tensor
    chunk_size: int


def _in_chunks(batched: Callable, values: Tensor, chunk_size: int | None, max_memory_mb: int | None) -> Derivatives:
    """Run ``batched`` over ``values`` chunk by chunk, moving each result to the CPU.

    With ``chunk_size=None`` the first chunks are memory probes whose results are kept
    (NOTE [Choosing the chunk size] in :mod:`pipeline.memory`).
    """
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be None or >= 1, got {chunk_size}")
    done: list[tuple[Tensor, Tensor]] = []
    start = 0
    with tqdm(total=len(values), desc="values", unit="value", disable=None, leave=False) as bar:

        def run(chunk: Tensor) -> tuple[Tensor, Tensor]:
            y, dy = batched(chunk)
            done.append((y.cpu(), dy.cpu()))
            bar.update(len(chunk))
            return y, dy

        if chunk_size is None:
            budget = budget_bytes(values.device, max_memory_mb)
            probes = []
            for size in PROBE_SIZES:
                chunk = values[start : start + size]
                if len(chunk) == 0:
                    break
                result, peak = measure_peak_bytes(lambda chunk=chunk: run(chunk), values.device)
                probes.append((len(chunk), peak, output_bytes(result)))
                start += len(chunk)
                chunk_size = fit_chunk_size(probes, budget, max(len(values) - start, 1))
                if chunk_size >= len(values) - start:
                    break
        for chunk in values[start:].split(chunk_size) if start < len(values) else ():
            run(chunk)
    return Derivatives(torch.cat([y for y, _ in done]), torch.cat([dy for _, dy in done]), chunk_size)


def forward(
    fn: Routine, x: Tensor, values: Tensor, *, chunk_size: int | None = None, max_memory_mb: int | None = None
) -> Derivatives:
    """Forward mode: ``torch.func.jvp`` with tangent 1, vmapped over the values of a chunk.

    One pass gives ``dy/dC`` for every sample and output element at once (the seed thread's
    "forward mode, batched"): the cost is a small multiple of evaluating ``y``.

    >>> d = forward(lambda x, c: c * x, torch.arange(3.0), torch.tensor([1.0, 2.0]))
    >>> d.dy  # dy/dC = x for every C
    tensor([[0., 1., 2.],
            [0., 1., 2.]])
    """

    def value_and_tangent(c: Tensor) -> tuple[Tensor, Tensor]:
        return jvp(lambda c_: fn(x, c_), (c,), (torch.ones_like(c),))

    try:
        return _in_chunks(vmap(value_and_tangent), values, chunk_size, max_memory_mb)
    except (RuntimeError, NotImplementedError) as err:
        text = str(err)
        if "forward AD" in text or "forward-mode AD" in text or "jvp" in text.lower():
            raise DerivativeError(f"method=forward failed: an op of the model has no forward-mode AD rule "
                                  f"({text.splitlines()[0]}); use method=reverse for this model") from err
        raise


METHODS: dict[str, Callable[..., Derivatives]] = {"forward": forward}
"""Derivative methods by their config name (``method.name``)."""
