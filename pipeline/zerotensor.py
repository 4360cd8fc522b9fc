"""Cheap zero tangents: forward mode without a Python call per op on a constant.

# NOTE [Zero tangents]
In forward mode, an op between a tensor that carries a tangent and one that does not (a Python
float, a weight that is not swept: ``h / 2 * k``, ``-damping * v``) takes the missing tangent as
a ZeroTensor. The ZeroTensor kernels of ``add``, ``sub``, ``mul`` and ``div`` find the shape and
dtype of their result by running the op on meta tensors, and torch's meta kernels for these ops
are Python reference implementations (``torch._refs``): about 110 us per op on a CPU, 20 to 50
times the op itself. A time stepper made of many small ops spent half of its forward pass there
(RK4 oscillator, 20 steps: 5.8x the primal, 3.0x with this). :func:`cheap_zero_tangents`
registers, while derivatives are computed, meta kernels for these ops that compute only what
the ZeroTensor kernels read (the broadcast shape and the promoted dtype), and removes them after
(torch's own come back). Values are unchanged: only the zero tangent's shape and dtype come from
here, and they are checked against torch's meta kernels in the tests. Not used while
``torch.compile`` traces, which needs the full meta kernels (strides, checks).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from numbers import Number

import torch
from torch import Tensor

OPS = ("add.Tensor", "add.Scalar", "sub.Tensor", "mul.Tensor", "mul.Scalar", "div.Tensor")
"""The binary ops whose ZeroTensor kernels run a meta kernel (``aten`` overloads)."""

DIVISION = "div.Tensor"


def _shape(value: Tensor | Number) -> tuple[int, ...]:
    return tuple(value.shape) if isinstance(value, Tensor) else ()


def broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The broadcast of two shapes, in plain Python (``torch.broadcast_shapes`` goes through
    ``torch._refs``: its first call imports half a second of modules, each call costs 0.1 ms)."""
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


@contextlib.contextmanager
def cheap_zero_tangents(enabled: bool = True) -> Iterator[None]:
    """:func:`binary_meta` as the meta kernel of :data:`OPS` inside the block (NOTE above)."""
    if not enabled:
        yield
        return
    lib = torch.library.Library("aten", "IMPL", "Meta")
    try:
        with warnings.catch_warnings():  # "overriding a previously registered kernel": meant, and undone below
            warnings.simplefilter("ignore")
            for op in OPS:
                lib.impl(op, div_meta if op == DIVISION else binary_meta)
        yield
    finally:
        lib._destroy()
