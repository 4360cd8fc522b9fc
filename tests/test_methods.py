"""Every derivative method against closed forms (float64) and against each other."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bad_models import ForwardOnly, NoForward, log_model

from helpers import RTOL
from pipeline import sensitivity
from pipeline.checks import METHODS as CHECKED_NAMES
from pipeline.derivatives.guards import check_finite
from pipeline.derivatives.methods import METHODS, fd_step
from pipeline.errors import ConfigError, DerivativeError
from pipeline.models import Composite, ConvSlice, Oscillator, oscillator_exact, seed_linear

METHOD_NAMES = list(METHODS)


def test_every_method_is_registered():
    assert METHOD_NAMES == [
        "forward",
        "forward_dual",
        "reverse",
        "loop",
        "finite_difference",
        "forward_per_point",
        "reverse_per_point",
        "finite_difference_per_point",
    ]
    assert ("auto", *METHOD_NAMES, "none") == CHECKED_NAMES  # none: y only, no derivative


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_seed_linear_every_method_gives_x(method):
    x = torch.arange(10, dtype=torch.float64)
    ds = sensitivity(seed_linear, x, {"C": [-5.0, 0.5, 3.0]}, method=method)
    expected = np.tile(np.arange(10.0), (3, 1))
    if method.startswith("finite_difference"):
        np.testing.assert_allclose(ds.dy_dC.values, expected, rtol=1e-9)
    else:
        np.testing.assert_array_equal(ds.dy_dC.values, expected)
    assert ds.attrs["method"] == method


def test_seed_linear_loop_is_grads_batched_and_forward_agree_exactly():
    """Seed 000: the per-element loop, is_grads_batched with identity grad outputs, and forward mode."""
    x = torch.arange(10.0)
    C = torch.tensor(-5.0, requires_grad=True)
    y = C * x
    batched = torch.autograd.grad(y, C, grad_outputs=torch.eye(10), is_grads_batched=True)[0]
    loop = sensitivity(seed_linear, x, {"C": [-5.0]}, method="loop").dy_dC.values[0]
    forward = sensitivity(seed_linear, x, {"C": [-5.0]}, method="forward").dy_dC.values[0]
    assert torch.equal(batched, x)
    np.testing.assert_array_equal(loop, forward)
    np.testing.assert_array_equal(loop, batched.numpy())


def decay(x, C):
    t = torch.linspace(0, 2, 5, dtype=x.dtype)
    return x[:, None] * torch.exp(-C * t)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_user_function_every_method(method):
    """y = x exp(-C t): dy/dC = -t y."""
    x = np.array([-1.0, 0.5, 2.0])
    values = np.array([0.1, 1.0, 2.5])
    ds = sensitivity(decay, x, {"C": values}, method=method, dtype="float64")
    t = np.linspace(0, 2, 5)
    y = x[None, :, None] * np.exp(-values[:, None, None] * t)
    np.testing.assert_allclose(ds.y.values, y, rtol=1e-14)
    np.testing.assert_allclose(ds.dy_dC.values, -t * y, rtol=RTOL[method], atol=1e-12)


@pytest.mark.parametrize(
    "method", [pytest.param(m, marks=pytest.mark.integration) if m == "loop" else m for m in METHOD_NAMES]
)
def test_oscillator_every_method_against_closed_form(method):
    model = Oscillator(dt=0.02, steps=100)
    x = torch.tensor([[1.0, 0.0], [-0.4, 0.7]], dtype=torch.float64)
    values = [0.3, 1.2]
    ds = sensitivity(model, x, {"C": values}, bind={"C": "damping"}, method=method)
    t = torch.tensor(ds.t.values)
    for i, c in enumerate(values):
        _, dp = oscillator_exact(x, c, t)
        assert (torch.tensor(ds.dy_dC.values[i]) - dp).abs().max() / dp.abs().max() < 1e-7


@pytest.mark.parametrize(
    "model,bind",
    [
        (Composite(), "encoder.0.weight[0,1]"),
        (Composite(), "head_pos.bias[1]"),
        (ConvSlice(kernel_size=3, slice="before"), "conv.weight[0,1,2]"),
        (ConvSlice(kernel_size=1, slice="after"), "conv.bias[2]"),
    ],
)
def test_methods_agree_on_composite_and_conv_slice(model, bind):
    torch.manual_seed(1)
    x = torch.randn(5, 4) if isinstance(model, Composite) else torch.randn(5, 3, 8)
    values = [-0.7, 0.2, 1.3]
    results = {
        m: sensitivity(model, x, {"C": values}, bind={"C": bind}, method=m, dtype="float64").dy_dC.values
        for m in METHOD_NAMES
    }
    for method, dy in results.items():
        np.testing.assert_allclose(dy, results["loop"], rtol=RTOL[method], atol=1e-9, err_msg=method)


def test_fd_step_rule_and_explicit_step():
    values = torch.tensor([0.0, 0.5, -4.0], dtype=torch.float64)
    eps = torch.finfo(torch.float64).eps
    torch.testing.assert_close(fd_step(values), eps ** (1 / 3) * torch.tensor([1.0, 1.0, 4.0], dtype=torch.float64))
    assert fd_step(torch.tensor([2.0])).item() == pytest.approx(2 * torch.finfo(torch.float32).eps ** (1 / 3))
    coarse = sensitivity(
        lambda x, C: x * C**2, torch.ones(1, dtype=torch.float64), {"C": [1.0]}, method="finite_difference", step=0.1
    )
    assert coarse.dy_dC.item() == pytest.approx(2.0, rel=1e-12)  # exact for a quadratic
    with pytest.raises(ConfigError, match=r"invalid step=0\.1: only for method=finite_difference"):
        sensitivity(seed_linear, torch.ones(1), {"C": [1.0]}, step=0.1)


def test_op_without_forward_rule_names_it_and_suggests_reverse():
    def f(x, C):
        return x * NoForward.apply(C)

    for method in ("forward", "forward_dual"):
        with pytest.raises(DerivativeError, match=f"method={method} failed: .*forward mode AD.*use method=reverse"):
            sensitivity(f, torch.ones(3), {"C": [1.0, 2.0]}, method=method)
    np.testing.assert_array_equal(sensitivity(f, torch.ones(3), {"C": [1.0]}, method="reverse").dy_dC, [[2, 2, 2]])


def test_nonfinite_results_are_counted_and_warned():
    x = torch.tensor([1.0, -1.0, 2.0])
    with pytest.warns(
        RuntimeWarning,
        match=r"non-finite results: 2 in y, 0 in dy/dC; first at C=1 \(index 0\), "
        r"sample 1",
    ):
        ds = sensitivity(log_model, x, {"C": [1.0, 2.0]})
    assert ds.attrs["nonfinite_y"] == 2 and ds.attrs["nonfinite_dy_dC"] == 0
    clean = sensitivity(log_model, torch.tensor([1.0, 2.0]), {"C": [1.0]})
    assert clean.attrs["nonfinite_y"] == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_each_kind_of_nonfinite_value_is_found_in_any_parameter(bad):
    """The min/max screen misses none: one NaN or Inf in the second parameter's dy, or in y alone."""
    grid = {"a": [1.0, 2.0], "b": [3.0]}
    dy = torch.zeros(2, 4, 3, 2)
    dy[1, 2, 0, 1] = bad
    assert check_finite(torch.zeros(2, 4, 3), dy, grid, "warn") == {
        "nonfinite_y": 0,
        "nonfinite_dy_da": 0,
        "nonfinite_dy_db": 1,
    }
    y = torch.zeros(2, 4, 3)
    y[0, 3, 2] = bad
    assert check_finite(y, torch.zeros(2, 4, 3, 2), grid, "warn")["nonfinite_y"] == 1
    assert check_finite(torch.zeros(0, 4), torch.zeros(0, 4, 2), grid, "warn")["nonfinite_y"] == 0


