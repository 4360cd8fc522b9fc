"""Models of several named outputs (a dict or a tuple): variables, dims, units, every method, summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

from pipeline import ConfigError, design, sensitivity, summarise
from pipeline.models import projectile
from pipeline.storage.outputs import flat_outputs, select_output
from pipeline.summary import summary_of

G = 9.81


def exact_projectile(speed: np.ndarray, angle: np.ndarray, h: np.ndarray) -> dict[str, np.ndarray]:
    """Closed-form range and d(range)/d(speed), d(height)/d(angle) (per degree), on (point, sample)."""
    v, th, h = speed[:, None], np.deg2rad(angle)[:, None], h[None, :]
    up, across = v * np.sin(th), v * np.cos(th)
    root = np.sqrt(up**2 + 2 * G * h)
    landing = (up + root) / G
    dlanding_dv = (np.sin(th) + up * np.sin(th) / root) / G
    t = np.linspace(0.0, 2.0, 21)
    return {
        "range": across * landing,
        "drange_dspeed": np.cos(th) * landing + across * dlanding_dv,
        "dheight_dangle": np.broadcast_to((v * np.cos(th) * math.pi / 180)[..., None] * t, (len(v), h.size, t.size)),
    }


def test_a_dict_of_outputs_gets_its_own_variables_dims_units_and_exact_derivatives():
    heights = torch.tensor([0.0, 1.0, 5.0], dtype=torch.float64)
    d = design.sobol({"speed": design.uniform(10, 20), "angle": design.uniform(20, 70)}, 16)
    ds = sensitivity(projectile, heights, d)
    assert ds.attrs["output_names"] == "height range" and ds.attrs["output_structure"] == "dict"
    assert ds.height.dims == ("point", "sample", "t") and ds.range.dims == ("point", "sample")
    assert ds.dheight_dspeed.dims == ds.height.dims and "y" not in ds and "dy_dspeed" not in ds
    assert ds.range.attrs["units"] == "m" and ds.drange_dspeed.attrs["units"] == "s"  # m / (m s-1)
    assert ds.dheight_dangle.attrs["units"] == "m degree-1" and ds.t.attrs["units"] == "s"
    exact = exact_projectile(ds.speed.values, ds.angle.values, heights.numpy())
    np.testing.assert_allclose(ds.range.values, exact["range"], rtol=1e-12)
    np.testing.assert_allclose(ds.drange_dspeed.values, exact["drange_dspeed"], rtol=1e-10)
    np.testing.assert_allclose(ds.dheight_dangle.values, exact["dheight_dangle"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["reverse", "finite_difference", "loop", "auto"])
def test_every_method_gives_the_same_named_outputs(method):
    heights = torch.tensor([0.0, 2.0], dtype=torch.float64)
    values = {"speed": [12.0, 15.0], "angle": [30.0, 45.0, 60.0]}
    forward = sensitivity(projectile, heights, values, method="forward")
    other = sensitivity(projectile, heights, values, method=method)
    for name in ("dheight_dspeed", "drange_dangle"):
        np.testing.assert_allclose(other[name].values, forward[name].values, rtol=1e-6, atol=1e-8)


def test_a_tuple_of_outputs_is_named_by_output_names_or_by_position():
    def two(x, C):
        return x * C, (x[:, None] * C**2).expand(-1, 3)

    ds = sensitivity(two, torch.arange(3.0, dtype=torch.float64), {"C": [1.0, 2.0]})
    assert ds.attrs["output_structure"] == "tuple" and set(ds.data_vars) >= {"y0", "y1", "dy0_dC", "dy1_dC"}
    assert ds.dy1_dC.dims == ("C", "sample", "y1_dim0")
    np.testing.assert_allclose(ds.dy1_dC.sel(C=2.0).values[:, 0], 4 * np.arange(3.0))
    two.output_names = ("flux", "stock")
    named = sensitivity(two, torch.arange(3.0, dtype=torch.float64), {"C": [1.0, 2.0]})
    assert "dstock_dC" in named and "flux" in named


def test_each_output_s_summary_is_that_of_a_model_of_it_alone():
    """summarise() of a dict model, one output at a time, equals summarise() of a model returning only
    that output (an independent computation), Sobol' indices and bounds included."""
    heights = torch.tensor([0.0, 3.0], dtype=torch.float64)
    d = design.saltelli({"speed": design.uniform(10, 20), "angle": design.uniform(20, 70)}, 64)
    both = summarise(sensitivity(projectile, heights, d))
    for name in ("height", "range"):

        def alone(x, speed, angle, name=name):
            return projectile(x, speed, angle)[name]

        single = summarise(sensitivity(alone, heights, d, output_dims=["t"] if name == "height" else None))
        mine = summary_of(both, name)
        assert set(mine.data_vars) == set(single.data_vars)
        for var in ("sobol_total_aggregated", "sobol_total_upper_speed_aggregated", "y_var"):
            np.testing.assert_allclose(mine[var].values, single[var].values, rtol=1e-12)
        assert mine.attrs["sobol_consistent_with_bounds"] == single.attrs["sobol_consistent_with_bounds"]


