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
import torch.autograd.forward_ad as fwAD
from torch import Tensor
from torch.func import jacrev, jvp, vmap
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
            try:
                y, dy = batched(chunk)
            except RuntimeError as err:
                if "randomness" in str(err):
                    raise DerivativeError(
                        "the model draws random numbers inside the batched pass (e.g. dropout in training mode); "
                        "sensweep rejects this so that every value of C sees the same computation: call "
                        "model.eval(), or draw the randomness into the inputs x") from err
                raise
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


def _no_forward_rule(err: Exception, method: str) -> DerivativeError | None:
    text = str(err)
    if any(marker in text for marker in ("forward AD", "forward mode AD", "forward-mode AD")):
        return DerivativeError(f"method={method} failed: an op of the model has no forward-mode AD rule "
                               f"({text.splitlines()[0]}); use method=reverse for this model")
    return None


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
        raise (_no_forward_rule(err, "forward") or err) from err


def forward_dual(
    fn: Routine, x: Tensor, values: Tensor, *, chunk_size: int | None = None, max_memory_mb: int | None = None
) -> Derivatives:
    """Forward mode with ``torch.autograd.forward_ad`` dual tensors (the seed thread's first answer).

    The chunk's values become one dual tensor (tangent 1) that ``vmap`` maps over; ``make_dual``
    has no batching rule, so the dual is made outside ``vmap``.
    """

    def value_and_tangent(chunk: Tensor) -> tuple[Tensor, Tensor]:
        with fwAD.dual_level():
            dual = fwAD.make_dual(chunk, torch.ones_like(chunk))
            y, dy = fwAD.unpack_dual(vmap(lambda c: fn(x, c))(dual))
        return y, torch.zeros_like(y) if dy is None else dy

    try:
        return _in_chunks(value_and_tangent, values, chunk_size, max_memory_mb)
    except (RuntimeError, NotImplementedError) as err:
        raise (_no_forward_rule(err, "forward_dual") or err) from err


def reverse(
    fn: Routine, x: Tensor, values: Tensor, *, chunk_size: int | None = None, max_memory_mb: int | None = None
) -> Derivatives:
    """Reverse mode: one vector-Jacobian product per output element (``jacrev``), vmapped over values.

    The cost grows with the number of output elements (samples x outputs), so this suits models
    with few outputs per value, or ops that lack forward-mode rules.
    """

    def value_and_jacobian(c: Tensor) -> tuple[Tensor, Tensor]:
        def both(c_: Tensor) -> tuple[Tensor, Tensor]:
            y = fn(x, c_)
            return y, y

        dy, y = jacrev(both, has_aux=True)(c)
        return y, dy

    return _in_chunks(vmap(value_and_jacobian), values, chunk_size, max_memory_mb)


def loop(
    fn: Routine, x: Tensor, values: Tensor, *, chunk_size: int | None = None, max_memory_mb: int | None = None
) -> Derivatives:
    """The seed's baseline: one ``torch.autograd.grad`` per output element and value. Slow on purpose.

    A reference for the batched methods on small problems; it runs one value at a time
    (``chunk_size`` and ``max_memory_mb`` are accepted for a uniform signature and ignored).
    """

    def one_value(chunk: Tensor) -> tuple[Tensor, Tensor]:
        ys, dys = [], []
        for value in chunk:
            c = value.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                y = fn(x, c)
                flat = y.reshape(-1)
                grads = [torch.autograd.grad(yi, c, retain_graph=True, allow_unused=True)[0] for yi in flat]
            dy = torch.stack([torch.zeros_like(c) if g is None else g for g in grads]).reshape(y.shape)
            ys.append(y.detach())
            dys.append(dy)
        return torch.stack(ys), torch.stack(dys)

    return _in_chunks(one_value, values, 1, None)


def fd_step(values: Tensor) -> Tensor:
    """Central-difference step: ``eps^(1/3) * max(|C|, 1)``, which balances truncation error
    (``O(h^2)``) against round-off (``O(eps / h)``) for a smooth ``y``."""
    eps = torch.finfo(values.dtype).eps
    return eps ** (1 / 3) * values.abs().clamp(min=1.0)


def finite_difference(
    fn: Routine, x: Tensor, values: Tensor, *, chunk_size: int | None = None, max_memory_mb: int | None = None,
    step: float | None = None,
) -> Derivatives:
    """Central differences ``(y(C+h) - y(C-h)) / 2h`` from batched primal passes.

    ``h`` is :func:`fd_step` unless ``step`` is given. The divisor is the difference of the
    two representable arguments, not ``2h``, so the step's own round-off does not bias it.
    """
    if step is not None and not step > 0:
        raise ValueError(f"finite-difference step must be > 0, got {step}")
    primal = vmap(lambda c: fn(x, c))

    def value_and_difference(chunk: Tensor) -> tuple[Tensor, Tensor]:
        h = fd_step(chunk) if step is None else torch.full_like(chunk, step)
        up, down = chunk + h, chunk - h
        shape = (-1,) + (1,) * (primal(chunk[:1]).dim() - 1)
        return primal(chunk), (primal(up) - primal(down)) / (up - down).reshape(shape)

    return _in_chunks(value_and_difference, values, chunk_size, max_memory_mb)


METHODS: dict[str, Callable[..., Derivatives]] = {
    "forward": forward,
    "forward_dual": forward_dual,
    "reverse": reverse,
    "loop": loop,
    "finite_difference": finite_difference,
}
"""Derivative methods by their config name (``method.name``)."""