def test_nan_policy_raise_names_the_first_bad_point(tmp_path):
    with pytest.raises(DerivativeError, match=r"first at C=2 \(index 1\), sample 0 \(nan_policy=raise\)"):
        sensitivity(lambda x, C: torch.sqrt(x - C), torch.tensor([1.5, 3.0]), {"C": [1.0, 2.0]}, nan_policy="raise")
    with pytest.raises(ConfigError, match="invalid nan_policy='ignore': valid: warn, raise"):
        sensitivity(seed_linear, torch.ones(2), {"C": [1.0]}, nan_policy="ignore")


def test_randomness_inside_the_batched_pass_is_rejected_clearly():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.5))
    with pytest.raises(DerivativeError, match=r"draws random numbers .*call model.eval\(\)"):
        sensitivity(model.train(), torch.randn(4, 3), {"C": [1.0, 2.0]}, bind={"C": "0.bias[0]"})
    ds = sensitivity(model.eval(), torch.randn(4, 3), {"C": [1.0, 2.0]}, bind={"C": "0.bias[0]"})
    assert (ds.dy_dC.isel(output=0) == 1).all()


def test_auto_decides_on_the_error_kind_not_its_words():
    """auto stops at an error no method cures by its kind (errors.Kind), whatever its message says: a
    randomness error reworded still stops the ladder; a message that merely mentions random numbers
    does not."""
    from pipeline.derivatives import fallback
    from pipeline.derivatives.diagnose import diagnose
    from pipeline.errors import Kind

    assert fallback._is_final(DerivativeError("the model is not deterministic", Kind.RANDOMNESS))
    assert not fallback._is_final(DerivativeError("random numbers are mentioned here"))
    with pytest.raises(DerivativeError) as caught:
        model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.5)).train()
        sensitivity(model, torch.randn(4, 3), {"C": [1.0, 2.0]}, bind={"C": "0.bias[0]"})
    assert caught.value.kind is Kind.RANDOMNESS
    no_rule = DerivativeError("method=forward failed", Kind.NO_FORWARD_RULE)
    no_rule.__cause__ = RuntimeError("Trying to use forward AD with foo that does not support it")
    assert diagnose(no_rule).kind is Kind.NO_FORWARD_RULE and "forward-mode rule" in diagnose(no_rule).what


