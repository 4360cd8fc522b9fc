"""Cheap zero tangents: forward mode without a Python call per op on a constant.

# NOTE [Zero tangents]
In forward mode, an op between a tensor that carries a tangent and one that does not (a Python
float, a weight that is not swept: ``h / 2 * k``, ``-damping * v``) takes the missing tangent as
a ZeroTensor. The ZeroTensor kernels of ``add``, ``sub``, ``mul`` and ``div`` find the shape and
dtype of their result by running the op on meta tensors, and torch's meta kernels for these ops
are Python reference implementations (``torch._refs``), many times dearer than the op itself on
a CPU: a time stepper made of many small ops spends a large share of its forward pass there
(docs/bench/methods.md gives the figures). :func:`cheap_zero_tangents`
registers, while derivatives are computed, meta kernels for these ops that compute only what
the ZeroTensor kernels read (the broadcast shape and the promoted dtype), and removes them after
(torch's own come back). Values are unchanged: only the zero tangent's shape and dtype come from
here, and they are checked against torch's meta kernels in the tests. Not used while
``torch.compile`` traces, which needs the full meta kernels (strides, checks).

Two more ZeroTensor paths cost as much as the op itself, on large tensors: ``mm``, ``bmm`` and
``convolution`` have no ZeroTensor kernel, so torch fills a real tensor with zeros and multiplies
or convolves it (``x @ W`` with a swept ``W`` computes ``0 @ W`` for the unswept ``x``'s tangent),
and adding a zero tangent goes through meta copies of both operands. Inside the block,
:data:`ZERO_KERNELS` replace these: a product or convolution with a zero operand is a zero tensor
of its result's shape, and a sum with one is one copy of the other operand (scaled by ``alpha``),
torch's own arithmetic.

The commonest zero tangent is a Python number's: ``h / 2 * k`` reaches ``aten.mul.Tensor`` with
``h / 2`` wrapped in a tensor that has no tangent, so forward mode multiplies a ZeroTensor by
``k``, adds the zero product to the real term, and that sum copies the real term: a Python
call, a meta kernel and a full copy for every product with a number. The ``.Scalar`` overloads
of these ops (Python code cannot call them by operator) have forward formulas without the
number's tangent (``mul.Scalar``: ``self_t * other``). Inside the block, :class:`NumberOperands`
(a :class:`~torch.overrides.TorchFunctionMode`, on the calling thread only) sends ``tensor op
number`` for ``* / + -`` (either side where the op allows) to them: same kernels, same values
and dtypes (checked bit for bit in the tests); most of the gain is where per-op overhead
dominates (few samples, many small ops). Fused paths that torch takes only without a
torch function mode (``nn.TransformerEncoderLayer``'s inference path, which has no forward-mode
rule) take their composite path inside the block, which forward mode batches.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from numbers import Number

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

OPS = ("add.Tensor", "add.Scalar", "sub.Tensor", "mul.Tensor", "mul.Scalar", "div.Tensor")
"""The binary ops whose ZeroTensor kernels run a meta kernel (``aten`` overloads)."""

DIVISION = "div.Tensor"


def _shape(value: Tensor | Number) -> tuple[int, ...]:
    return tuple(value.shape) if isinstance(value, Tensor) else ()


def broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The broadcast of two shapes, in plain Python (``torch.broadcast_shapes`` goes through
    ``torch._refs``, whose first call imports many modules and whose every call is Python)."""
    if a == b:
        return a
    width = max(len(a), len(b))
    out = []
    for x, y in zip((1,) * (width - len(a)) + a, (1,) * (width - len(b)) + b, strict=True):
        if x != y and 1 not in (x, y):
            raise RuntimeError(f"shapes {a} and {b} cannot be broadcast")
        out.append(y if x == 1 else x)
    return tuple(out)


