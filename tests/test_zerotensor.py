"""Cheap zero tangents (pipeline.zerotensor): same shapes, dtypes and derivatives as torch's own kernels."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.func import jvp, vmap

from pipeline import zerotensor
from pipeline.models import Oscillator
from pipeline.routine import as_routine
from pipeline.zerotensor import DIVISION, OPS, binary_meta, broadcast, cheap_zero_tangents, div_meta

OPERANDS = [
    torch.ones(3, dtype=torch.float32),
    torch.ones(2, 1, dtype=torch.float64),
    torch.ones((), dtype=torch.float64),
    torch.ones(1, 3, dtype=torch.int64),
    torch.ones(3, dtype=torch.bool),
    torch.ones(3, dtype=torch.complex64),
    torch.ones((), dtype=torch.int32),
]
SCALARS = [2, 0.5, True, 1j]


def _torch_meta(op: str, a, b):
    name, overload = op.split(".")
    return getattr(getattr(torch.ops.aten, name), overload)(a, b)


@pytest.mark.parametrize("op", OPS)
def test_meta_matches_torchs_shape_and_dtype(op):
    """Every pair torch accepts gets the shape and dtype torch's own meta kernel gives."""
    seconds = OPERANDS if op.endswith(".Tensor") else SCALARS
    checked = 0
    for a, b in itertools.product(OPERANDS, seconds):
        a_meta = a.to("meta")
        b_meta = b.to("meta") if isinstance(b, torch.Tensor) else b
        try:
            expected = _torch_meta(op, a_meta, b_meta)
        except (RuntimeError, TypeError):  # a pair torch refuses (bool - bool, ...): the real op refuses it first
            continue
        got = (div_meta if op == DIVISION else binary_meta)(a_meta, b_meta)
        assert (got.shape, got.dtype, got.device.type) == (expected.shape, expected.dtype, "meta"), (op, a, b)
        checked += 1
    assert checked >= len(OPERANDS) * 2


def test_torchs_meta_kernels_come_back_after_the_block_even_on_error():
    bools = torch.ones(3, dtype=torch.bool, device="meta")
    with pytest.raises(RuntimeError):  # torch's meta kernel checks: bool - bool is refused
        torch.ops.aten.sub.Tensor(bools, bools)
    with pytest.raises(ValueError, match="inside"), cheap_zero_tangents():
        assert torch.ops.aten.sub.Tensor(bools, bools).shape == (3,)  # ours: shape and dtype only
        raise ValueError("inside")
    with pytest.raises(RuntimeError):
        torch.ops.aten.sub.Tensor(bools, bools)


def _constants_everywhere(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Python floats, ints, an unswept 0-dim tensor and a broadcast weight around the swept c."""
    weight = torch.linspace(0.5, 1.5, x.shape[-1], dtype=x.dtype)
    v = x * c
    for _ in range(3):
        v = 0.5 * v + 2 - torch.tensor(0.25, dtype=x.dtype) * v / 3 - weight * v.sin()
        v = v.mul(1.5).add(v, alpha=0.1).sub(1).div(weight)
    return v


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_derivatives_are_bit_identical(dtype, monkeypatch):
    """Forward mode inside the block gives exactly the values of torch's own kernels, which it replaces there."""
    calls = []
    monkeypatch.setattr(zerotensor, "binary_meta", lambda *a, **k: calls.append(1) or binary_meta(*a, **k))
    monkeypatch.setattr(zerotensor, "div_meta", lambda *a: calls.append(1) or div_meta(*a))
    x = torch.randn(50, 4, dtype=dtype, generator=torch.Generator().manual_seed(0))
    cs = torch.linspace(0.1, 1.9, 6, dtype=dtype)
    oscillator = as_routine(Oscillator(steps=30), ["C"], bind={"C": "damping"}, dtype=dtype)
    for fn, inputs in ((_constants_everywhere, x), (oscillator.fn, x[:, :2])):

        def tangents(fn=fn, inputs=inputs):
            return vmap(lambda c: jvp(lambda t: fn(inputs, t), (c,), (torch.ones_like(c),)))(cs[:, None])

        y, dy = tangents()
        with cheap_zero_tangents():
            y_fast, dy_fast = tangents()
        assert torch.equal(y, y_fast) and torch.equal(dy, dy_fast)
        assert calls, "the zero tangents did not go through pipeline.zerotensor"
        calls.clear()


def test_broadcast_is_torchs():
    shapes = [(), (1,), (3,), (2, 1), (1, 3), (4, 2, 3), (4, 1, 1)]
    for a, b in itertools.product(shapes, shapes):
        assert broadcast(a, b) == tuple(torch.broadcast_shapes(a, b)), (a, b)
    with pytest.raises(RuntimeError, match="cannot be broadcast"):
        broadcast((2,), (3,))