def test_tf32_is_off_while_computing_on_a_gpu_and_restored_after():
    """cuDNN's default TF32 would put 1e-3 errors into float32 derivatives: off inside, restored after."""
    from pipeline.derivatives.methods import ieee_float32

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        with ieee_float32(torch.device("cuda")):
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        with ieee_float32(torch.device("cpu")):  # nothing to change on a CPU
            assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_auto_takes_reverse_mode_where_parameters_outnumber_outputs_and_forward_if_that_fails():
    """Two parameters, one output per point: reverse mode first; an op without a reverse rule sends
    auto on to batched forward mode (with a warning), never to the per-point rungs."""

    x = torch.tensor([2.0], dtype=torch.float64)
    params = {"C": [0.3, 0.7], "K": [1.5]}
    plain = sensitivity(lambda x, C, K: torch.sin(C) * K * x, x, params)
    assert (
        plain.attrs["method"] == "reverse"
        and "2 directions (parameters) outnumber 1 outputs" in plain.attrs["method_choice"]
    )
    with pytest.warns(RuntimeWarning, match=r"method=auto used forward: reverse failed"):
        ds = sensitivity(lambda x, C, K: ForwardOnly.apply(C) * K * x, x, params)
    assert ds.attrs["method"] == "forward"
    np.testing.assert_allclose(ds.dy_dC.values, plain.dy_dC.values, rtol=1e-14)
    np.testing.assert_allclose(ds.dy_dK.values, plain.dy_dK.values, rtol=1e-14)
    np.testing.assert_allclose(plain.dy_dC.values[:, 0, 0], 2 * 1.5 * np.cos([0.3, 0.7]), rtol=1e-14)


def test_quoted_messages_are_cut_at_a_word():
    """torch's words inside sensweep's messages are clipped at a word, marked, never mid-word."""
    from pipeline.errors import clipped

    text = "the model has more elements than the batch " * 10
    short = clipped(text, 60)
    assert len(short) <= 60 and short.endswith(" ...") and short[:-4] == short[:-4].rstrip()
    assert all(word in text.split() for word in short[:-4].split())
    assert clipped("short message") == "short message"
    long_path = "/very/long/path/" + "x" * 200
    assert clipped(long_path, 60) == long_path[:56] + " ..."  # one word longer than the width: kept, cut
