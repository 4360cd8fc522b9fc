"""Variance-based Sobol' indices from a Saltelli design, against scipy, SALib and exact values."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import sobol_indices as scipy_sobol_indices

from pipeline import ConfigError, design, sensitivity, summarise
from pipeline.design.analyses import contradictions
from pipeline.design.indices import Blocks
from pipeline.design.sampling import saltelli_group

PI = math.pi
ISHIGAMI_FIRST = [0.3139051911, 0.4424111448, 0.0]
ISHIGAMI_TOTAL = [0.5575888552, 0.4424111448, 0.2436836641]
ISHIGAMI_S13 = 0.2436836641


def ishigami(x, x1, x2, x3):
    return (torch.sin(x1) + 7 * torch.sin(x2) ** 2 + 0.1 * x3**4 * torch.sin(x1)) * x


def ishigami_dataset(n: int, seed: int = 0, second_order: bool = False, model=ishigami):
    u = design.uniform(-PI, PI)
    d = design.saltelli({"x1": u, "x2": u, "x3": u}, n, seed=seed, second_order=second_order)
    return sensitivity(model, torch.ones(1, dtype=torch.float64), d)


def test_the_design_is_salib_order_and_grows_like_a_sobol_design():
    """Rows per base point: A, AB_1..AB_P, BA_1..BA_P, B; AB_i is A with column i from B; the
    first k groups of a larger design are the design of k base points."""
    dists = {"a": design.uniform(0, 1), "b": design.normal(0, 1), "c": design.loguniform(1, 10)}
    small = design.saltelli(dists, 8, seed=3, second_order=True)
    large = design.saltelli(dists, 32, seed=3, second_order=True)
    group = saltelli_group(3, second_order=True)
    assert group == 8 and small.table.shape == (64, 3)
    np.testing.assert_array_equal(small.table, large.table[: 8 * group])
    g = small.table.reshape(8, group, 3)
    a, b = g[:, 0], g[:, -1]
    for i in range(3):
        ab, ba = g[:, 1 + i], g[:, 4 + i]
        np.testing.assert_array_equal(ab[:, i], b[:, i])
        np.testing.assert_array_equal(np.delete(ab, i, axis=1), np.delete(a, i, axis=1))
        np.testing.assert_array_equal(ba[:, i], a[:, i])
        np.testing.assert_array_equal(np.delete(ba, i, axis=1), np.delete(b, i, axis=1))
    assert small.attrs()["design"] == "saltelli" and small.attrs()["design_second_order"] == 1
    with pytest.raises(ConfigError, match="invalid n=12: a Saltelli design needs a power of two"):
        design.saltelli(dists, 12)


def test_indices_equal_scipys_on_the_same_evaluations():
    ds = ishigami_dataset(512, seed=1)
    s = summarise(ds)
    blocks = Blocks.of(ds.y.values.reshape(-1, 1), 3, second_order=False)
    f_ab = blocks.ab[:, :, 0][:, None, :]  # (parameter, output, base point)
    ref = scipy_sobol_indices(func={"f_A": blocks.a.T, "f_B": blocks.b.T, "f_AB": f_ab}, n=512)
    np.testing.assert_allclose(s.sobol_first_aggregated.values, ref.first_order, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(s.sobol_total_aggregated.values, ref.total_order, rtol=1e-12, atol=1e-14)
    # one output element: the per-element indices are the aggregated ones
    np.testing.assert_allclose(s.sobol_first.values.reshape(3), ref.first_order, rtol=1e-12, atol=1e-14)


def test_indices_agree_with_salibs_analyze_on_the_same_points():
    """SALib centres by the mean of all evaluations where scipy and sensweep take that of A and B:
    the estimates differ by that choice only, far less than their intervals."""
    from SALib.analyze import sobol as salib_sobol

    ds = ishigami_dataset(1024, seed=2, second_order=True)
    s = summarise(ds)
    problem = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[-PI, PI]] * 3}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = salib_sobol.analyze(problem, ds.y.values.reshape(-1), calc_second_order=True, seed=0)
    np.testing.assert_allclose(s.sobol_first_aggregated.values, ref["S1"], atol=5e-3)
    np.testing.assert_allclose(s.sobol_total_aggregated.values, ref["ST"], atol=5e-3)
    second = s.sobol_second_aggregated.values
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert abs(second[i, j] - ref["S2"][i, j]) < 1e-2, (i, j, second[i, j], ref["S2"][i, j])
    assert np.isnan(np.diag(second)).all()


def test_ishigami_exact_indices_lie_in_the_intervals_and_below_the_bounds():
    s = summarise(ishigami_dataset(4096, seed=0, second_order=True))
    for kind, exact in (("first", ISHIGAMI_FIRST), ("total", ISHIGAMI_TOTAL)):
        low, high = s[f"sobol_{kind}_aggregated_interval"].values
        assert (low <= exact).all() and (np.array(exact) <= high).all(), (kind, low, high)
        assert (high - low < 0.12).all()
    low, high = s.sobol_second_aggregated_interval.values[:, 0, 2]
    assert low <= ISHIGAMI_S13 <= high
    for i, p in enumerate(["x1", "x2", "x3"]):
        assert ISHIGAMI_TOTAL[i] <= float(s[f"sobol_total_upper_{p}_aggregated"])
    assert s.attrs["sobol_consistent_with_bounds"] == 1 and s.attrs["sobol_contradictions"] == "none"
    assert int(s.sobol_failed_base_points) == 0


def test_g_function_and_a_linear_model_of_normal_inputs():
    a = np.array([0.0, 1.0, 4.5, 9.0])
    v = 1 / (3 * (1 + a) ** 2)
    total_v = np.prod(1 + v) - 1
    first, total = v / total_v, v * np.prod(1 + v) / (1 + v) / total_v

    def g_function(x, **p):
        out = x
        for i, name in enumerate(p):
            out = out * (torch.abs(4 * p[name] - 2) + a[i]) / (1 + a[i])
        return out

    dists = {f"x{i}": design.uniform(0, 1) for i in range(4)}
    s = summarise(sensitivity(g_function, torch.ones(1, dtype=torch.float64), design.saltelli(dists, 4096, seed=5)))
    for kind, exact in (("first", first), ("total", total)):
        low, high = s[f"sobol_{kind}_aggregated_interval"].values
        assert (low <= exact).all() and (exact <= high).all(), (kind, exact, low, high)

    c, sd = np.array([1.0, -2.0, 0.5]), np.array([1.0, 0.5, 3.0])
    share = (c * sd) ** 2 / ((c * sd) ** 2).sum()
    normals = {f"z{i}": design.normal(1.0 + i, sd[i]) for i in range(3)}
    linear = sensitivity(
        lambda x, z0, z1, z2: x * (c[0] * z0 + c[1] * z1 + c[2] * z2),
        torch.ones(1, dtype=torch.float64),
        design.saltelli(normals, 2048, seed=7),
    )
    s = summarise(linear)
    for kind in ("first", "total"):  # a linear model has no interactions: S = S_T
        low, high = s[f"sobol_{kind}_aggregated_interval"].values
        assert (low <= share).all() and (share <= high).all(), (kind, share, low, high)
    # a linear model is where linearisation holds: the delta-method variance is the sampled one
    np.testing.assert_allclose(float(s.y_var_linear.mean()), float(s.y_var.mean()), rtol=0.05)


def test_failed_evaluations_leave_their_base_points_out_and_are_reported():
    """A model that gives NaN where x1 > 2.5: every base point with such an evaluation is left out
    whole (its blocks stay paired), counted, warned about; the rest give scipy's indices."""

    def failing(x, x1, x2, x3):
        return torch.where(x1 > 2.5, torch.nan, ishigami(x, x1, x2, x3))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = ishigami_dataset(256, seed=4, model=failing)
    with pytest.warns(RuntimeWarning, match=r"base points of the Saltelli design were left out"):
        s = summarise(ds)
    blocks = Blocks.of(ds.y.values.reshape(-1, 1), 3, second_order=False)
    table = np.column_stack([ds[p].values for p in ("x1", "x2", "x3")]).reshape(256, 5, 3)
    bad = (table[..., 0] > 2.5).any(axis=1)
    assert 0 < bad.sum() == int(s.sobol_failed_base_points)
    kept = blocks.rows(~bad)
    first = s.sobol_first_aggregated.values
    assert np.isfinite(first).all() and np.isfinite(s.sobol_total_aggregated.values).all()
    centre = (kept.a.mean() + kept.b.mean()) / 2
    expected = np.mean((kept.b - centre) * (kept.ab[0] - kept.a)) / np.var(np.r_[kept.a, kept.b])
    assert first[0] == pytest.approx(expected, rel=1e-10)


