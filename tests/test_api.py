"""pipeline.sensitivity on user functions and modules: values, schema, errors."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from torch import nn

from helpers import requires_cuda
from pipeline import sensitivity
from pipeline.errors import ConfigError


def decay(x, C):
    """A user function with a known derivative: y = x exp(-C t), dy/dC = -t y."""
    t = torch.linspace(0, 2, 7, dtype=x.dtype, device=x.device)
    return x[:, None] * torch.exp(-C * t)


decay.output_dims = ("t",)


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-6), ("float64", 1e-14)])
def test_user_function_matches_analytic_derivative(dtype, tol):
    x = np.linspace(-1, 1, 5)
    values = np.linspace(0.1, 3.0, 11)
    ds = sensitivity(decay, x, {"C": values}, dtype=dtype, chunk_size=4)
    t = np.linspace(0, 2, 7)
    expected_y = x[None, :, None] * np.exp(-values[:, None, None] * t)
    np.testing.assert_allclose(ds.y.values, expected_y, rtol=tol, atol=tol)
    np.testing.assert_allclose(ds.dy_dC.values, -t * expected_y, rtol=tol, atol=tol)
    assert ds.dy_dC.dtype == np.dtype(dtype)
    assert ds.attrs["dtype"] == dtype


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(3, 2))
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        return self.scale * self.block(x)


def test_module_with_bind_to_element_and_scalar_parameter():
    torch.manual_seed(0)
    model = Tiny()
    x = torch.randn(6, 3)
    ds = sensitivity(model, x, {"C": [1.0, -2.0]}, bind={"C": "block.0.weight[1,2]"}, dtype="float64")
    # y_1 = scale * (w_1 . x + b_1): dy_1/dw_12 = scale * x_2, dy_0/dw_12 = 0
    np.testing.assert_allclose(ds.dy_dC.isel(output=1).values, 2.0 * np.tile(x[:, 2].double().numpy(), (2, 1)))
    assert (ds.dy_dC.isel(output=0) == 0).all()
    scalar = sensitivity(model, x, {"C": [3.0]}, bind={"C": "scale"}, dtype="float64")
    with torch.no_grad():
        np.testing.assert_allclose(
            scalar.dy_dC.values[0], copy.deepcopy(model.block).double()(x.double()).numpy(), rtol=1e-12
        )
    assert model.scale.item() == 2.0 and model.scale.requires_grad  # the user's module is untouched


def test_dataset_schema():
    ds = sensitivity(
        decay, torch.arange(4.0), {"C": [0.5, 1.0, 2.0]}, units={"y": "m", "C": "s-1", "x": "m"}, title="decay"
    )
    assert ds.y.dims == ("C", "sample", "t") and ds.dy_dC.dims == ("C", "sample", "t")
    assert ds.x.dims == ("sample",)
    assert set(ds.coords) == {"C", "sample", "t"}
    assert ds.attrs["Conventions"] == "CF-1.10" and ds.attrs["title"] == "decay"
    for key in ("history", "source", "method", "device", "dtype", "torch_version", "sensweep_version"):
        assert key in ds.attrs
    assert re.search(r"forward on cpu: 3 points in \d+\.\d+ s wall time .* chunk size \d+", ds.attrs["history"])
    assert ds.y.attrs["units"] == "m" and ds.C.attrs["units"] == "s-1" and ds.dy_dC.attrs["units"] == "m s"
    assert ds.dy_dC.attrs["long_name"] == "derivative of y with respect to C"


def test_parameter_name_names_the_dim_and_variable():
    ds = sensitivity(lambda x, k: k * x**2, torch.arange(3.0), {"k": [1.0, 2.0]})
    assert ds.dy_dk.dims == ("k", "sample")
    np.testing.assert_array_equal(ds.dy_dk.values, [[0, 1, 4], [0, 1, 4]])


def test_chunk_sizes_give_identical_results():
    torch.manual_seed(0)
    x = torch.randn(10, 3, dtype=torch.float64)
    values = torch.linspace(-1, 1, 13)
    model = Tiny()
    results = [sensitivity(model, x, {"C": values}, bind={"C": "scale"}, chunk_size=c) for c in (1, 5, 13, None)]
    for ds in results[1:]:
        np.testing.assert_array_equal(ds.dy_dC.values, results[0].dy_dC.values)
        np.testing.assert_array_equal(ds.y.values, results[0].y.values)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"bind": {"C": "block.0.wieght[0,0]"}},
            "did you mean 'block.0.weight'? Its parameters are: scale (), block.0.weight (2, 3), block.0.bias (2,)",
        ),
        ({"bind": {"C": "block.0.weight[5,0]"}}, "give one in-range index per dim, e.g. 'block.0.weight[0,0]'"),
        ({"bind": {"C": "block.0.weight"}}, "block.0.weight has shape (2, 3)"),
        ({"bind": None}, "an nn.Module needs bind={'C': '<parameter path>'}"),
        ({"bind": {"C": "scale"}, "method": "backward"}, "invalid method='backward': valid: auto, forward"),
        ({"bind": {"C": "scale"}, "dtype": "float16"}, "invalid dtype='float16': valid: float32, float64"),
        ({"bind": {"C": "scale"}, "device": "tpu"}, "invalid device='tpu'"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ConfigError) as err:
        sensitivity(Tiny(), torch.randn(2, 3), {"C": [1.0]}, **kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "params,message",
    [
        ({}, "give the swept parameters and their values"),
        ({"C": []}, "non-empty 1-D"),
        ({"C": [1.0, float("nan")]}, "1 non-finite values"),
        ({"not a name": [1.0]}, "parameter names must be Python identifiers"),
    ],
)
def test_bad_params_name_the_problem(params, message):
    with pytest.raises(ConfigError, match=message):
        sensitivity(lambda x, **p: x, torch.ones(2), params)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ConfigError, match="CUDA is not available on this machine; use device=auto or device=cpu"):
        sensitivity(decay, torch.ones(2), {"C": [1.0]}, device="cuda")


def test_auto_device_is_cpu_without_cuda():
    ds = sensitivity(decay, torch.ones(2), {"C": [1.0]})
    assert ds.attrs["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")


@pytest.mark.gpu
@requires_cuda
def test_forward_on_cuda_matches_cpu():
    torch.manual_seed(0)
    x = torch.randn(64, 3, dtype=torch.float64)
    values = torch.linspace(-1, 1, 33)
    model = Tiny()
    gpu = sensitivity(model, x.cuda(), {"C": values}, bind={"C": "block.0.bias[1]"}, device="cuda")
    cpu = sensitivity(model, x, {"C": values}, bind={"C": "block.0.bias[1]"}, device="cpu")
    assert gpu.attrs["device"].startswith("cuda")
    np.testing.assert_allclose(gpu.dy_dC.values, cpu.dy_dC.values, rtol=1e-12)
    np.testing.assert_allclose(gpu.y.values, cpu.y.values, rtol=1e-12)