def test_the_flat_view_is_what_the_engine_computed():
    heights = torch.tensor([1.0, 2.0], dtype=torch.float64)
    ds = sensitivity(projectile, heights, {"speed": [12.0, 14.0], "angle": [40.0]})
    flat = flat_outputs(ds, ["speed", "angle"], ["speed", "angle"])
    assert flat.dy_dspeed.dims == ("speed", "angle", "sample", "output") and flat.sizes["output"] == 22
    np.testing.assert_array_equal(flat.dy_dspeed.values[..., 21], ds.drange_dspeed.values)
    np.testing.assert_array_equal(flat.y.values[..., :21], ds.height.values)
    view = select_output(ds, "range")
    assert "y" in view and "dy_dangle" in view and "height" not in view
    xr.testing.assert_equal(view.y.drop_attrs(), ds.range.drop_attrs())


def _with_dims(fn, dims):
    fn.output_dims = dims
    return fn


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (lambda x, C: {"bad name": x * C}, "invalid output name 'bad name'"),
        (lambda x, C: {"a": x * C, "b": (x * C)[:1]}, "the same for all"),
        (lambda x, C: {"C": x * C}, r"invalid output names \['C'\]"),
        (lambda x, C: {}, "an empty dict or tuple"),
        (_with_dims(lambda x, C: {"T": x[:, None] * C * torch.ones(2)}, {"T": ("C",)}), r"invalid output dims \['C'\]"),
    ],
)
def test_bad_named_outputs_are_named(model, message):
    with pytest.raises(ConfigError, match=message):
        sensitivity(model, torch.arange(3.0), {"C": [1.0, 2.0]})


@pytest.mark.slow
def test_a_study_of_named_outputs_through_snakemake(workflow):
    """The projectile study: per-output variables in the merged file, each output's summary and
    headline section, plots with a panel row per output, verify over every output."""
    from helpers import run
    from pipeline.paths import DESIGN_PLOTS

    config = ["--config", "studies=[projectile]", "overrides={projectile: [sweep.n=64, sweep.parts=2]}"]
    result = run(["snakemake", "--cores", "2", *config], cwd=workflow)
    assert result.returncode == 0, result.stderr[-3000:]
    out = workflow / "outputs" / "projectile"
    with xr.open_dataset(out / "sensitivity.nc") as ds:
        assert ds.sizes["point"] == 64 and {"height", "range", "drange_dangle"} <= set(ds.data_vars)
    with xr.open_dataset(out / "summary.nc") as s:
        assert "range_sobol_total_upper_speed_aggregated" in s and s.attrs["output_names"] == "height range"
    headline = (out / "headline.md").read_text()
    assert "# projectile, output height" in headline and "# projectile, output range" in headline
    assert (
        "overall: PASS" in (out / "verify.md").read_text()
        and "d(height, range)_dspeed" in (out / "verify.md").read_text()
    )
    import matplotlib.image as mpimg

    overview = (workflow / "outputs" / "overview.md").read_text()
    assert "height: " in overview and ("range: speed" in overview or "range: angle" in overview), overview
    single = mpimg.imread(out / "plots" / DESIGN_PLOTS[1])
    assert single.shape[0] > 1.5 * single.shape[1] * 0.5  # two figures, one below the other