def test_convergence_uses_the_first_base_points():
    ds = ishigami_dataset(256, seed=6)
    s = summarise(ds)
    assert s.base_points.values.tolist() == [32, 64, 128, 256]
    np.testing.assert_allclose(s.sobol_total_convergence.values[-1], s.sobol_total_aggregated.values)
    head = summarise(ds.isel(point=slice(0, 32 * 5)))
    np.testing.assert_allclose(s.sobol_first_convergence.values[0], head.sobol_first_aggregated.values, rtol=1e-12)


def test_a_contradiction_between_indices_and_bounds_is_reported():
    s = summarise(ishigami_dataset(256, seed=8))
    assert contradictions(s, s, ["x1", "x2", "x3"]) == []
    bounds = s.copy()
    bounds["sobol_total_upper_x2_aggregated"] = bounds["sobol_total_upper_x2_aggregated"].copy(data=0.1)
    bounds["sobol_total_upper_x2_aggregated"].attrs = {"ci_low": 0.05, "ci_high": 0.1}
    found = contradictions(s, bounds, ["x1", "x2", "x3"])
    assert len(found) == 1 and found[0].startswith("S_T of x2 at least")


def test_method_none_gives_y_only_and_the_same_indices():
    """``method="none"``: the model batched over the points, no derivative; the indices equal those
    of the same design with derivatives (the same y), without bounds or derivative variables."""
    with_derivatives = ishigami_dataset(128, seed=9)
    u = design.uniform(-PI, PI)
    d = design.saltelli({"x1": u, "x2": u, "x3": u}, 128, seed=9)
    y_only = sensitivity(ishigami, torch.ones(1, dtype=torch.float64), d, method="none")
    assert y_only.attrs["method"] == "none" and not [v for v in y_only.data_vars if v.startswith("dy_")]
    np.testing.assert_array_equal(y_only.y.values, with_derivatives.y.values)
    a, b = summarise(y_only), summarise(with_derivatives)
    np.testing.assert_array_equal(a.sobol_total_aggregated.values, b.sobol_total_aggregated.values)
    assert "sobol_total_upper_x1_aggregated" not in a and "sobol_total_upper_x1_aggregated" in b


