"""No silently wrong number: derivatives checked against the model's own differences, inputs the
model cannot corrupt, randomness refused under every method."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from pipeline import sensitivity
from pipeline.errors import ConfigError, DerivativeError

XP = np.linspace(-5.0, 5.0, 11)


def through_numpy(x, C):
    """Half of the model outside torch: autodiff sees dy/dC = x, the model's dy/dC is 1.5 x."""
    z = C * x
    return torch.as_tensor(np.interp(z.detach().numpy(), XP, 0.5 * XP), dtype=z.dtype) + z


X = torch.tensor([-1.0, -0.5, 0.25, 1.0], dtype=torch.float64)
VALUES = {"C": [0.5, 1.0, 2.0]}


@pytest.mark.parametrize("method", ["forward_per_point", "loop", "reverse_per_point"])
def test_a_named_method_warns_when_its_derivatives_disagree_with_the_model(method):
    expected = r"disagrees with the model's own differences at 4 outputs, e\.g\. at C=0\.5, output \(0,\): -1 where "
    with pytest.warns(RuntimeWarning, match=expected + r"the differences give -1\.5.*numpy"):
        ds = sensitivity(through_numpy, X, VALUES, method=method)
    assert ds.attrs["derivative_mismatch_dy_dC"] == 4 and ds.attrs["method"] == method
    with pytest.raises(DerivativeError, match=r"disagrees .*hidden_policy=raise"):
        sensitivity(through_numpy, X, VALUES, method=method, hidden_policy="raise")


def test_auto_moves_to_differences_and_says_why():
    with pytest.warns(RuntimeWarning, match=r"method=auto used finite_difference_per_point: forward_per_point gave "
                                            r"derivatives that are wrong: dy/dC disagrees"):  # fmt: skip
        ds = sensitivity(through_numpy, X, VALUES)
    assert ds.attrs["method"] == "finite_difference_per_point"
    assert "disagrees with the model's own differences" in ds.attrs["fallback_reason"]
    np.testing.assert_allclose(ds.dy_dC.values, np.tile(1.5 * X.numpy(), (3, 1)), rtol=1e-7)


class WrongBackward(torch.autograd.Function):
    """sin with the derivative of cos: a custom op whose backward is wrong."""

    @staticmethod
    def forward(ctx, t):
        ctx.save_for_backward(t)
        return torch.sin(t)

    @staticmethod
    def backward(ctx, grad):
        (t,) = ctx.saved_tensors
        return -grad * torch.sin(t)


def test_a_custom_function_with_a_wrong_backward_is_caught_and_auto_gives_the_right_derivative():
    x = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ds = sensitivity(lambda x, C: WrongBackward.apply(C * x), x, {"C": [0.3, 0.7]})
    assert any("gave derivatives that are wrong" in str(w.message) for w in seen)
    expected = x.numpy() * np.cos(np.outer([0.3, 0.7], x.numpy()))
    np.testing.assert_allclose(ds.dy_dC.values, expected, rtol=1e-7)


