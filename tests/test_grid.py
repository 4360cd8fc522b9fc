"""Several swept parameters (a grid) and second derivatives, against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from helpers import RTOL
from pipeline import sensitivity
from pipeline.config.studies import compose_job
from pipeline.derivatives.methods import METHODS
from pipeline.errors import ConfigError
from pipeline.models import Oscillator
from pipeline.stages.compute import compute


def amplitude_decay(x, C, k):
    """y = C exp(-k x): dy/dC = exp(-k x), dy/dk = -C x exp(-k x)."""
    return C * torch.exp(-k * x)


@pytest.mark.parametrize("method", list(METHODS))
def test_grid_every_method_against_closed_form(method):
    x = np.array([0.0, 0.5, 2.0])
    C, k = np.array([-1.0, 0.5, 2.0]), np.array([0.1, 1.0])
    ds = sensitivity(amplitude_decay, x, {"C": C, "k": k}, method=method, dtype="float64")
    assert ds.y.dims == ("C", "k", "sample") and ds.sizes == {"C": 3, "k": 2, "sample": 3}
    Cg, kg, xg = np.meshgrid(C, k, x, indexing="ij")
    np.testing.assert_allclose(ds.y, Cg * np.exp(-kg * xg), rtol=1e-14)
    np.testing.assert_allclose(ds.dy_dC, np.exp(-kg * xg), rtol=RTOL[method], atol=1e-12)
    np.testing.assert_allclose(ds.dy_dk, -Cg * xg * np.exp(-kg * xg), rtol=RTOL[method], atol=1e-12)
    assert ds.attrs["swept_parameters"] == "C k"
    assert set(ds.data_vars) == {"y", "dy_dC", "dy_dk", "x", "dy_dC_connected", "dy_dk_connected"}


def test_grid_on_a_module_with_two_elements_of_one_tensor():
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    bind = {"a": "weight[0,0]", "b": "weight[0,2]"}
    ds = sensitivity(layer, x, {"a": [0.5, 1.0], "b": [-1.0, 0.0, 2.0]}, bind=bind)
    # y_0 = a x_0 + w01 x_1 + b x_2 + bias_0: dy_0/da = x_0, dy_0/db = x_2; y_1 does not move.
    np.testing.assert_array_equal(ds.dy_da.isel(output=0), np.broadcast_to(x[:, 0].numpy(), (2, 3, 4)))
    np.testing.assert_array_equal(ds.dy_db.isel(output=0), np.broadcast_to(x[:, 2].numpy(), (2, 3, 4)))
    assert (ds.dy_da.isel(output=1) == 0).all() and (ds.dy_da_connected.isel(output=1) == 0).all()
    with torch.no_grad():
        w = layer.weight.clone()
        w[0, 0], w[0, 2] = 1.0, 2.0
        np.testing.assert_allclose(ds.y.sel(a=1.0, b=2.0), (x @ w.T + layer.bias).numpy(), rtol=1e-14)


def test_second_derivative_against_closed_form():
    """y = x exp(-C t): d2y/dC2 = t^2 y."""

    def decay(x, C):
        return x[:, None] * torch.exp(-C * torch.linspace(0, 2, 5, dtype=x.dtype))

    x = np.array([-1.0, 0.5, 2.0])
    ds = sensitivity(decay, x, {"C": [0.1, 1.0, 2.5]}, dtype="float64", order=2)
    t = np.linspace(0, 2, 5)
    np.testing.assert_allclose(ds.d2y_dC2, t**2 * ds.y, rtol=1e-13)
    np.testing.assert_allclose(ds.dy_dC, -t * ds.y, rtol=1e-13)


def test_second_derivative_of_the_oscillator_matches_differences_of_the_first():
    model = Oscillator(dt=0.05, steps=60)
    x = torch.tensor([[1.0, 0.0], [0.2, -0.5]], dtype=torch.float64)
    h = 1e-5
    values = np.array([0.4, 1.3])
    ds = sensitivity(model, x, {"C": values}, bind={"C": "damping"}, order=2)
    up = sensitivity(model, x, {"C": values + h}, bind={"C": "damping"}).dy_dC.values
    down = sensitivity(model, x, {"C": values - h}, bind={"C": "damping"}).dy_dC.values
    np.testing.assert_allclose(ds.d2y_dC2.values, (up - down) / (2 * h), rtol=1e-6, atol=1e-9)


def test_order_two_needs_forward_and_one_parameter():
    with pytest.raises(
        ConfigError, match="invalid order=2: 1, or 2 with method=forward \\(or auto\\) and one swept parameter"
    ):
        sensitivity(amplitude_decay, [1.0], {"C": [1.0], "k": [1.0]}, order=2)
    with pytest.raises(ConfigError, match="invalid order=2"):
        sensitivity(lambda x, C: C * x, [1.0], {"C": [1.0]}, order=2, method="reverse")
    with pytest.raises(
        ConfigError, match=r"method.order=2: 1, or 2 with method=forward \(or auto\) and one swept parameter"
    ):
        compose_job("oscillator_grid", ["method.order=2"])


def test_grid_study_parts_split_the_first_parameter(tmp_path):
    overrides = [
        "sweep.num=4",
        "sweep.grid.K.num=3",
        "model.args.steps=20",
        "sweep.parts=2",
        "inputs.args.path=data/oscillator_initial.npy",
    ]
    parts = []
    for part in (0, 1):
        cfg = compose_job("oscillator_grid", [*overrides, f"part={part}", f"output={tmp_path / f'{part}.nc'}"])
        parts.append(compute(cfg, "oscillator_grid"))
    assert [p.sizes["C"] for p in parts] == [2, 2] and all(p.sizes["K"] == 3 for p in parts)
    merged = xr.combine_by_coords([p[["dy_dC", "dy_dK"]] for p in parts], combine_attrs="drop")
    whole = compute(compose_job("oscillator_grid", [*overrides, f"output={tmp_path / 'all.nc'}"]), "oscillator_grid")
    xr.testing.assert_allclose(merged, whole[["dy_dC", "dy_dK"]].drop_attrs(), rtol=1e-12)
    assert (whole.dy_dK_connected.isel(t=0) == 0).all()  # the initial position does not depend on K
    assert whole.dy_dK.attrs["units"] == "m s2"


def test_a_grid_evaluates_the_model_once_per_batched_pass():
    """Several parameters: their directions share one evaluation of the model (jacfwd with the value as aux)."""
    calls = []

    def model(x, C, k):
        calls.append(1)
        return C * x + k * x**2

    x = torch.arange(4.0, dtype=torch.float64)
    ds = sensitivity(model, x, {"C": [1.0, 2.0], "k": [0.5, 1.5, 2.5]}, chunk_size=6, method="forward")
    np.testing.assert_array_equal(ds.dy_dC.values, np.broadcast_to(x.numpy(), (2, 3, 4)))
    np.testing.assert_array_equal(ds.dy_dk.values, np.broadcast_to(x.numpy() ** 2, (2, 3, 4)))
    calls.clear()
    sensitivity(model, x, {"C": [1.0, 2.0], "k": [0.5, 1.5, 2.5]}, chunk_size=6, hidden_policy="off")
    # the first evaluation and its repeat (randomness), the structure check (all directions in one
    # batched call), then one batched pass
    assert len(calls) == 2 + 1 + 1
