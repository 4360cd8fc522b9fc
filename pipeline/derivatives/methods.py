"""Batched derivatives of a routine ``fn(x, theta)`` at many points ``theta`` of a parameter sweep.

Every method has the signature ``method(fn, x, points, *, chunk_size, max_memory_mb, hints, ...)``
where ``points`` is ``(N, P)``: N points of P swept parameters. It returns
:class:`Derivatives` with ``y`` of shape ``(N, *y.shape)`` and ``dy`` of shape
``(N, *y.shape, P)`` (one derivative per parameter), on the CPU. ``chunk_size`` means what it
means for :func:`torch.func.vmap`: the number of points per batched pass; ``None`` picks the
largest that fits the memory budget (:mod:`pipeline.derivatives.chunking`). ``hints`` says what the checks
before a sweep learnt for that choice (:class:`pipeline.derivatives.chunking.ChunkHints`): a pessimistic
bytes-per-point estimate of a forward-mode pass (from the structure check), which ``reverse``,
whose memory grows with the number of outputs, and ``loop`` ignore, and whether the model is
op-bound (:mod:`pipeline.derivatives.opcost`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor
from torch.func import jacfwd, jacrev, jvp, vmap
from tqdm.auto import tqdm

from pipeline.derivatives.chunking import ChunkHints, choose_chunk_size
from pipeline.derivatives.diagnose import translate_error
from pipeline.derivatives.heap import kept_heap, mapped_apart
from pipeline.derivatives.zerotensor import real
from pipeline.errors import DerivativeError, Kind, clipped

PIN_MAX_BYTES = 2**29
"""Results from a GPU up to this size land in page-locked host memory, copied without blocking
(the next chunk's kernels run during the copy). Larger ones go through two page-locked buffers of
:data:`STAGE_BYTES` into ordinary memory (:class:`_HostCopies`) rather than page-locking
gigabytes, which is several times faster than a plain copy."""

STAGE_BYTES = 2**26
"""Size of each of the two page-locked buffers that large results pass through."""

RoutineFn = Callable[[Tensor, Tensor], Tensor]
"""A pure ``fn(x, theta) -> y`` (see :class:`pipeline.derivatives.routine.Routine`)."""


@contextlib.contextmanager
def ieee_float32(device: torch.device) -> Iterator[None]:
    """TF32 off on a GPU while derivatives are computed, restored after.

    cuDNN's convolutions run float32 as TF32 by default (10-bit mantissas, relative errors near
    1e-3): derivatives would carry those errors, and central differences multiply them by 1/h
    (on an H200, a float32 Conv1d stack's differences disagreed with forward mode beyond 1e-3).
    ``dtype=float32`` then means IEEE float32.
    """
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@dataclass
class Derivatives:
    """``y``, ``dy/dtheta`` (last dim: parameter) and optionally ``d2y/dtheta^2``, per point."""

    y: Tensor
    dy: Tensor
    chunk_size: int
    d2y: Tensor | None = None
    failed: list[tuple[int, str]] = field(default_factory=list)
    """Points where the model raised (index, its message): their results are NaN (per-point methods)."""


def in_chunks(
    batched: Callable,
    points: Tensor,
    *,
    chunk_size: int | None,
    max_memory_mb: int | None,
    hints: ChunkHints | None = None,
    method: str = "",
    directions: int = 1,
) -> Derivatives:
    """Run ``batched`` over ``points`` chunk by chunk, moving each result to the CPU.

    ``batched(chunk)`` returns a tuple of tensors with a leading chunk dim. With
    ``chunk_size=None``, :func:`pipeline.derivatives.chunking.choose_chunk_size` picks it, running its probe
    chunks through the same runner (their results are kept); ``directions``: the tangents a pass
    pushes per point at once (the chunk sizes timed shrink with them).
    Torch errors a user can act on (randomness under vmap, an op without a forward-mode rule)
    become :class:`DerivativeError` naming ``method``.
    """
    out: list[Tensor] = []  # full-size results on the CPU, allocated at the first chunk: no cat at the end
    filled = 0
    host = _HostCopies()
    # kept_heap: each pass reuses the memory of the one before
    with tqdm(total=len(points), desc="points", unit="point", disable=None, leave=False) as bar, kept_heap():

        def run(chunk: Tensor) -> tuple[Tensor, ...]:
            """One batched pass; its results go into ``out`` (probes' results are kept too)."""
            try:
                result = batched(_own_storage(chunk))
            except (RuntimeError, NotImplementedError) as err:
                translated = translate_error(err, method)
                if translated is None:
                    raise
                raise translated from err
            result = tuple(real(t) for t in result)  # a ZeroTensor (d2y of a linear model) as zeros
            nonlocal filled
            if not out and len(chunk) == len(points) and all(_adoptable(t) for t in result):
                out.extend(result)  # one chunk, already in host memory: kept as it is, not copied
                filled = len(points)
                bar.update(len(chunk))
                return result
            if not out:
                per_point = sum(t[0].numel() * t.element_size() for t in result)
                pin = result[0].is_cuda and per_point * len(points) <= PIN_MAX_BYTES
                with mapped_apart():  # they outlive the sweep: not in the heap its passes reuse
                    out.extend(torch.empty((len(points), *t.shape[1:]), dtype=t.dtype, pin_memory=pin) for t in result)
            for full, t in zip(out, result, strict=True):
                host.copy(full[filled : filled + len(chunk)], t)
            filled += len(chunk)
            bar.update(len(chunk))
            return result

        start = 0
        if chunk_size is None:
            chunk_size, start = choose_chunk_size(
                run, points, max_memory_mb=max_memory_mb, hints=hints, directions=directions
            )
        for chunk in points[start:].split(chunk_size) if start < len(points) else ():
            run(chunk)
    if points.is_cuda:
        torch.cuda.synchronize(points.device)  # the last copies to the host are done
    y, *rest = out
    dy = rest[0] if rest else y.new_empty((*y.shape, 0))  # method "none": y only
    return Derivatives(y, dy, chunk_size, rest[1] if len(rest) > 1 else None)


def _own_storage(chunk: Tensor) -> Tensor:
    """``chunk`` in storage of its own size. A chunk is a view of all the points, and under ``vmap``
    ``new_zeros`` of such a view (``jacfwd`` builds its basis with it) allocates and zeroes the size
    of the whole storage: 625 MB and 0.15 s per pass for 8,192 points of 100 parameters, whatever the
    chunk's size. Copying the chunk costs its own size once."""
    whole = chunk.untyped_storage().nbytes() == chunk.numel() * chunk.element_size()
    return chunk if whole and chunk.is_contiguous() else chunk.clone(memory_format=torch.contiguous_format)


def _adoptable(t: Tensor) -> bool:
    """A result that can be the returned array itself: in ordinary host memory, contiguous, and all
    of its memory (not a view of part of a larger tensor, which would keep all of that alive).
    Forward mode's ``dy`` is such a whole view (``unsqueeze``): copying it would cost a sweep in one
    chunk a tenth of its time."""
    whole = t._base is None or t.untyped_storage().nbytes() == t.numel() * t.element_size()
    return not t.is_cuda and t.is_contiguous() and whole


class _HostCopies:
    """Copies of results to host memory: without blocking into page-locked memory; from a GPU into
    ordinary memory through two page-locked buffers of :data:`STAGE_BYTES` taken in turn (the
    GPU fills one while the CPU's threads empty the other); plain copies on the CPU."""

    def __init__(self) -> None:
        self.buffers: list[Tensor] = []
        self.ready: list[torch.cuda.Event] = []
        self.turn = 0

    def copy(self, dst: Tensor, src: Tensor) -> None:
        if dst.is_pinned() or not src.is_cuda:
            dst.copy_(src, non_blocking=dst.is_pinned())
            return
        flat_src, flat_dst = src.reshape(-1), dst.view(-1)
        size = max(1, STAGE_BYTES // src.element_size())
        pending = None  # the piece in a buffer, waiting for the CPU's copy
        for start in range(0, flat_src.numel(), size):
            piece = slice(start, min(start + size, flat_src.numel()))
            buffer, ready = self._buffer(src.dtype, size)
            staged = buffer[: piece.stop - piece.start]
            staged.copy_(flat_src[piece], non_blocking=True)
            ready.record()
            if pending:  # the GPU copies this piece while the CPU empties the other buffer
                self._empty(*pending)
            pending = (flat_dst[piece], staged, ready)
        if pending:
            self._empty(*pending)

    @staticmethod
    def _empty(dst: Tensor, staged: Tensor, ready: torch.cuda.Event) -> None:
        ready.synchronize()
        dst.copy_(staged)

    def _buffer(self, dtype: torch.dtype, size: int) -> tuple[Tensor, torch.cuda.Event]:
        self.turn = (self.turn + 1) % 2
        if len(self.buffers) < 2 or self.buffers[self.turn].dtype != dtype:
            self.buffers = [torch.empty(size, dtype=dtype, pin_memory=True) for _ in range(2)]
            self.ready = [torch.cuda.Event() for _ in range(2)]
        return self.buffers[self.turn], self.ready[self.turn]


def value_and_jacobian(f: Callable[[Tensor], Tensor], theta: Tensor) -> tuple[Tensor, Tensor]:
    """``f(theta)`` and its Jacobian (last dim: parameter) by forward mode, at one point ``theta``."""
    if theta.shape[0] == 1:
        y, dy = jvp(f, (theta,), (torch.ones_like(theta),))
        return y, dy.unsqueeze(-1)

    def both(t: Tensor) -> tuple[Tensor, Tensor]:
        y = f(t)  # one evaluation: the value rides along as aux
        return y, y

    dy, y = jacfwd(both, has_aux=True)(theta)
    return y, dy


def primal(
    fn: RoutineFn,
    x: Tensor,
    points: Tensor,
    *,
    chunk_size: int | None = None,
    max_memory_mb: int | None = None,
    hints: ChunkHints | None = None,
) -> Derivatives:
    """``y`` only, no derivative (``method="none"``): the model vmapped over the points of a chunk.

    What variance-based Sobol' indices need from a Saltelli design: ``dy`` has no column.
    """
    f = vmap(lambda theta: fn(x, theta))
    try:
        return in_chunks(
            lambda chunk: (f(chunk),),
            points,
            chunk_size=chunk_size,
            max_memory_mb=max_memory_mb,
            hints=ChunkHints(op_bound=hints.op_bound) if hints else None,  # the estimate is forward mode's
            method="none",
        )
    except DerivativeError as err:  # vmap cannot run the model (.item(), control flow): one point at a time
        if err.kind is not Kind.UNBATCHABLE:
            raise
    with torch.no_grad():
        return _per_point(lambda theta: (y := fn(x, theta), y.new_empty((*y.shape, 0))), points, "none")


def forward(
    fn: RoutineFn,
    x: Tensor,
    points: Tensor,
    *,
    chunk_size: int | None = None,
    max_memory_mb: int | None = None,
    hints: ChunkHints | None = None,
    order: int = 1,
) -> Derivatives:
    """Forward mode: ``torch.func.jvp`` along each parameter direction, vmapped over the points of a chunk.

    One pass gives ``dy/dC`` for every sample and output element at once (the seed thread's
    "forward mode, batched"); with several parameters the directions are vmapped too
    (``jacfwd``). ``order=2`` (one parameter) nests a second ``jvp`` (forward-over-forward)
    and also returns ``d2y/dC^2``.

    >>> d = forward(lambda x, t: t[0] * x, torch.arange(3.0), torch.tensor([[1.0], [2.0]]))
    >>> d.dy[..., 0]  # dy/dC = x at every C
    tensor([[0., 1., 2.],
            [0., 1., 2.]])
    """

    def f(theta: Tensor) -> Tensor:
        return fn(x, theta)

    def first(theta: Tensor) -> tuple[Tensor, Tensor]:
        return value_and_jacobian(f, theta)

    def second(theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        one = torch.ones_like(theta)
        (y, dy), (_, d2y) = jvp(lambda t: jvp(f, (t,), (one,)), (theta,), (one,))
        return y, dy.unsqueeze(-1), d2y

    return in_chunks(
        vmap(first if order == 1 else second),
        points,
        chunk_size=chunk_size,
        max_memory_mb=max_memory_mb,
        hints=hints,
        method="forward",
        directions=points.shape[1] if order == 1 else 1,  # jacfwd pushes every direction at once
    )


def _dual_tangents(f: Callable[[Tensor], Tensor], theta: Tensor) -> tuple[Tensor, Tensor]:
    """``f(theta)`` and its tangent along each parameter (the last dim of ``theta``: one point, or a
    chunk of them), one dual-tensor pass each, stacked on a last dim."""
    tangents = []
    for i in range(theta.shape[-1]):
        direction = torch.zeros_like(theta)
        direction[..., i] = 1
        with fwAD.dual_level():
            y, dy = fwAD.unpack_dual(f(fwAD.make_dual(theta, direction)))
        tangents.append(torch.zeros_like(y) if dy is None else dy)
    return y, torch.stack(tangents, dim=-1)


def forward_dual(
    fn: RoutineFn,
    x: Tensor,
    points: Tensor,
    *,
    chunk_size: int | None = None,
    max_memory_mb: int | None = None,
    hints: ChunkHints | None = None,
) -> Derivatives:
    """Forward mode with ``torch.autograd.forward_ad`` dual tensors (the seed thread's first answer).

    The chunk's points become one dual tensor per parameter direction that ``vmap`` maps over;
    ``make_dual`` has no batching rule, so the dual is made outside ``vmap``.
    """
    primal = vmap(lambda theta: fn(x, theta))
    return in_chunks(
        lambda chunk: _dual_tangents(primal, chunk),
        points,
        chunk_size=chunk_size,
        max_memory_mb=max_memory_mb,
        hints=hints,
        method="forward_dual",
    )


def reverse(
    fn: RoutineFn,
    x: Tensor,
    points: Tensor,
    *,
    chunk_size: int | None = None,
    max_memory_mb: int | None = None,
    hints: ChunkHints | None = None,
) -> Derivatives:
    """Reverse mode: one vector-Jacobian product per output element (``jacrev``), vmapped over points.

    The cost grows with the number of output elements (samples x outputs), so this suits models
    with few outputs per point, or ops that lack forward-mode rules.
    """

    def value_and_jacobian(theta: Tensor) -> tuple[Tensor, Tensor]:
        def both(t: Tensor) -> tuple[Tensor, Tensor]:
            y = fn(x, t)
            return y, y

        dy, y = jacrev(both, has_aux=True)(theta)
        return y, dy

    return in_chunks(
        vmap(value_and_jacobian),
        points,
        chunk_size=chunk_size,
        max_memory_mb=max_memory_mb,
        hints=ChunkHints(op_bound=hints.op_bound) if hints else None,  # the memory estimate is forward mode's
        method="reverse",
    )


def loop(
    fn: RoutineFn,
    x: Tensor,
    points: Tensor,
    *,
    chunk_size: int | None = None,
    max_memory_mb: int | None = None,
    hints: ChunkHints | None = None,
) -> Derivatives:
    """The seed's baseline: one ``torch.autograd.grad`` per output element and point. Slow on purpose.

    A reference for the batched methods on small problems; it runs one point at a time
    (``chunk_size`` and ``max_memory_mb`` are accepted for a uniform signature and ignored).
    """

    def one_point(chunk: Tensor) -> tuple[Tensor, Tensor]:
        ys, dys = [], []
        for point in chunk:
            theta = point.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                y = fn(x, theta)
                grads = [
                    torch.autograd.grad(yi, theta, retain_graph=True, allow_unused=True)[0] for yi in y.reshape(-1)
                ]
            dy = torch.stack([torch.zeros_like(theta) if g is None else g for g in grads])
            ys.append(y.detach())
            dys.append(dy.reshape(*y.shape, len(theta)))
        return torch.stack(ys), torch.stack(dys)

    return in_chunks(one_point, points, chunk_size=1, max_memory_mb=None, method="loop")


def central_points(points: Tensor, i: int, step: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``points`` with parameter ``i`` (the last dim) moved up and down by ``step``, and the
    distance between the two: the divisor of a central difference, which is the difference of the
    representable arguments rather than ``2 step``, so the step's own round-off does not bias it."""
    up, down = points.clone(), points.clone()
    up[..., i] += step
    down[..., i] -= step
    return up, down, up[..., i] - down[..., i]


def fd_step(values: Tensor) -> Tensor:
    """Central-difference step: ``eps^(1/3) * max(|C|, 1)``, which balances truncation error
    (``O(h^2)``) against round-off (``O(eps / h)``) for a smooth ``y``."""
    eps = torch.finfo(values.dtype).eps
    return eps ** (1 / 3) * values.abs().clamp(min=1.0)


def _differences(f: Callable[[Tensor], Tensor], theta: Tensor, step: float | None) -> Tensor:
    """Central differences of ``f`` along each parameter (the last dim of ``theta``: one point, or a
    chunk of them), stacked on a last dim; the step is :func:`fd_step` unless ``step`` is given."""
    differences = []
    for i in range(theta.shape[-1]):
        h = fd_step(theta[..., i]) if step is None else torch.full_like(theta[..., i], step)
        up, down, width = central_points(theta, i, h)
        change = f(up) - f(down)
        differences.append(change / width.reshape(width.shape + (1,) * (change.dim() - width.dim())))
    return torch.stack(differences, dim=-1)


def finite_difference(
    fn: RoutineFn,
    x: Tensor,
    points: Tensor,
    *,
    chunk_size: int | None = None,
    max_memory_mb: int | None = None,
    hints: ChunkHints | None = None,
    step: float | None = None,
) -> Derivatives:
    """Central differences ``(y(C+h) - y(C-h)) / 2h`` per parameter, from batched primal passes.

    ``h`` is :func:`fd_step` unless ``step`` is given; the points are :func:`central_points`.
    """
    primal = vmap(lambda theta: fn(x, theta))
    return in_chunks(
        lambda chunk: (primal(chunk), _differences(primal, chunk, step)),
        points,
        chunk_size=chunk_size,
        max_memory_mb=max_memory_mb,
        hints=hints,
        method="finite_difference",
    )


# NOTE [Per-point methods]
# vmap needs every op of the model to batch: data-dependent control flow (`while err > tol`,
# `.item()`), in-place writes into tensors the model made itself (ODE solvers' solution buffers),
# or an op without a batching rule stop it. The per-point methods run one parameter point at a
# time, with no vmap, still batched over the samples (the model sees the whole x): forward mode
# with dual tensors (torch.autograd.forward_ad, which accepts in-place ops and .item()), reverse
# mode with plain autograd, or central differences of plain calls. They are what the default
# method falls back to (pipeline.derivatives.fallback), and can be forced by name.


POINT_FAILURES = (ValueError, ArithmeticError, RuntimeError, AssertionError, IndexError)
"""What a model may raise at some points of a sweep (a solver that does not converge, a domain error):
once a point has succeeded, such a point's results are NaN and the failure is recorded."""


def _per_point(one: Callable[[Tensor], tuple[Tensor, Tensor]], points: Tensor, method: str) -> Derivatives:
    """Run ``one(point) -> (y, dy)`` at each point (chunks of one: a progress bar per point).

    A model that raises at a point after the first has succeeded gives NaN there, recorded in
    :attr:`Derivatives.failed` (the caller reports them): one point cannot sink a sweep. A failure
    before any success is raised, as a method that cannot run the model must be (the fallback ladder).
    """
    failed: list[tuple[int, str]] = []
    first: list[tuple[Tensor, Tensor]] = []
    at = -1  # the point being run: chunks of one, in order

    def chunk_of_one(chunk: Tensor) -> tuple[Tensor, Tensor]:
        nonlocal at
        at += 1
        try:
            y, dy = one(chunk[0])
        except POINT_FAILURES as err:
            if not first or isinstance(err, DerivativeError | torch.OutOfMemoryError):
                raise
            failed.append((at, clipped(f"{type(err).__name__}: {err}")))
            y, dy = (torch.full_like(t, torch.nan) for t in first[0])
        if not first:
            first.append((y.detach(), dy.detach()))
        return y.detach().unsqueeze(0), dy.detach().unsqueeze(0)

    result = in_chunks(chunk_of_one, points, chunk_size=1, max_memory_mb=None, method=method)
    result.failed = failed
    return result


def forward_per_point(
    fn: RoutineFn,
    x: Tensor,
    points: Tensor,
    *,
    chunk_size: int | None = None,
    max_memory_mb: int | None = None,
    hints: ChunkHints | None = None,
) -> Derivatives:
    """Forward mode one point at a time (NOTE [Per-point methods]): a dual-tensor pass per parameter.

    >>> d = forward_per_point(lambda x, t: t[0] * x if t[0].item() > 0 else x, torch.arange(3.0), torch.tensor([[2.0]]))
    >>> d.dy[..., 0]
    tensor([[0., 1., 2.]])
    """

    with torch.no_grad():  # forward AD needs no graph
        return _per_point(lambda theta: _dual_tangents(lambda t: fn(x, t), theta), points, "forward_per_point")


def _batched_grad(outputs: Tensor, inputs: Tensor, cotangents: Tensor) -> Tensor:
    """``autograd.grad`` for a batch of cotangents (a loop where the backward cannot be vmapped).

    The batched attempt keeps the graph: a backward that fails halfway would otherwise have freed
    what the loop needs."""
    try:
        (grad,) = torch.autograd.grad(
            outputs, inputs, cotangents, is_grads_batched=True, retain_graph=True, allow_unused=True
        )
    except RuntimeError:
        grads = [torch.autograd.grad(outputs, inputs, c, retain_graph=True, allow_unused=True)[0] for c in cotangents]
        grad = None if grads[0] is None else torch.stack(grads)
    return (
        torch.zeros((len(cotangents), *inputs.shape), dtype=inputs.dtype, device=inputs.device)
        if grad is None
        else grad
    )


def _double_backward(y: Tensor, theta: Tensor) -> Tensor:
    """``dy/dtheta`` (last dim: parameter) from two reverse passes: ``d(J^T u . e_i)/du = J e_i``."""
    u = torch.zeros_like(y, requires_grad=True)
    (g,) = torch.autograd.grad(y, theta, u, create_graph=True, retain_graph=True, allow_unused=True)
    if g is None or not g.requires_grad:
        return torch.zeros((*y.shape, theta.shape[0]), dtype=y.dtype, device=y.device)
    eye_p = torch.eye(theta.shape[0], dtype=y.dtype, device=y.device)
    return _batched_grad(g, u, eye_p).movedim(0, -1)


def _agrees_with_a_vjp(y: Tensor, theta: Tensor, jv: Tensor) -> bool:
    """``w . (J e_i) == (J^T w)_i`` for a fixed ``w``: one plain backward pass catches a backward that
    is not itself differentiable (``once_differentiable``), which the double-backward trick reads as 0."""
    w = torch.cos(0.7 * torch.arange(y.numel(), dtype=y.dtype, device=y.device) + 0.3).reshape(y.shape)
    (jtw,) = torch.autograd.grad(y, theta, w, retain_graph=True, allow_unused=True)
    jtw = torch.zeros_like(theta) if jtw is None else jtw
    projected = (w.unsqueeze(-1) * jv).reshape(-1, theta.shape[0]).sum(0)
    scale = (w.abs().unsqueeze(-1) * jv.abs()).reshape(-1, theta.shape[0]).sum(0) + jtw.abs()
    tol = torch.finfo(y.dtype).eps ** 0.5
    return bool(((projected - jtw).abs() <= tol * scale + torch.finfo(y.dtype).tiny).all())


def reverse_per_point(
    fn: RoutineFn,
    x: Tensor,
    points: Tensor,
    *,
    chunk_size: int | None = None,
    max_memory_mb: int | None = None,
    hints: ChunkHints | None = None,
) -> Derivatives:
    """Reverse mode one point at a time (NOTE [Per-point methods]), for ops without forward-mode rules.

    With more output elements ``M`` than parameters ``P``, the Jacobian-vector products come from
    reverse mode by the double-backward trick: ``g(u) = J^T u`` is linear in ``u``, so
    ``d(g . e_i)/du = J e_i``: one backward pass with ``create_graph`` and one batched backward over
    the ``P`` directions, whatever ``M``, checked against one plain vector-Jacobian product.
    Otherwise, or where an op has no (or a wrong) double backward, one vector-Jacobian product per
    output element (batched).

    >>> d = reverse_per_point(lambda x, t: t[0] * x, torch.arange(3.0), torch.tensor([[2.0]]))
    >>> d.dy[..., 0]
    tensor([[0., 1., 2.]])
    """

    def one(point: Tensor) -> tuple[Tensor, Tensor]:
        theta = point.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            y = fn(x, theta)
            if not y.requires_grad:  # no path from theta to y
                return y, torch.zeros((*y.shape, theta.shape[0]), dtype=y.dtype, device=y.device)
            if y.numel() > theta.shape[0]:
                try:
                    jv = _double_backward(y, theta)
                    if _agrees_with_a_vjp(y, theta, jv):
                        return y, jv
                except RuntimeError:  # an op without double backward (cuDNN's RNNs): vjps below
                    pass
            eye_m = torch.eye(y.numel(), dtype=y.dtype, device=y.device).reshape(-1, *y.shape)
            return y, _batched_grad(y, theta, eye_m).reshape(*y.shape, -1)

    return _per_point(one, points, "reverse_per_point")


def finite_difference_per_point(
    fn: RoutineFn,
    x: Tensor,
    points: Tensor,
    *,
    chunk_size: int | None = None,
    max_memory_mb: int | None = None,
    hints: ChunkHints | None = None,
    step: float | None = None,
) -> Derivatives:
    """Central differences one point at a time (NOTE [Per-point methods]): ``2P + 1`` plain calls.

    The step is :func:`finite_difference`'s.
    """

    def f(theta: Tensor) -> Tensor:
        return fn(x, theta)

    with torch.no_grad():
        return _per_point(lambda theta: (f(theta), _differences(f, theta, step)), points, "finite_difference_per_point")


METHODS: dict[str, Callable[..., Derivatives]] = {
    "forward": forward,
    "forward_dual": forward_dual,
    "reverse": reverse,
    "loop": loop,
    "finite_difference": finite_difference,
    "forward_per_point": forward_per_point,
    "reverse_per_point": reverse_per_point,
    "finite_difference_per_point": finite_difference_per_point,
}
"""Derivative methods by their config name (``method.name``); ``none`` (no derivative) is :func:`primal`."""

FORWARD_MODE = frozenset(name for name in METHODS if name.startswith("forward"))
"""The methods that push tangents forward (those :class:`pipeline.derivatives.zerotensor.NumberOperands` pays for)."""