@pytest.mark.parametrize(
    ("model", "values"),
    [
        (lambda x, C: torch.relu(C * x), [0.0, 1.0, 2.0]),  # a kink at the first point: autodiff takes a side
        (lambda x, C: torch.abs(C) * x, [-1.0, 0.0, 1.0]),  # a subgradient (0) at the middle point
        (lambda x, C: torch.where(C > 1.0, x, 2 * x) * C, [0.9999, 1.0, 1.0001]),  # a jump within the step
        (lambda x, C: torch.floor(C * 10) * x, [0.1, 0.55, 1.0]),  # steps everywhere, autodiff 0
        (lambda x, C: 1e6 + C * x, [1.0, 2.0, 3.0]),  # derivatives far below the values' round-off
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kinks_jumps_and_round_off_raise_no_false_alarm(model, values, dtype):
    x = torch.tensor([-1.0, 0.5, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ds = sensitivity(model, x, {"C": values}, dtype=dtype, hidden_policy="raise")
    assert ds.attrs["derivative_mismatch_dy_dC"] == 0 and ds.attrs["method"] == "forward"


def _writes_into_its_input(x, C):
    x[x > 3 / C] = 0  # at C = 0.5 nothing is written: the first evaluation cannot see it
    return C * x


def _writes_from_the_third_call_on():
    calls = []

    def model(x, C):
        calls.append(C)
        if len(calls) > 2:  # the first two evaluations (the checks before the run) see nothing
            x.mul_(2)
        return C * x

    return model


@pytest.mark.parametrize("model", [lambda: _writes_into_its_input, _writes_from_the_third_call_on])
@pytest.mark.parametrize("method", ["auto", "loop", "forward_per_point", "finite_difference_per_point"])
def test_a_model_that_writes_into_its_input_returns_nothing_and_leaves_the_callers_x(model, method):
    x = torch.arange(1.0, 7.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ConfigError, match=r"changes its input x in place .*no result is returned"):
            sensitivity(model(), x, {"C": [0.5, 1.0, 2.0]}, method=method)
    assert torch.equal(x, torch.arange(1.0, 7.0))


@pytest.mark.parametrize("method", ["auto", "loop", "forward_per_point", "reverse_per_point", "finite_difference"])
def test_randomness_is_refused_under_every_method(method):
    def dropout(x, C):
        return torch.nn.functional.dropout(C * x, 0.5, training=True)

    with pytest.raises(DerivativeError, match=r"different outputs on two evaluations at C=0\.5 .*model\.eval\(\)"):
        sensitivity(dropout, torch.arange(1.0, 50.0), {"C": [0.5, 1.0]}, method=method)


def test_a_seeded_generator_inside_the_model_is_deterministic_and_accepted():
    def seeded(x, C):
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
        return C * (x + noise)

    x = torch.arange(3.0, dtype=torch.float64)
    ds = sensitivity(seeded, x, {"C": [1.0, 2.0]}, method="loop")
    noise = torch.randn(3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    np.testing.assert_allclose(ds.dy_dC.values, np.tile((x + noise).numpy(), (2, 1)), rtol=1e-12)


@pytest.mark.parametrize("method", ["auto", "loop", "reverse"])
def test_inputs_that_require_grad_are_taken_as_values(method):
    x = torch.arange(3.0, requires_grad=True)
    ds = sensitivity(lambda x, C: C * x**2, x, {"C": [1.0, 2.0]}, method=method)
    np.testing.assert_array_equal(ds.x.values, [0.0, 1.0, 2.0])
    np.testing.assert_allclose(ds.dy_dC.values, [[0.0, 1.0, 4.0]] * 2)


# Names and binds: one check before anything is computed.


def _never_called(x, **params):
    raise AssertionError("the model must not run for a name that is refused")


@pytest.mark.parametrize("name", ["sample", "y", "x", "dy_dC"])
def test_a_parameter_named_like_the_datasets_own_names_is_refused_before_any_compute(name):
    params = {"C": [1.0], name: [1.0, 2.0]} if name == "dy_dC" else {name: [1.0, 2.0]}
    with pytest.raises(ConfigError, match=rf"invalid params='{name}': '{name}' is (a name|an input) the dataset uses"):
        sensitivity(_never_called, torch.arange(3.0), params)


def test_an_output_dim_named_like_a_parameter_is_refused():
    with pytest.raises(ConfigError, match=r"'C' is an output dim"):
        sensitivity(lambda x, C: C * x, torch.ones(3, 2), {"C": [1.0, 2.0]}, output_dims=["C"])
    with pytest.raises(ConfigError, match=r"declares output dims \['a', 'b'\] but its output has 1 dims"):
        sensitivity(lambda x, C: C * x, torch.ones(3, 2), {"C": [1.0, 2.0]}, output_dims=["a", "b"])


def test_a_points_design_with_a_repeated_column_name_is_refused():
    from pipeline import design

    with pytest.raises(ConfigError, match=r"name C more than once"):
        design.points(np.array([[1.0, 2.0], [3.0, 4.0]]), ["C", "C"])


@pytest.mark.parametrize(
    ("bind", "params"),
    [
        ({"C": "head_pos.bias[0]", "K": "head_pos.bias[0]"}, {"C": [1.0], "K": [2.0]}),  # the same element
        ({"C": "head_pos.bias[0]", "c2": "head_pos.bias"}, {"C": [1.0]}),  # an element inside a bound tensor
        ({"c1": "head_pos.bias[0:2]", "c2": "head_pos.bias[1:2]"}, {}),  # overlapping slices
    ],
)
def test_binds_that_alias_are_refused_naming_both(bind, params):
    from pipeline.models import Composite

    with pytest.raises(ConfigError, match=r"invalid bind: .* and .* both replace 1 element\(s\) of head_pos\.bias"):
        sensitivity(Composite(), torch.randn(4, 4), params, bind=bind)


def test_binds_of_distinct_elements_of_one_tensor_are_accepted():
    from pipeline.models import Composite

    torch.manual_seed(0)
    ds = sensitivity(
        Composite(), torch.randn(4, 4), {"C": [0.1]}, bind={"C": "head_pos.bias[0]", "c2": "head_pos.bias[1:2]"}
    )
    assert "dy_dc2" in ds and ds.attrs["derivative_mismatch_dy_dC"] == 0


# Dtypes and options that used to fail after the whole compute.


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_refused_up_front_or_converted_when_asked(dtype):
    x = torch.arange(3.0).to(dtype)
    with pytest.raises(ConfigError, match=r"invalid x of dtype (b?float16): .*dtype='float32'"):
        sensitivity(_never_called, x, {"C": [1.0, 2.0]})
    ds = sensitivity(lambda x, C: C * x, x, {"C": [1.0, 2.0]}, dtype="float32")
    assert ds.dy_dC.dtype == np.float32 and ds.attrs["dtype"] == "float32"
    np.testing.assert_array_equal(ds.dy_dC.values, [[0.0, 1.0, 2.0]] * 2)


def test_second_derivatives_of_a_linear_model_are_zeros_not_a_crash():
    ds = sensitivity(lambda x, C: C * x, torch.arange(3.0), {"C": [1.0, 2.0]}, order=2)
    np.testing.assert_array_equal(ds.d2y_dC2.values, np.zeros((2, 3)))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attrs": {"method": "mine"}}, r"invalid attrs='method': sensweep writes this attr itself"),
        ({"attrs": {"nonfinite_y": 0}}, r"invalid attrs='nonfinite_y'"),
        ({"chunk_size": 2.5}, r"invalid chunk_size=2\.5: must be null \(automatic\) or a whole number >= 1"),
        ({"max_memory_mb": 0.5}, r"invalid max_memory_mb=0\.5"),
        ({"method": "finite_difference", "step": 1e39}, r"invalid step=1e\+39: too large for dtype=float32"),
    ],
)
def test_options_that_failed_after_the_compute_are_refused_before_it(options, message):
    with pytest.raises(ConfigError, match=message):
        sensitivity(_never_called, torch.arange(3.0), {"C": [1.0, 2.0]}, **options)


def test_a_config_attr_with_an_alias_bomb_or_repeated_keys_is_refused_not_expanded():
    """What a part file's ``config`` attr holds is read with the study files' limits (merge, verify)."""
    from pipeline.config import yamltext
    from pipeline.storage.provenance import determining_config

    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefghi", "bcdefghij", strict=True)
    )
    with pytest.raises(ConfigError, match=r"invalid config attr: its aliases expand to more than 100000 values"):
        determining_config(bomb)
    with pytest.raises(ConfigError, match=r"found duplicate key 'dtype'"):
        yamltext.load("dtype: float32\ndtype: float64\n", "config attr")
    assert yamltext.load("a: &x [1, 2]\nb: *x\n", "config attr") == {"a": [1, 2], "b": [1, 2]}


def test_the_fingerprint_sees_the_models_source(tmp_path, monkeypatch):
    """Parts computed before and after an edit of the model's file do not share a fingerprint (merge
    and verify compare them), and the file is one of the study's data files (a rerun trigger)."""
    from pipeline.config.studies import compose_job
    from pipeline.storage.provenance import data_files, fingerprint

    (tmp_path / "my_model_file.py").write_text("def f(x, C):\n    return C * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose_job("seed_linear", ["model=custom", "model._target_=my_model_file.f"])
    assert tmp_path / "my_model_file.py" in data_files(cfg, tmp_path)
    x = np.arange(3.0)
    before = fingerprint(cfg, x)
    (tmp_path / "my_model_file.py").write_text("def f(x, C):\n    return 2 * C * x\n")
    assert fingerprint(cfg, x) != before


class _NumpyWeight(torch.nn.Module):
    """``w`` enters once through torch and once through NumPy: autodiff sees half of dy/dw."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64))

    def forward(self, x):
        return x * torch.as_tensor(np.tanh(self.w.detach().numpy())) + self.w * x


def test_a_bound_tensor_is_checked_along_a_random_direction_of_its_elements():
    """Derivatives with respect to a whole tensor (at the model's own values) are checked too, all
    elements at the cost of one direction; auto then gives differences."""
    x = torch.arange(1.0, 13.0, dtype=torch.float64).reshape(4, 3)
    with pytest.warns(RuntimeWarning, match=r"dy/dW \(along a random direction of its 3 elements\) disagrees"):
        ds = sensitivity(_NumpyWeight(), x, {}, bind={"W": "w"})
    assert ds.attrs["derivative_mismatch_dy_dW"] > 0 and ds.attrs["method"].startswith("finite_difference")
    w = np.array([0.5, 1.0, 1.5])
    expected = x.numpy()[:, :, None] * np.diag(1 + 1 / np.cosh(w) ** 2)[None]  # dy_ij / dw_k
    np.testing.assert_allclose(ds.dy_dW.values.reshape(expected.shape), expected, rtol=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        right = sensitivity(torch.nn.Linear(3, 2).double(), x, {}, bind={"W": "weight"})
    assert right.attrs["derivative_mismatch_dy_dW"] == 0 and right.attrs["hidden_dependence_dy_dW"] == 0
