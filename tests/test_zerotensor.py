"""Cheap zero tangents (pipeline.derivatives.zerotensor): same shapes, dtypes and derivatives as torch's own kernels."""

from __future__ import annotations

import itertools

import pytest
import torch

from pipeline.api import sensitivity
from pipeline.derivatives import zerotensor
from pipeline.derivatives.methods import forward, forward_per_point
from pipeline.derivatives.routine import as_routine
from pipeline.derivatives.zerotensor import (
    DIVISION,
    NUMBER_OVERLOADS,
    OPS,
    ZERO_KERNELS,
    NumberOperands,
    binary_meta,
    broadcast,
    cheap_zero_tangents,
    div_meta,
)
from pipeline.models import Oscillator

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


_W = torch.randn(4, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
_V = torch.randn(8, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
_BIAS = torch.randn(8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def _mlp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Products with unswept inputs (``x @ W`` with a swept ``W``, batched ``matmul``) and bias sums."""
    w, v, bias = (t.to(x.dtype) for t in (_W, _V, _BIAS))
    h = torch.tanh(x @ (w * theta[0]) + bias - theta[-1])  # zero tangents on either side of + and -
    h = (bias - h) - bias + (bias + h)
    stacked = torch.stack([h, 2 * h]) @ v  # bmm with an unswept right operand
    return (h @ v).sub(stacked[1], alpha=0.5) + x[:, :1]


_K1 = torch.randn(3, 1, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
_K2 = torch.randn(3, 3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def _conv(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Convolutions with a swept weight and an unswept bias (the input's and the bias's tangents are
    zero), with an unswept weight (the weight's is), and with a swept bias on an unswept weight."""
    k1, k2 = _K1.to(x.dtype), _K2.to(x.dtype)
    bias = torch.linspace(-1, 1, 3, dtype=x.dtype)
    h = torch.tanh(torch.nn.functional.conv1d(x[:, None, :], k1 * theta[0], bias=bias, padding=1))
    h = torch.nn.functional.conv1d(h, k2, bias=theta[-1] * torch.ones(3, dtype=x.dtype), padding=1)
    return torch.nn.functional.conv1d(h, k2, padding=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_derivatives_are_bit_identical(dtype, monkeypatch):
    """Forward mode inside the block gives exactly the values of torch's own kernels, which it
    replaces there: one and two parameters (``jacfwd``), second order (nested ``jvp``)."""
    calls = []
    monkeypatch.setattr(zerotensor, "binary_meta", lambda *a, **k: calls.append("meta") or binary_meta(*a, **k))
    monkeypatch.setattr(zerotensor, "div_meta", lambda *a: calls.append("meta") or div_meta(*a))
    for name in ZERO_KERNELS.values():
        kernel = getattr(zerotensor, name)
        monkeypatch.setattr(
            zerotensor, name, lambda *a, kernel=kernel, name=name, **k: calls.append(name) or kernel(*a, **k)
        )
    x = torch.randn(50, 4, dtype=dtype, generator=torch.Generator().manual_seed(0))
    cs = torch.linspace(0.1, 1.9, 6, dtype=dtype)
    oscillator = as_routine(Oscillator(steps=30), ["C"], bind={"C": "damping"}, dtype=dtype)
    products = {"meta", "zero_mm", "zero_bmm", "zero_add", "zero_sub"}
    cases = [
        (_constants_everywhere, x, cs[:, None], {}, {"meta"}),
        (oscillator.fn, x[:, :2], cs[:, None], {}, {"meta"}),
        (_mlp, x, cs[:, None], {}, products),
        (_mlp, x, torch.stack([cs, cs.flip(0)], dim=1), {}, products),
        (_mlp, x, cs[:, None], {"order": 2}, {"meta", "zero_mm", "zero_add"}),
        (_conv, x, torch.stack([cs, cs.flip(0)], dim=1), {}, {"meta", "zero_convolution", "zero_add"}),
    ]
    for (fn, inputs, points, options, used), method in itertools.product(cases, (forward, forward_per_point)):
        if method is forward_per_point and options:
            continue
        plain = method(fn, inputs, points, chunk_size=4, **options)  # vmapped, and one point at a time
        with cheap_zero_tangents():
            fast = method(fn, inputs, points, chunk_size=4, **options)
        for name in ("y", "dy", "d2y"):
            if getattr(plain, name) is not None:
                assert torch.equal(getattr(plain, name), getattr(fast, name)), (fn.__name__, method, options, name)
        if method is forward:  # one point at a time, matmul takes other kernels (mm for a stack of matrices)
            assert used <= set(calls), (
                f"{fn.__name__}: {used - set(calls)} not called: not through pipeline.derivatives.zerotensor"
            )
        calls.clear()


ZEROS = [
    ((3, 4), torch.float32),
    ((1, 4), torch.float64),
    ((), torch.float32),
    ((2, 3, 4), torch.float32),
]


@pytest.mark.parametrize("op", ["add.Tensor", "sub.Tensor"])
def test_zero_sums_match_torchs(op):
    """A sum with a ZeroTensor operand: torch's shape, dtype, values and zero-ness, either side, with alpha."""
    aten = getattr(torch.ops.aten, op.split(".")[0]).Tensor
    checked = 0
    for (zero_shape, zero_dtype), (shape, dtype), alpha, zero_first in itertools.product(
        ZEROS, ZEROS, [1, 2.5], [True, False]
    ):
        zero = torch._efficientzerotensor(zero_shape, dtype=zero_dtype)
        real = torch.arange(1, 1 + torch.Size(shape).numel(), dtype=dtype).reshape(shape)
        if zero_shape == shape == ():
            real = real.reshape(())
        args = (zero, real) if zero_first else (real, zero)
        try:
            expected = aten(*args, alpha=alpha)
        except RuntimeError:
            with pytest.raises(RuntimeError), cheap_zero_tangents():
                aten(*args, alpha=alpha)
            continue
        with cheap_zero_tangents():
            got = aten(*args, alpha=alpha)
        assert (got.shape, got.dtype, got._is_zerotensor()) == (expected.shape, expected.dtype, False)
        assert torch.equal(got, expected), (op, zero_shape, shape, alpha, zero_first)
        checked += 1
    with cheap_zero_tangents():
        both = aten(torch._efficientzerotensor((2, 1)), torch._efficientzerotensor((3,)))
    assert both._is_zerotensor() and both.shape == (2, 3)
    assert checked >= 40


def test_zero_products_match_torchs_and_keep_its_errors():
    zero = torch._efficientzerotensor((5, 3), dtype=torch.float64)
    real = torch.ones(3, 2, dtype=torch.float64)
    with cheap_zero_tangents():
        product = torch.ops.aten.mm(zero, real)
        batched = torch.ops.aten.bmm(
            torch.ones(4, 5, 3, dtype=torch.float64), torch._efficientzerotensor((4, 3, 2), dtype=torch.float64)
        )
        for a, b in ((zero, torch.ones(2, 2, dtype=torch.float64)), (zero, real.float())):
            with pytest.raises(RuntimeError):  # shapes or dtypes that do not multiply: torch's error
                torch.ops.aten.mm(a, b)
    assert product._is_zerotensor() and product.shape == (5, 2) and product.dtype == torch.float64
    assert batched._is_zerotensor() and batched.shape == (4, 5, 2)
    assert torch.equal(product, torch.ops.aten.mm(zero, real))


def test_broadcast_is_torchs():
    shapes = [(), (1,), (3,), (2, 1), (1, 3), (4, 2, 3), (4, 1, 1)]
    for a, b in itertools.product(shapes, shapes):
        assert broadcast(a, b) == tuple(torch.broadcast_shapes(a, b)), (a, b)
    with pytest.raises(RuntimeError, match="cannot be broadcast"):
        broadcast((2,), (3,))


NUMBERS = [2, 0.5, -3, 0, 2**40, 2**63, 2**70, 1e-30, float("inf")]
NUMBER_DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.complex64,
    torch.int64,
    torch.int32,
    torch.uint8,
    torch.bool,
]


@pytest.mark.parametrize("func", list(NUMBER_OVERLOADS), ids=lambda f: getattr(f, "__qualname__", str(f)))
def test_number_operands_give_torchs_values_and_dtypes(func):
    """``tensor op number`` through the ``.Scalar`` overload: torch's dtype and values bit for bit, or
    torch's error where torch refuses the pair (``bool - 1``)."""
    checked = 0
    for dtype, number in itertools.product(NUMBER_DTYPES, NUMBERS):
        t = (torch.arange(-3, 4) * 7).to(dtype)
        try:
            expected = func(t, number)
        except (RuntimeError, TypeError, OverflowError) as err:
            with pytest.raises(type(err)), NumberOperands():
                func(t, number)
            continue
        with NumberOperands():
            got = func(t, number)
        assert got.dtype == expected.dtype, (func, dtype, number)
        assert torch.equal(got, expected) or torch.allclose(got, expected, equal_nan=True, rtol=0, atol=0), (
            func,
            dtype,
            number,
        )
        checked += 1
    assert checked >= 40


def test_number_operands_make_no_zero_tangent(monkeypatch):
    """Under forward mode, ``x * 0.5``, ``x / 3``, ``x + 1``, ``x - 1`` and ``2 - x`` take no ZeroTensor
    path inside the block (no meta kernel, no zero sum) and give torch's derivatives; without
    :class:`NumberOperands` the same function takes it."""
    calls = []
    monkeypatch.setattr(zerotensor, "binary_meta", lambda *a, **k: calls.append("meta") or binary_meta(*a, **k))
    monkeypatch.setattr(zerotensor, "div_meta", lambda *a: calls.append("meta") or div_meta(*a))
    for name in ("zero_add", "zero_sub"):
        kernel = getattr(zerotensor, name)
        monkeypatch.setattr(zerotensor, name, lambda *a, kernel=kernel, **k: calls.append("sum") or kernel(*a, **k))

    def f(x, theta):
        v = theta[0].expand(x.shape).cumsum(0)  # no op with a tangent-free tensor: only numbers
        return 2 - (0.5 * v / 3 + 1) * (v - 1) + torch.mul(v, 4) + v.add(0.25)

    x = torch.linspace(-1, 1, 7, dtype=torch.float64)
    points = torch.linspace(0.5, 1.5, 3, dtype=torch.float64)[:, None]
    plain = forward(f, x, points)
    with cheap_zero_tangents():
        fast = forward(f, x, points)
    assert torch.equal(plain.dy, fast.dy) and torch.equal(plain.y, fast.y)
    assert calls == []
    monkeypatch.setattr(zerotensor, "NUMBER_OVERLOADS", {})
    with cheap_zero_tangents():
        forward(f, x, points)
    assert "sum" in calls and "meta" in calls


def test_number_operands_leave_other_calls_alone(monkeypatch):
    """Keyword arguments, bools, NumPy scalars, tensors on both sides and tensor subclasses go to torch
    (no ``.Scalar`` overload called, torch's result), where ``x * 0.5`` takes the overload."""
    np = pytest.importorskip("numpy")
    rerouted = []
    monkeypatch.setattr(
        zerotensor,
        "NUMBER_OVERLOADS",
        {
            func: lambda *args, overload=overload: rerouted.append(overload) or overload(*args)
            for func, overload in NUMBER_OVERLOADS.items()
        },
    )
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    calls = [
        lambda: torch.div(x, 3, rounding_mode="floor"),
        lambda: x.add(1, alpha=2),
        lambda: torch.sub(x, 1.5, alpha=0.5),
        lambda: x * True,
        lambda: x * np.float64(0.5),
        lambda: x * x,
        lambda: 1.5 / x,
        lambda: torch.nn.Parameter(x) * 2,
    ]
    for call in calls:
        expected = call()
        with NumberOperands():
            got = call()
        assert type(got) is type(expected) and torch.equal(got, expected)
    assert rerouted == []
    with NumberOperands():
        x * 0.5
    assert rerouted == [torch.ops.aten.mul.Scalar]


@pytest.mark.parametrize(
    ("method", "params", "expected"),
    [
        ("forward", 1, {True}),
        ("auto", 1, {True}),
        ("reverse", 1, {False}),
        ("finite_difference", 1, {False}),
        ("auto", 3, {False}),
    ],
)
def test_number_operands_only_where_forward_mode_runs(method, params, expected):
    """sensitivity() sends numbers to the .Scalar overloads only for forward mode (reverse mode and
    differences have no zero tangents and would only pay the mode's cost), and never for the first,
    plain call of the model; ``auto`` with more parameters than outputs runs reverse mode first."""
    seen = []

    def model(x, **theta):
        active = any(isinstance(m, NumberOperands) for m in torch.overrides._get_current_function_mode_stack())
        seen.append(active)
        return x * sum(theta.values())

    grid = {f"c{i}": [0.5, 1.5] for i in range(params)}
    sensitivity(model, torch.linspace(0, 1, 3 if params == 1 else 2), grid, method=method, hidden_policy="off")
    assert seen[:2] == [False, False]  # the first call checks that the model runs, the second its determinism
    assert set(seen[2:]) == expected