def binary_meta(a: Tensor | Number, b: Tensor | Number, *_: object, **__: object) -> Tensor:
    """An elementwise binary op's result on the meta device: broadcast shape, promoted dtype (``alpha`` ignored)."""
    return torch.empty(broadcast(_shape(a), _shape(b)), dtype=torch.result_type(a, b), device="meta")


def div_meta(a: Tensor | Number, b: Tensor | Number) -> Tensor:
    """:func:`binary_meta` for true division: integers and bools give the default float dtype."""
    out = binary_meta(a, b)
    return out if out.is_floating_point() or out.is_complex() else out.to(torch.get_default_dtype())


def real(t: Tensor) -> Tensor:
    """``t``, with a ZeroTensor made a real tensor of zeros (torch's own fallback)."""
    return torch.zeros(t.shape, dtype=t.dtype, device=t.device) if t._is_zerotensor() else t


def _zero_product(a: Tensor, b: Tensor, dims: int, op: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """``op(a, b)`` (``mm``: ``dims`` 2, ``bmm``: 3) where one is a ZeroTensor: a ZeroTensor of the
    product's shape; torch's own computation, and so its error, where the operands do not multiply."""
    if (
        a.dim() != dims
        or b.dim() != dims
        or a.shape[:-2] != b.shape[:-2]
        or a.shape[-1] != b.shape[-2]
        or a.dtype != b.dtype
        or a.device != b.device
    ):
        return op(real(a), real(b))
    return torch._efficientzerotensor((*a.shape[:-1], b.shape[-1]), dtype=a.dtype, device=a.device)


def zero_mm(a: Tensor, b: Tensor) -> Tensor:
    return _zero_product(a, b, 2, torch.mm)


def zero_bmm(a: Tensor, b: Tensor) -> Tensor:
    return _zero_product(a, b, 3, torch.bmm)


def zero_convolution(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    transposed: bool,
    output_padding: list[int],
    groups: int,
) -> Tensor:
    """A convolution with a ZeroTensor input or weight and no bias (or a zero one): a ZeroTensor of
    the output's shape, found on meta tensors. Otherwise (a real bias, or only the bias zero),
    torch's computation with the zeros made real."""
    args = (stride, padding, dilation, transposed, output_padding, groups)
    zero_product = input._is_zerotensor() or weight._is_zerotensor()
    if not zero_product or (bias is not None and not bias._is_zerotensor()):
        bias = None if bias is None else real(bias)
        return torch.ops.aten.convolution(real(input), real(weight), bias, *args)
    meta = torch.ops.aten.convolution(_on_meta(input), _on_meta(weight), None, *args)
    return torch._efficientzerotensor(meta.shape, dtype=meta.dtype, device=input.device)


def _on_meta(t: Tensor) -> Tensor:
    return torch.empty(t.shape, dtype=t.dtype, device="meta")


def _out_device(a: Tensor, b: Tensor) -> torch.device:
    """The device of an elementwise result: a 0-dim CPU tensor follows the other operand."""
    if a.device == b.device:
        return a.device
    return b.device if a.dim() == 0 and a.device.type == "cpu" else a.device


def _zero_sum(a: Tensor, b: Tensor | Number, alpha: Number, op: Callable[..., Tensor]) -> Tensor:
    """``op(a, b, alpha=alpha)`` (``aten.add`` or ``aten.sub``) where one is a ZeroTensor: one copy of
    the other operand, as torch computes it; torch's own where ``b`` is a Python number."""
    if not isinstance(b, Tensor):
        return op(real(a), b, alpha=alpha)
    shape = broadcast(tuple(a.shape), tuple(b.shape))
    dtype, device = torch.result_type(a, b), _out_device(a, b)
    if a._is_zerotensor() and b._is_zerotensor():
        return torch._efficientzerotensor(shape, dtype=dtype, device=device)
    sign = 1 if op is torch.ops.aten.add.Tensor else -1
    source, scale = (b, sign * alpha) if a._is_zerotensor() else (a, 1)
    out = torch.ops.aten._to_copy(source.expand(shape), dtype=dtype, device=device)
    return out if scale == 1 else out.mul_(scale)


def zero_add(a: Tensor, b: Tensor | Number, *, alpha: Number = 1) -> Tensor:
    return _zero_sum(a, b, alpha, torch.ops.aten.add.Tensor)


def zero_sub(a: Tensor, b: Tensor | Number, *, alpha: Number = 1) -> Tensor:
    return _zero_sum(a, b, alpha, torch.ops.aten.sub.Tensor)


_aten = torch.ops.aten
NUMBER_OVERLOADS = {
    Tensor.__mul__: _aten.mul.Scalar,
    Tensor.__rmul__: _aten.mul.Scalar,
    Tensor.mul: _aten.mul.Scalar,
    torch.mul: _aten.mul.Scalar,
    Tensor.__truediv__: _aten.div.Scalar,
    Tensor.div: _aten.div.Scalar,
    torch.div: _aten.div.Scalar,
    Tensor.__add__: _aten.add.Scalar,
    Tensor.__radd__: _aten.add.Scalar,
    Tensor.add: _aten.add.Scalar,
    torch.add: _aten.add.Scalar,
    Tensor.__sub__: _aten.sub.Scalar,
    Tensor.sub: _aten.sub.Scalar,
    torch.sub: _aten.sub.Scalar,
    Tensor.__rsub__: _aten.rsub.Scalar,
}
"""``tensor op number`` calls (no keyword arguments) and the ``.Scalar`` overload that computes them
(``number - tensor`` reaches ``Tensor.__rsub__(tensor, number)``, which is ``rsub``)."""


_INT64 = (-(2**63), 2**63 - 1)


class NumberOperands(TorchFunctionMode):
    """Sends ``tensor op number`` to the op's ``.Scalar`` overload: no zero tangent for the number
    (NOTE above). Only plain tensors and Python ``float`` or ``int`` within int64 (not ``bool``, not
    NumPy scalars); everything else, keyword arguments included, goes on unchanged."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        overload = NUMBER_OVERLOADS.get(func)
        if (
            overload is not None
            and not kwargs
            and len(args) == 2
            and type(args[0]) is Tensor
            and (type(args[1]) is float or (type(args[1]) is int and _INT64[0] <= args[1] <= _INT64[1]))
        ):
            return overload(*args)
        return func(*args, **(kwargs or {}))


ZERO_KERNELS = {
    "mm": "zero_mm",
    "bmm": "zero_bmm",
    "convolution": "zero_convolution",
    "add.Tensor": "zero_add",
    "sub.Tensor": "zero_sub",
}
"""``aten`` overloads and the names of their ZeroTensor kernels here (looked up at registration)."""


@contextlib.contextmanager
def cheap_zero_tangents(enabled: bool = True, numbers: bool = True) -> Iterator[None]:
    """:func:`binary_meta` as the meta kernel of :data:`OPS`, :data:`ZERO_KERNELS` as ZeroTensor
    kernels and, with ``numbers``, :class:`NumberOperands` inside the block (NOTE above). Only
    forward mode has zero tangents: elsewhere ``numbers=False`` saves the mode's cost on every
    torch call."""
    if not enabled:
        yield
        return
    meta = torch.library.Library("aten", "IMPL", "Meta")
    zero = torch.library.Library("aten", "IMPL", "ZeroTensor")
    try:
        with warnings.catch_warnings():  # "overriding a previously registered kernel": meant, and undone below
            warnings.simplefilter("ignore")
            for op in OPS:
                meta.impl(op, div_meta if op == DIVISION else binary_meta)
            for op, kernel in ZERO_KERNELS.items():
                zero.impl(op, globals()[kernel])
        with NumberOperands() if numbers else contextlib.nullcontext():
            yield
    finally:
        meta._destroy()
        zero._destroy()
