"""The classic cases of batched dy/dC, each checked against an independent reference: a linear
model; sequential, parallel and conditional composites with detach; slicing before or after a convolution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from pipeline import sensitivity
from pipeline.models import Composite, ConvSlice, Oscillator, oscillator_exact, seed_linear


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_seed_linear_forward_is_exactly_x(dtype):
    """Seed 000: y = C x with x = arange(10); dy/dC == x bitwise, as the per-element loop gives."""
    x = torch.arange(10, dtype=dtype)
    ds = sensitivity(seed_linear, x, {"C": [-5.0, 0.0, 3.0]})
    C = torch.tensor(-5.0, dtype=dtype, requires_grad=True)
    y = C * x
    loop = torch.stack([torch.autograd.grad(yi, C, retain_graph=True)[0] for yi in y])  # the seed's loop
    for row in torch.from_numpy(ds.dy_dC.values):
        assert torch.equal(row, x)
        assert torch.equal(row, loop)
    assert torch.equal(torch.from_numpy(ds.y.sel(C=-5.0).values), y.detach())


def _jacobian_reference(model, x, values, bind_path):
    """dy/dC by reverse-mode autograd on the module itself, one value at a time (float64)."""
    name, index = bind_path
    refs = []
    for value in values:

        def f(c):
            params = {k: v.detach().clone() for k, v in model.named_parameters()}
            p = params[name].clone()
            p[index] = c
            params[name] = p
            return torch.func.functional_call(model, params, (x,))

        refs.append(jacobian(f, torch.tensor(float(value), dtype=torch.float64)))
    return torch.stack(refs)


def _central_difference(model, x, values, bind_path, h=1e-6):
    name, index = bind_path
    out = []
    for value in values:

        def f(c):
            with torch.no_grad():
                params = {k: v.detach().clone() for k, v in model.named_parameters()}
                params[name][index] = c
                return torch.func.functional_call(model, params, (x,))

        out.append((f(value + h) - f(value - h)) / (2 * h))
    return torch.stack(out)


COMPOSITE_BINDS = [
    ("encoder.0.weight[1,2]", ("encoder.0.weight", (1, 2))),  # sequential: C in the first block
    ("branch_b.0.bias[1]", ("branch_b.0.bias", (1,))),  # parallel: C in one branch
    ("head_pos.bias[0]", ("head_pos.bias", (0,))),  # conditional: C in one head
]


@pytest.mark.parametrize("path,parsed", COMPOSITE_BINDS)
def test_composite_matches_autograd_jacobian_and_finite_differences(path, parsed):
    """Seed 001: forward mode through sequential, parallel and conditional composition."""
    torch.manual_seed(0)
    model = Composite().double()
    x = torch.randn(16, 4, dtype=torch.float64)
    values = [-1.5, 0.3, 2.0]
    ds = sensitivity(model, x, {"C": values}, bind={"C": path})
    dy = torch.from_numpy(ds.dy_dC.values)
    torch.testing.assert_close(dy, _jacobian_reference(model, x, values, parsed), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dy, _central_difference(model, x, values, parsed), rtol=1e-6, atol=1e-8)


def test_composite_gradient_flows_only_where_the_graph_connects():
    """Seed 001: parallel branch a and the unselected conditional head get exactly zero."""
    torch.manual_seed(0)
    model = Composite(out_features=2)
    x = torch.randn(32, 4)
    parallel = sensitivity(model, x, {"C": [0.5]}, bind={"C": "branch_b.0.bias[1]"})
    assert (parallel.dy_dC.sel(output=["a0", "a1", "b0", "head0", "head1"]) == 0).all()
    assert (parallel.dy_dC.sel(output="b1") != 0).all()
    conditional = sensitivity(model, x, {"C": [0.5]}, bind={"C": "head_pos.bias[0]"})
    positive = torch.from_numpy((x[:, 0] > 0).numpy())
    head0 = torch.from_numpy(conditional.dy_dC.sel(output="head0").values[0])
    assert torch.equal(head0[positive], torch.ones(int(positive.sum())))
    assert (head0[~positive] == 0).all()


def test_composite_detach_cuts_the_path_from_c():
    """Seed 001: detach() after the encoder: an encoder parameter no longer reaches y."""
    torch.manual_seed(0)
    x = torch.randn(8, 4)
    model, cut = Composite(detach=False), Composite(detach=True)
    cut.load_state_dict(model.state_dict())
    attached = sensitivity(model, x, {"C": [0.1]}, bind={"C": "encoder.0.bias[0]"})
    detached = sensitivity(cut, x, {"C": [0.1]}, bind={"C": "encoder.0.bias[0]"})
    assert (attached.dy_dC != 0).any()
    assert (detached.dy_dC == 0).all()
    assert (detached.y == attached.y).all()


@pytest.mark.parametrize("slice_", ["before", "after"])
@pytest.mark.parametrize("kernel_size", [1, 3])
def test_conv_slice_matches_autograd_jacobian(slice_, kernel_size):
    torch.manual_seed(0)
    model = ConvSlice(kernel_size=kernel_size, slice=slice_).double()
    x = torch.rand(4, 3, 10, dtype=torch.float64)
    values = [-0.4, 0.7]
    ds = sensitivity(model, x, {"C": values}, bind={"C": "conv.weight[1,2,0]"})
    ref = _jacobian_reference(model, x, values, ("conv.weight", (1, 2, 0)))
    torch.testing.assert_close(torch.from_numpy(ds.dy_dC.values), ref, rtol=1e-12, atol=1e-12)


def _conv_pair(kernel_size, dtype=torch.float32):
    torch.manual_seed(0)
    before = ConvSlice(kernel_size=kernel_size, slice="before").to(dtype)
    after = ConvSlice(kernel_size=kernel_size, slice="after").to(dtype)
    after.load_state_dict(before.state_dict())
    x = torch.rand(8, 3, 10, dtype=dtype)
    values = torch.linspace(-1, 1, 5)
    bind = {"C": "conv.weight[0,1,0]"}
    return (sensitivity(before, x, {"C": values}, bind=bind), sensitivity(after, x, {"C": values}, bind=bind))


def test_conv_slice_before_and_after_agree_for_kernel_size_1():
    """Seed 002: same y and dy/dC up to round-off: allclose (bitwise equality is not promised)."""
    before, after = _conv_pair(kernel_size=1)
    torch.testing.assert_close(torch.from_numpy(before.y.values), torch.from_numpy(after.y.values))
    torch.testing.assert_close(torch.from_numpy(before.dy_dC.values), torch.from_numpy(after.dy_dC.values))


def test_conv_slice_before_and_after_differ_at_the_edge_for_kernel_size_3():
    """Seed 002: with a wider kernel, slicing first loses the left neighbour: only the first step differs."""
    before, after = _conv_pair(kernel_size=3, dtype=torch.float64)
    diff = abs(before.y - after.y).max(["C", "sample", "out_channel"])
    assert diff.isel(last_step=0) > 1e-3
    assert (diff.isel(last_step=slice(1, None)) < 1e-12).all()


def test_oscillator_matches_closed_form():
    """RK4 derivative against the hand-differentiated closed form: relative error < 1e-8 (float64)."""
    model = Oscillator(dt=0.01, steps=500)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-0.5, 0.8]], dtype=torch.float64)
    values = [0.2, 0.9, 1.6]
    ds = sensitivity(model, x, {"C": values}, bind={"C": "damping"})
    t = torch.tensor(ds.t.values)
    for i, c in enumerate(values):
        p, dp = oscillator_exact(x, c, t)
        dy = torch.from_numpy(ds.dy_dC.values[i])
        y = torch.from_numpy(ds.y.values[i])
        assert (dy - dp).abs().max() / dp.abs().max() < 1e-8
        assert (y - p).abs().max() / p.abs().max() < 1e-8


def test_oscillator_closed_form_derivative_is_right():
    """The reference itself: its hand-written derivative against central differences of its value."""
    x = torch.tensor([[1.0, 0.0], [0.3, -0.7]], dtype=torch.float64)
    t = torch.linspace(0, 10, 101, dtype=torch.float64)
    h = 1e-6
    for c in (0.2, 1.1):
        _, dp = oscillator_exact(x, c, t)
        fd = (oscillator_exact(x, c + h, t)[0] - oscillator_exact(x, c - h, t)[0]) / (2 * h)
        torch.testing.assert_close(dp, fd, rtol=1e-6, atol=1e-8)
    assert math.isclose(float(oscillator_exact(x, 0.5, t[:1])[0][0, 0]), 1.0)


def test_structural_independence_is_distinct_from_a_zero_derivative(tmp_path):
    """Seed 001: detach (no path) vs a derivative that is numerically zero, told apart from the dataset."""
    torch.manual_seed(0)
    x = torch.randn(8, 4)
    model, cut = Composite(detach=False), Composite(detach=True)
    cut.load_state_dict(model.state_dict())
    detached = sensitivity(cut, x, {"C": [0.1, 0.2]}, bind={"C": "encoder.0.bias[0]"})
    assert (detached.dy_dC == 0).all() and (detached.dy_dC_connected == 0).all()
    assert detached.attrs["structurally_independent_outputs"] == 8 * 6
    # y = C * x at x = 0: connected, yet the derivative is exactly zero.
    zero = sensitivity(seed_linear, torch.tensor([0.0, 1.0]), {"C": [2.0]})
    assert zero.dy_dC.values[0, 0] == 0 and zero.dy_dC_connected.values[0] == 1
    assert zero.attrs["structurally_independent_outputs"] == 0
    # Parallel branches: only branch b's second output is reached; conditional head: only selected samples.
    parallel = sensitivity(model, x, {"C": [0.5]}, bind={"C": "branch_b.0.bias[1]"})
    assert parallel.dy_dC_connected.sum("sample").values.tolist() == [0, 0, 0, 8, 0, 0]
    conditional = sensitivity(model, x, {"C": [0.5]}, bind={"C": "head_pos.bias[0]"})
    np.testing.assert_array_equal(conditional.dy_dC_connected.sel(output="head0"), (x[:, 0] > 0).numpy())
