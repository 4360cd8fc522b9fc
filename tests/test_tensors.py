"""Derivatives with respect to a whole parameter tensor (or a slice), alone or beside a swept scalar."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn
from torch.func import functional_call

from pipeline import sensitivity
from pipeline.errors import ConfigError


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()


X = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def jacobian(net: nn.Module, name: str, replace: dict[str, torch.Tensor] | None = None) -> np.ndarray:
    """dy/d<name> by torch.autograd.functional.jacobian, the independent reference."""
    params = {k: v.detach() for k, v in net.named_parameters()}
    params.update(replace or {})

    def f(w: torch.Tensor) -> torch.Tensor:
        return functional_call(net, {**params, name: w}, (X,))

    return torch.autograd.functional.jacobian(f, params[name]).numpy()


@pytest.mark.parametrize("method", ["auto", "forward", "reverse", "forward_per_point", "reverse_per_point"])
def test_whole_tensor_alone_matches_autograd_jacobian(method):
    net = network()
    ds = sensitivity(net, X, {}, bind={"W": "0.weight"}, method=method)
    assert ds.dy_dW.dims == ("sample", "output", "W_dim0", "W_dim1") and ds.dy_dW.shape == (5, 3, 8, 4)
    np.testing.assert_allclose(ds.dy_dW.values, jacobian(net, "0.weight"), rtol=1e-12, atol=1e-14)
    if method == "auto":  # 32 elements, 15 outputs per point: reverse mode, recorded
        assert ds.attrs["method"] == "reverse" and "outnumber 15 outputs" in ds.attrs["method_choice"]


def test_slice_beside_a_swept_scalar():
    net = network()
    values = [-0.5, 0.7]
    ds = sensitivity(net, X, {"C": values}, bind={"C": "2.bias[0]", "W": "0.bias[2:6]"})
    assert ds.attrs["method"] == "forward"  # 1 + 4 directions, 15 outputs: forward mode
    assert ds.dy_dW.dims == ("C", "sample", "output", "W_dim0")
    np.testing.assert_array_equal(ds.W_dim0.values, [2, 3, 4, 5])
    for i, c in enumerate(values):
        bias = net[2].bias.detach().clone()
        bias[0] = c
        expected = jacobian(net, "0.bias", {"2.bias": bias})[..., 2:6]
        np.testing.assert_allclose(ds.dy_dW.values[i], expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(ds.dy_dC.values[:, :, 0], 1.0)  # dy_0/d(bias_0) = 1


def test_finite_differences_agree_on_a_tensor():
    net = network()
    exact = sensitivity(net, X, {}, bind={"W": "2.weight[1:3, 0:4]"}, method="reverse")
    differences = sensitivity(net, X, {}, bind={"W": "2.weight[1:3, 0:4]"}, method="finite_difference")
    assert exact.dy_dW.shape == (5, 3, 2, 4)
    np.testing.assert_allclose(differences.dy_dW.values, exact.dy_dW.values, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(
    "bind,params,message",
    [
        ({"C": "0.bias[0:2]"}, {"C": [1.0]}, r"C is swept, so it needs one element, e\.g\. '0\.bias\[0\]'"),
        ({"C": "0.bias"}, {"C": [1.0]}, r"0\.bias has shape \(8,\); give one in-range index per dim"),
        ({"C": "0.bias[0]", "W": "0.bias[1]"}, {"C": [1.0]}, r"a parameter not swept needs a whole tensor"),
        ({"W": "0.bias[9:12]"}, {}, "the selection is empty"),
        ({"W": "nope.weight"}, {}, "has no parameter 'nope.weight'"),
    ],
)
def test_bad_tensor_binds_are_named(bind, params, message):
    with pytest.raises(ConfigError, match=message):
        sensitivity(network(), X, params, bind=bind)


def test_a_tensor_study_through_the_job_merge_summary_and_plots(tmp_path):
    """The workflow's stages on a study with a bound tensor: two parts, merged, summarised, plotted."""
    from pipeline.config.studies import compose_job
    from pipeline.stages.compute import compute
    from pipeline.stages.merge import merge_parts
    from pipeline.stages.plot import plot_files
    from pipeline.stages.summarise import summarise_file

    parts = []
    for part in (0, 1):
        cfg = compose_job(
            "composite",
            [
                "sweep.num=4",
                "sweep.parts=2",
                f"part={part}",
                "+model.bind.W=encoder.0.bias",
                f"output={tmp_path}/{part}.nc",
            ],
        )
        compute(cfg, "composite")
        parts.append(tmp_path / f"{part}.nc")
    merge_parts(parts, tmp_path / "sensitivity.nc")
    with xr.open_dataset(tmp_path / "sensitivity.nc") as ds:
        assert ds.dy_dW.dims[0] == "C" and ds.sizes["C"] == 4 and "W_dim0" in ds.dy_dW.dims
    summarise_file(tmp_path / "sensitivity.nc", tmp_path / "summary.nc")
    assert plot_files(tmp_path / "sensitivity.nc", tmp_path / "summary.nc", tmp_path / "plots")