def test_method_none_refuses_what_asks_for_derivatives():
    net = torch.nn.Linear(2, 1)
    with pytest.raises(ConfigError, match="invalid method='none': it computes no derivative, and the bound tensors W"):
        sensitivity(net, torch.ones(3, 2), {}, bind={"W": "weight"}, method="none")
    with pytest.raises(ConfigError, match="invalid order=2"):
        sensitivity(lambda x, C: C * x, torch.ones(3), {"C": [1.0]}, method="none", order=2)


def test_a_saltelli_study_config_is_checked():
    from pipeline.config.studies import compose_job
    from pipeline.config.validate import part_count

    cfg = compose_job("ishigami_sobol")
    assert cfg.sweep.kind.value == "saltelli" and part_count(cfg.sweep) == 1024 * 8 // 4096
    with pytest.raises(ConfigError, match=r"sweep.part_size=4000.*of whole base points \(8 points each\)"):
        compose_job("ishigami_sobol", ["sweep.part_size=4000"])
    with pytest.raises(ConfigError, match=r"invalid sweep\.n=1000: a Saltelli design needs a power of two"):
        compose_job("ishigami_sobol", ["sweep.n=1000"])
    with pytest.raises(ConfigError, match=r"invalid method\.name=.none.: y only is for a sampled design"):
        compose_job("seed_linear", ["method=none"])
    with pytest.raises(ConfigError, match="none computes no derivative"):
        compose_job("ishigami_sobol", ["verify.methods=[forward,none]"])


@pytest.mark.slow
def test_saltelli_studies_through_snakemake(workflow):
    """ishigami_sobol end to end: parts, merge, summary with indices in their exact intervals,
    verify, plots; then with method=none (y only: no verify job, the same indices)."""
    import xarray as xr

    from helpers import run
    from pipeline.paths import DESIGN_PLOTS

    result = run(["snakemake", "--cores", "2", "--config", "studies=[ishigami_sobol]"], cwd=workflow)
    assert result.returncode == 0, result.stderr[-3000:]
    out = workflow / "outputs" / "ishigami_sobol"
    with xr.open_dataset(out / "summary.nc") as s:
        for kind, exact in (("first", ISHIGAMI_FIRST), ("total", ISHIGAMI_TOTAL)):
            low, high = s[f"sobol_{kind}_aggregated_interval"].values
            assert (low <= exact).all() and (np.array(exact) <= high).all(), (kind, low, high)
        assert s.attrs["sobol_consistent_with_bounds"] == 1
        with_derivatives = s.sobol_total_aggregated.values
    assert "overall: PASS" in (out / "verify.md").read_text()
    assert all((out / "plots" / name).stat().st_size > 0 for name in DESIGN_PLOTS)

    y_only = ["--config", "studies=[ishigami_sobol]", "outputs=y_only", "overrides={ishigami_sobol: [method=none]}"]
    result = run(["snakemake", "--cores", "2", *y_only], cwd=workflow)
    assert result.returncode == 0, result.stderr[-3000:]
    out = workflow / "y_only" / "ishigami_sobol"
    assert not (out / "verify.md").exists()
    with xr.open_dataset(out / "summary.nc") as s:
        np.testing.assert_array_equal(s.sobol_total_aggregated.values, with_derivatives)
        assert "sobol_total_upper_x1_aggregated" not in s


def test_second_order_per_element_equals_the_aggregate_for_one_output():
    s = summarise(ishigami_dataset(2048, seed=10, second_order=True))
    np.testing.assert_allclose(s.sobol_second.values.reshape(3, 3), s.sobol_second_aggregated.values, rtol=1e-12)
    low, high = s.sobol_second_interval.values.reshape(2, 3, 3)[:, 0, 2]
    assert low < ISHIGAMI_S13 < high and np.isnan(s.sobol_second_interval.values.reshape(2, 3, 3)[:, 1, 1]).all()


def test_a_model_that_raises_at_some_points_gives_nan_there_counted_and_reported():
    """A solver that fails to converge for C > 2.5: those points are NaN, counted (attr failed_points),
    warned about naming the first point and the model's message; nan_policy=raise fails instead. On a
    Saltelli design the indices then come from the complete base points (the same treatment as NaN)."""
    from pipeline import DerivativeError

    def fragile(x, C):
        if C.item() > 2.5:
            raise ValueError("solver did not converge")
        return C * x

    with pytest.warns(RuntimeWarning, match=r"the model raised at 2 of 4 points, whose results are NaN; first at "):
        ds = sensitivity(fragile, torch.arange(3.0), {"C": [1.0, 2.0, 3.0, 4.0]})
    assert ds.attrs["failed_points"] == 2 and ds.attrs["method"] == "forward_per_point"
    np.testing.assert_array_equal(ds.dy_dC.values[:2], np.tile(np.arange(3.0), (2, 1)))
    assert np.isnan(ds.y.values[2:]).all() and np.isnan(ds.dy_dC.values[2:]).all()
    with pytest.raises(DerivativeError, match=r"raised at 2 of 4 points.*solver did not converge \(nan_policy=raise\)"):
        sensitivity(fragile, torch.arange(3.0), {"C": [1.0, 2.0, 3.0, 4.0]}, nan_policy="raise")

    def domain(x, x1, x2, x3):
        if x1.item() > 2.5:
            raise ArithmeticError("outside the model's domain")
        return ishigami(x, x1, x2, x3)

    u = design.uniform(-PI, PI)
    d = design.saltelli({"x1": u, "x2": u, "x3": u}, 64, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = sensitivity(domain, torch.ones(1, dtype=torch.float64), d, method="none")
        s = summarise(ds)
    groups = d.table.reshape(64, 5, 3)
    assert ds.attrs["failed_points"] == int((groups[..., 0] > 2.5).sum())
    assert int(s.sobol_failed_base_points) == int((groups[..., 0] > 2.5).any(axis=1).sum()) > 0
    assert np.isfinite(s.sobol_total_aggregated.values).all()


def test_indices_along_the_last_output_dim_add_up_to_the_aggregate():
    """y(t) = t x1 + x2 at t = 0, 1, 2 (x1, x2 standard normal): S_T of x1 is t^2 / (t^2 + 1) at each t,
    and the aggregate over t weights each t by its variance."""
    t = torch.arange(3.0, dtype=torch.float64)

    def ramp(x, x1, x2):
        return x[:, None] * (t * x1 + x2)

    d = design.saltelli({"x1": design.normal(0, 1), "x2": design.normal(0, 1)}, 4096, seed=11)
    s = summarise(sensitivity(ramp, torch.ones(1, dtype=torch.float64), d, output_dims=["t"]))
    exact = (t**2 / (t**2 + 1)).numpy()
    low, high = s.sobol_total_per_t_interval.sel(parameter="x1").values
    assert (low <= exact + 1e-12).all() and (exact - 1e-12 <= high).all(), (low, high)
    np.testing.assert_allclose(s.sobol_total_per_t.sel(parameter="x1").values, exact, atol=0.03)


@pytest.mark.parametrize("second_order", [False, True])
def test_indices_read_a_block_of_base_points_at_a_time_equal_all_at_once(second_order):
    """The Saltelli sums add up: a design read 7 base points at a time (blocks that end at the
    convergence levels) gives every index, interval and convergence row of reading it at once, to
    round-off, for a y offset by 1e4 (the sums are of y less the first block's mean) and with failed
    base points; sums of two halves with their own shifts add up to the whole's."""
    from pipeline.design.indices import SaltelliSums, sobol_indices

    def offset(x, x1, x2, x3):
        y = 1e4 + ishigami(x, x1, x2, x3)
        return torch.where((x1 > 2.8) & (x2 > 0), torch.nan, y)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = ishigami_dataset(128, seed=3, second_order=second_order, model=offset)
    params = ["x1", "x2", "x3"]
    whole, complete = sobol_indices(ds, params, second_order)
    group = saltelli_group(3, second_order)
    blocked, same = sobol_indices(ds, params, second_order, block_values=7 * group)
    assert 0 < (~complete).sum() < 20 and np.array_equal(complete, same)
    for name in whole.data_vars:
        np.testing.assert_allclose(blocked[name].values, whole[name].values, rtol=1e-9, atol=1e-12, err_msg=name)
    # against the estimator written out on the complete base points (float64, no sums)
    kept = Blocks.of(ds.y.values.reshape(-1, 1), 3, second_order).rows(complete)
    centre = (kept.a.mean() + kept.b.mean()) / 2
    variance = np.var(np.r_[kept.a, kept.b])
    total = np.mean((kept.a - kept.ab[2]) ** 2) / 2 / variance
    assert float(whole.sobol_total_aggregated[2]) == pytest.approx(total, rel=1e-9)
    first = np.mean((kept.b - centre) * (kept.ab[0] - kept.a)) / variance
    assert float(whole.sobol_first_aggregated[0]) == pytest.approx(first, rel=1e-9)
    # two halves, each about its own mean, moved to one shift
    halves = [kept.rows(np.arange(len(kept.a)) < 40), kept.rows(np.arange(len(kept.a)) >= 40)]
    ones = [np.ones((1, len(h.a))) for h in halves]
    added = (SaltelliSums.of(halves[0], ones[0]) + SaltelliSums.of(halves[1], ones[1])).moments().indices()
    at_once = SaltelliSums.of(kept, np.ones((1, len(kept.a)))).moments().indices()
    for kind in at_once:
        np.testing.assert_allclose(added[kind], at_once[kind], rtol=1e-9, atol=1e-12, err_msg=kind)
