"""Sampled designs and the derivative-based bounds on Sobol' indices, validated on Ishigami."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
import torch
import xarray as xr

from pipeline import design, sensitivity, summarise
from pipeline.errors import ConfigError, MergeError

A, B = 7.0, 0.1
PI = math.pi
NU = {"x1": 0.5 * (1 + 2 * B * PI**4 / 5 + B**2 * PI**8 / 9), "x2": A**2 / 2, "x3": 8 * B**2 * PI**6 / 7}
D = A**2 / 8 + B * PI**4 / 5 + B**2 * PI**8 / 18 + 0.5
V1 = 0.5 * (1 + B * PI**4 / 5) ** 2
FIRST = {"x1": V1 / D, "x2": A**2 / 8 / D, "x3": 0.0}
ISHIGAMI = {p: design.uniform(-PI, PI) for p in ("x1", "x2", "x3")}
TOTAL = {"x1": (V1 + B**2 * PI**8 * 8 / 225) / D, "x2": A**2 / 8 / D, "x3": B**2 * PI**8 * 8 / 225 / D}


def value(da) -> float:
    """A summary value of the one sample and output."""
    return float(da.squeeze())


def ishigami(x: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor) -> torch.Tensor:
    """The Ishigami function (a = 7, b = 0.1) of three uncertain parameters; x is a dummy batch."""
    y = torch.sin(x1) + A * torch.sin(x2) ** 2 + B * x3**4 * torch.sin(x1)
    return y * torch.ones_like(x) if y.dim() == 0 else y[:, None] * torch.ones_like(x)


def test_reference_values_of_ishigami():
    """The closed forms used below agree with the literature's figures."""
    assert [round(NU[p], 4) for p in NU] == [7.7196, 24.5, 10.9873]
    assert round(D, 4) == 13.8446
    assert [round(TOTAL[p], 4) for p in TOTAL] == [0.5576, 0.4424, 0.2437]


@pytest.fixture(scope="module")
def ishigami_summary():
    d = design.sobol(ISHIGAMI, n=2**13, seed=1)
    ds = sensitivity(ishigami, torch.zeros(1, dtype=torch.float64), d, dtype="float64")
    return ds, summarise(ds)


def test_design_dataset_has_one_point_dim(ishigami_summary):
    ds, _ = ishigami_summary
    assert ds.y.dims == ("point", "sample") and ds.sizes["point"] == 2**13
    assert ds.x1.dims == ("point",) and ds.attrs["distribution_x2"] == "uniform(-3.14159, 3.14159)"
    assert ds.attrs["design"] == "sobol"
    # 3 parameters, 1 output per point: reverse mode (a pass per output) beats forward (one per parameter)
    assert (
        ds.attrs["method"] == "reverse" and "3 directions (parameters) outnumber 1 outputs" in ds.attrs["method_choice"]
    )


def test_ishigami_dgsm_and_bounds(ishigami_summary):
    _, s = ishigami_summary
    assert value(s.y_var) == pytest.approx(D, rel=0.02)
    for p in NU:
        assert value(s[f"dgsm_{p}"]) == pytest.approx(NU[p], rel=0.02), p
        upper = value(s[f"sobol_total_upper_{p}"])
        lower = value(s[f"sobol_first_lower_{p}"])
        assert upper >= TOTAL[p] and lower <= FIRST[p] + 0.01, p
        assert upper == pytest.approx(4 * NU[p] / D, rel=0.03)  # C = (2 pi)^2 / pi^2 = 4
        agg = s[f"sobol_total_upper_{p}_aggregated"]
        assert agg.attrs["ci_low"] <= float(agg) <= agg.attrs["ci_high"]
    # Cov(y, x1) = E[x1 sin x1] (1 + b E[x3^4]) = 1 + b pi^4 / 5, Var x1 = pi^2 / 3
    expected_lower = (1 + B * PI**4 / 5) ** 2 / (PI**2 / 3 * D)
    assert value(s.sobol_first_lower_x1) == pytest.approx(expected_lower, rel=0.03)
    assert abs(value(s.sobol_first_lower_x3)) < 0.01
    assert s.active_eigenvalues.sizes["direction"] == 3


def test_bootstrap_intervals_per_element_along_time_and_aggregated(monkeypatch):
    """The weighted-sums bootstrap equals resampling copies of the points with the same Poisson draws:
    per element, along the last output dim (weighted over samples) and aggregated over all."""
    from pipeline.design import bounds, sums

    monkeypatch.setattr(sums, "BOOTSTRAP", 40)
    monkeypatch.setattr(sums, "BOOTSTRAP_BATCH_VALUES", 6 * 128 * 4)  # slabs of one sample row of 4 times
    monkeypatch.setattr(bounds, "BOOTSTRAP_BATCH_VALUES", 6 * 40 * 4)
    t = torch.linspace(0.0, 1.0, 4, dtype=torch.float64)
    x = torch.tensor([[1.0], [2.0], [0.5]], dtype=torch.float64)
    d = design.sobol({"C": design.uniform(0.0, 2.0), "K": design.normal(1.0, 0.5)}, n=128, seed=2)
    ds = sensitivity(lambda x, C, K: torch.sin(C * x * t) + K**2 * x * t, x, d, dtype="float64")
    ds = ds.rename(output="t")
    out = bounds.design_bounds(ds, ["C", "K"], block_values=1_320)  # blocks of 33 points, summed
    y, dy = ds.y.values, ds.dy_dC.values  # (point, sample, t)
    n = len(y)
    from pipeline.design.resampling import poisson_weights

    # the same Poisson resamples as copies of the points: each point repeated its weight's times
    draws = [np.repeat(np.arange(n), w.astype(int)) for w in poisson_weights(0, 0, n, 40)]
    D = np.stack([y[i].var(0, ddof=1) for i in draws])  # (resample, sample, t)
    nu = np.stack([(dy[i] ** 2).mean(0) for i in draws])
    constant = (2.0 - 0.0) ** 2 / PI**2
    q = [2.5, 97.5]
    np.seterr(invalid="ignore")  # t = 0: D = 0
    np.testing.assert_allclose(out["sobol_total_upper_C_interval"].values, np.percentile(constant * nu / D, q, 0))
    along = constant * nu.sum(1) / D.sum(1)
    np.testing.assert_allclose(
        out["sobol_total_upper_C_per_t_interval"].values[:, 1:], np.percentile(along, q, 0)[:, 1:]
    )
    assert np.isnan(out["sobol_total_upper_C_per_t_interval"].values[:, 0]).all()  # t = 0: y does not vary
    agg = out["sobol_total_upper_C_aggregated"].attrs
    expected = np.percentile(constant * nu.sum((1, 2)) / D.sum((1, 2)), q)
    assert [agg["ci_low"], agg["ci_high"]] == pytest.approx(list(expected))
    per_t = out["sobol_total_upper_C_per_t"]
    np.testing.assert_allclose(per_t.values[1:], constant * (dy**2).mean(0).sum(0)[1:] / y.var(0, ddof=1).sum(0)[1:])


@pytest.mark.parametrize(
    "dist",
    [
        design.uniform(1, 3),
        design.loguniform(0.1, 10),
        design.normal(1, 2),
        design.lognormal(0, 0.5),
        design.truncnormal(0, 1, -1, 2),
    ],
    ids=str,
)
def test_closed_form_moments_agree_with_scipy(dist):
    """The bounds' closed-form variance and support of each variable (p or ln p), and the quantiles, are scipy's."""
    assert dist.variance() == pytest.approx(float(dist.variable().var()), rel=1e-12)
    assert dist.support() == pytest.approx(dist.variable().support(), rel=1e-12)
    u = np.random.default_rng(0).random(10_000)
    np.testing.assert_array_equal(dist.ppf(u), dist.frozen().ppf(u))  # bit for bit: grown designs keep their parts


def test_normal_and_log_distributions_use_their_constants():
    """y = a C + b ln K with C ~ normal(0, 2), K ~ loguniform(1, e^3): every index is known."""
    d = design.random({"C": design.normal(0.0, 2.0), "K": design.loguniform(1.0, math.e**3)}, n=20000, seed=3)
    ds = sensitivity(lambda x, C, K: (1.5 * C + 2.0 * torch.log(K)) * torch.ones_like(x), torch.zeros(1), d)
    s = summarise(ds)
    var_c, var_lnk = 4.0 * 1.5**2, 2.0**2 * 9 / 12
    total = var_c + var_lnk
    # linear in C and ln K: the bounds are tight (upper = lower = the index) up to sampling error
    assert value(s.sobol_total_upper_C) == pytest.approx(var_c / total, rel=0.05)
    assert value(s.sobol_first_lower_C) == pytest.approx(var_c / total, rel=0.05)
    assert value(s.sobol_total_upper_K) == pytest.approx(9 / math.pi**2 * 4.0 / total, rel=0.05)
    assert value(s.sobol_first_lower_K) == pytest.approx(var_lnk / total, rel=0.05)


def test_designs_reject_bad_arguments():
    with pytest.raises(ConfigError, match="power of two"):
        design.sobol({"C": design.uniform(0, 1)}, n=100)
    with pytest.raises(ConfigError, match=r"loguniform\(0, 1\): need 0 < low < high"):
        design.loguniform(0, 1)
    with pytest.raises(ConfigError, match="N x P table"):
        design.points(np.zeros((4, 3)), ["C", "K"])
    table = design.lhs({"C": design.uniform(0, 1), "K": design.truncnormal(0, 1, -1, 2)}, n=16, seed=0).table
    assert table.shape == (16, 2) and (table[:, 1] >= -1).all() and (table[:, 1] <= 2).all()
    # one value per stratum in each column: a Latin hypercube
    assert sorted(np.floor(table[:, 0] * 16).astype(int)) == list(range(16))


def test_salib_indices_lie_within_the_bounds_and_its_dgsm_agrees(ishigami_summary):
    """SALib as the outside reference on the same model: Saltelli/Jansen Sobol' indices, and its
    finite-difference DGSM ((P + 1) N evaluations, step 1e-3 relative)."""
    sample = pytest.importorskip("SALib.sample.sobol")
    from SALib.analyze import dgsm as salib_dgsm
    from SALib.analyze import sobol as salib_sobol
    from SALib.sample import finite_diff

    _, s = ishigami_summary
    problem = {"num_vars": 3, "names": list(NU), "bounds": [[-PI, PI]] * 3}

    def f(X: np.ndarray) -> np.ndarray:
        return ishigami(torch.zeros(1, dtype=torch.float64), *torch.from_numpy(X).T)[..., 0].numpy()

    X = sample.sample(problem, 2048, seed=0)
    indices = salib_sobol.analyze(problem, f(X), seed=0)
    X = finite_diff.sample(problem, 4000, delta=1e-3, seed=0)
    dgsm = salib_dgsm.analyze(problem, X, f(X), seed=0)
    for i, p in enumerate(NU):
        assert value(s[f"sobol_first_lower_{p}"]) <= indices["S1"][i] + indices["S1_conf"][i], p
        assert indices["ST"][i] <= value(s[f"sobol_total_upper_{p}"]), p
        assert dgsm["vi"][i] == pytest.approx(value(s[f"dgsm_{p}"]), rel=0.03), p
        assert dgsm["dgsm"][i] == pytest.approx(value(s[f"sobol_total_upper_{p}"]), rel=0.04), p


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["sweep.n=1000"], r"invalid sweep.n=1000: a Sobol' design needs a power of two, e.g. 512"),
        (['sweep.parameters.x1="uniform(1)"'], r"invalid sweep.parameters.x1='uniform\(1\)': uniform takes 2 numbers"),
        (['sweep.parameters.x2="gauss(0, 1)"'], r"invalid sweep.parameters.x2='gauss\(0, 1\)': write one of uniform"),
        (["sweep.part_size=null", "sweep.parts=5000"], r"sweep.parts"),
        (
            ["sweep.part_size=1000"],
            r"invalid sweep.part_size=1000: must divide sweep.n=4096 into equal parts, e.g. 512",
        ),
        (["sweep.parts=2"], r"invalid sweep.parts=2: give sweep.parts or sweep.part_size, not both"),
        (["sweep.part_size=2048", "part=2"], r"invalid part=2: must be between 0 and sweep.parts-1 \(1\)"),
    ],
)
def test_design_config_mistakes_are_named(overrides, message):
    from pipeline.config.studies import compose_job

    with pytest.raises(ConfigError, match=message):
        compose_job("ishigami", overrides)


def test_design_parts_keep_their_point_indices(tmp_path):
    """Two parts of a Sobol' design: each computes its rows, with their indices in the whole design."""
    from pipeline.config.studies import compose_job
    from pipeline.stages.compute import sweep_dataset

    split = ["sweep.n=64", "sweep.part_size=null", "sweep.parts=2"]
    parts = [sweep_dataset(compose_job("ishigami", [*split, f"part={i}"]), "ishigami") for i in (0, 1)]
    assert [list(p.point.values[[0, -1]]) for p in parts] == [[0, 31], [32, 63]]
    whole = sweep_dataset(compose_job("ishigami", ["sweep.n=64", "sweep.part_size=null"]), "ishigami")
    np.testing.assert_array_equal(np.concatenate([p.x1.values for p in parts]), whole.x1.values)
    np.testing.assert_array_equal(np.concatenate([p.dy_dx3.values for p in parts]), whole.dy_dx3.values)


@pytest.mark.parametrize(
    ("kind", "options", "n", "rows"),
    [
        ("sobol", {}, 256, (96, 160)),
        ("sobol", {}, 256, (0, 100)),
        ("random", {}, 256, (1, 255)),
        ("saltelli", {}, 32, (25, 61)),  # cuts base points: rows 25..60 of groups of 5
        ("saltelli", {"second_order": True}, 32, (16, 48)),
    ],
)
def test_a_part_of_a_design_is_drawn_without_the_rest(kind, options, n, rows):
    """A compute job draws its own rows of a Sobol', random or Saltelli design (the generator moved
    past the others): the same values as those rows of the whole design, with their indices."""
    dists = {"a": design.uniform(0, 1), "b": design.normal(1, 2), "c": design.loguniform(0.1, 10)}
    make = getattr(design, kind)
    whole = make(dists, n, seed=7, **options)
    part = make(dists, n, seed=7, rows=rows, **options)
    np.testing.assert_array_equal(part.table, whole.table[slice(*rows)])
    assert part.first_point == rows[0] and part.kind == whole.kind and part.second_order == whole.second_order
    with pytest.raises(ValueError, match="not within"):
        make(dists, n, seed=7, rows=(0, len(whole) + 1), **options)


def test_points_from_a_table_file(tmp_path):
    """kind=points reads the user's table (.csv with a header); its bytes enter the fingerprint."""
    from pipeline.config.studies import compose_job
    from pipeline.stages.compute import sweep_dataset
    from pipeline.storage.provenance import fingerprint

    table = tmp_path / "points.csv"
    table.write_text("x1,x2,x3\n0.1,0.2,0.3\n1.0,-1.0,2.0\n0.5,0.5,-0.5\n")
    cfg = compose_job(
        "ishigami",
        [
            "sweep=points",
            f"sweep.path='{table}'",
            "sweep.part_size=null",
            "sweep.parameters.x1=null",
            "sweep.parts=3",
            "part=1",
        ],
    )
    ds = sweep_dataset(cfg, "ishigami")
    assert list(ds.point.values) == [1] and list(ds.x3.values) == [2.0] and "distribution_x1" not in ds.attrs
    exact = np.sin(1.0) + A * np.sin(-1.0) ** 2 + B * 2.0**4 * np.sin(1.0)
    assert value(ds.y) == pytest.approx(exact, rel=1e-12)
    assert value(ds.dy_dx2) == pytest.approx(2 * A * np.sin(-1.0) * np.cos(-1.0), rel=1e-12)
    table.write_text("x1,x2,x3\n0.1,0.2,0.3\n1.0,-1.0,2.5\n0.5,0.5,-0.5\n")
    assert fingerprint(cfg, ds.x.values) != ds.attrs["fingerprint"]


@pytest.mark.parametrize(
    ("kind", "small_n", "part_size"), [("sobol", 64, 16), ("random", 64, 16), ("saltelli", 16, 20)]
)
def test_a_grown_design_keeps_its_parts(tmp_path, kind, small_n, part_size):
    """Split by part_size, a Sobol', random or Saltelli design grown to twice its points keeps parts
    0-3: same values, same fingerprint, and merged with the new parts 4-7 it equals the grown design
    (a Saltelli design of 16 base points has 16 x 5 = 80 points)."""
    from pipeline.config.studies import compose_job
    from pipeline.stages.compute import compute, sweep_dataset
    from pipeline.stages.merge import merge_parts

    def job(n, part):
        output = tmp_path / f"{n}-{part}.nc"
        args = [
            f"sweep.kind={kind}",
            f"sweep.n={n}",
            f"sweep.part_size={part_size}",
            f"part={part}",
            f"output='{output}'",
        ]
        return compose_job("ishigami", args), output

    small = [job(small_n, i) for i in range(4)]
    grown = [job(2 * small_n, i) for i in range(8)]
    for cfg, _ in small + grown[4:]:
        compute(cfg, "ishigami")
    again = sweep_dataset(grown[1][0], "ishigami")
    with xr.open_dataset(small[1][1]) as kept:
        xr.testing.assert_equal(kept[["y", "dy_dx1"]], again[["y", "dy_dx1"]])
        assert kept.attrs["fingerprint"] == again.attrs["fingerprint"]
    merge_parts([out for _, out in small + grown[4:]], tmp_path / "merged.nc")
    whole = sweep_dataset(
        compose_job("ishigami", [f"sweep.kind={kind}", f"sweep.n={2 * small_n}", "sweep.part_size=null"])
    )
    with xr.open_dataset(tmp_path / "merged.nc") as merged:
        assert merged.sizes["point"] == 8 * part_size and merged.attrs["parts"] == 8
        np.testing.assert_array_equal(merged.x2.values, whole.x2.values)
        np.testing.assert_array_equal(merged.dy_dx3.values, whole.dy_dx3.values)
        assert f"n: {2 * small_n}" in merged.attrs["config"]
    # Parts of the 64-point design alone still merge as that design; a gap is named.
    merge_parts([out for _, out in small], tmp_path / "small.nc")
    with pytest.raises(MergeError, match=r"parts \[2\] of 4 are missing"):
        merge_parts([small[i][1] for i in (0, 1, 3)], tmp_path / "gap.nc")


@pytest.mark.slow
def test_design_studies_end_to_end_through_snakemake(workflow):
    """The built-in design studies: parts merged along point, summary bounds, plots, verify."""
    import xarray as xr

    from helpers import run
    from pipeline.paths import DESIGN_PLOTS

    result = run(["snakemake", "--cores", "2", "--config", "studies=[ishigami,oscillator_design]"], cwd=workflow)
    assert result.returncode == 0, result.stderr[-3000:]
    with xr.open_dataset(workflow / "outputs/ishigami/summary.nc") as s:
        for p in NU:
            assert value(s[f"dgsm_{p}"]) == pytest.approx(NU[p], rel=0.03)
            assert value(s[f"sobol_total_upper_{p}"]) >= TOTAL[p]
            assert value(s[f"sobol_first_lower_{p}"]) <= FIRST[p] + 0.01
    with xr.open_dataset(workflow / "outputs/oscillator_design/sensitivity.nc") as ds:
        assert (
            ds.sizes["point"] == 512 and ds.K.dims == ("point",) and ds.attrs["distribution_K"] == "loguniform(0.5, 2)"
        )
    for study in ("ishigami", "oscillator_design"):
        assert "overall: PASS" in (workflow / "outputs" / study / "verify.md").read_text()
        assert all((workflow / "outputs" / study / "plots" / name).stat().st_size > 0 for name in DESIGN_PLOTS)

    # Ishigami's Sobol' design grown from 4096 to 8192 points: its two parts are kept, two new ones computed.
    parts = sorted((workflow / "outputs/ishigami/parts").glob("*.nc"))
    before = [p.stat().st_mtime_ns for p in parts]
    grown = ["--config", "studies=[ishigami]", "overrides={ishigami: [sweep.n=8192]}"]
    plan = run(["snakemake", "-n", *grown], cwd=workflow)
    assert plan.returncode == 0, plan.stderr[-3000:]
    jobs = plan.stdout.split("Job stats:")[1].split("total")[0]
    assert re.search(r"^compute\s+2$", jobs, re.M) and "prepare" not in jobs, jobs
    result = run(["snakemake", "--cores", "2", *grown], cwd=workflow)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.stat().st_mtime_ns for p in parts] == before
    with xr.open_dataset(workflow / "outputs/ishigami/sensitivity.nc") as ds:
        assert ds.sizes["point"] == 8192 and ds.attrs["parts"] == 4
        np.testing.assert_array_equal(ds.x1.values, design.sobol(ISHIGAMI, 8192).table[:, 0])
    assert "overall: PASS" in (workflow / "outputs/ishigami/verify.md").read_text()


def test_active_subspace_of_a_ridge_function():
    """y = sin(w . p) varies along w only: the first eigenvector is w, the other eigenvalues are 0,
    the one-dimensional subspace is determined (resampled subspaces lie on it) and the two-dimensional
    one is not; activity scores follow w^2."""
    w = np.array([0.6, 0.8, 0.0])

    def ridge(x, p0, p1, p2):
        return torch.sin(w[0] * p0 + w[1] * p1 + w[2] * p2) * x

    d = design.sobol({f"p{i}": design.uniform(-1, 1) for i in range(3)}, 512, seed=3)
    s = summarise(sensitivity(ridge, torch.ones(1, dtype=torch.float64), d))
    np.testing.assert_allclose(s.active_eigenvectors.values[:, 0], w, atol=1e-12)
    np.testing.assert_allclose(s.active_eigenvalues.values[1:], 0, atol=1e-12)
    low, high = s.active_eigenvalues_interval.values[:, 0]
    assert low <= float(s.active_eigenvalues[0]) <= high
    distance = s.active_subspace_distance.sel(subspace_dimension=1)
    assert float(distance) < 1e-10 and float(s.active_subspace_distance.sel(subspace_dimension=2)) > 0.5
    scores = s.activity_scores.values
    np.testing.assert_allclose(scores / scores.sum(), w**2, atol=1e-12)


def test_active_subspace_along_the_last_output_dim():
    """y(t) = t (a . p) at early times, (b . p) later: the first active direction at each t is a or b."""
    a, b = np.array([1.0, 0.0, 1.0]) / 2**0.5, np.array([0.0, 1.0, 0.0])

    def switching(x, p0, p1, p2):
        p = torch.stack([p0, p1, p2])
        t = torch.arange(4.0, dtype=torch.float64)
        early, late = torch.tensor(a) @ p, torch.tensor(b) @ p
        return x[:, None] * torch.where(t < 2, (t + 1) * early, late)

    d = design.sobol({f"p{i}": design.uniform(-1, 1) for i in range(3)}, 256, seed=4)
    s = summarise(sensitivity(switching, torch.ones(2, dtype=torch.float64), d, output_dims=["t"]))
    vectors = s.active_eigenvectors_per_t.isel(direction=0).values  # (t, parameter)
    np.testing.assert_allclose(vectors[:2], np.tile(a, (2, 1)), atol=1e-12)
    np.testing.assert_allclose(vectors[2:], np.tile(b, (2, 1)), atol=1e-12)


def test_the_summary_of_a_design_adds_up_over_its_parts():
    """Poisson weights are drawn per point index: any range or selection of points gets the same
    weights; a design's sums over blocks of points (not aligned to the weight blocks) add up to the
    whole design's, so its bounds, intervals and active subspace read a block at a time equal the
    ones from all points at once, to round-off."""
    from pipeline.design import bounds
    from pipeline.design.resampling import WEIGHT_BLOCK, poisson_weights, poisson_weights_at

    whole = poisson_weights(3, 0, 3 * WEIGHT_BLOCK + 5)
    cuts = [0, 1000, WEIGHT_BLOCK + 7, 3 * WEIGHT_BLOCK + 5]
    pieces = [poisson_weights(3, a, b - a) for a, b in itertools.pairwise(cuts)]
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), whole)
    picked = np.array([9000, 3, 4100, 4099])
    np.testing.assert_array_equal(poisson_weights_at(3, picked), whole[:, picked])

    t = torch.linspace(0.0, 1.0, 3, dtype=torch.float64)
    d = design.sobol({"C": design.uniform(0.0, 2.0), "K": design.lognormal(0.0, 0.5)}, n=8192, seed=4)
    x = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    ds = sensitivity(lambda x, C, K: torch.sin(C * x * t) + K**2 * x * t + 1e4, x, d, dtype="float64")
    at_once = bounds.design_bounds(ds, ["C", "K"], block_values=10**9)
    blocks = bounds.design_bounds(ds, ["C", "K"], block_values=18_000)  # blocks of 818 points
    assert set(blocks.data_vars) == set(at_once.data_vars)
    for name in blocks.data_vars:
        np.testing.assert_allclose(blocks[name].values, at_once[name].values, rtol=1e-9, atol=1e-12, err_msg=name)
        for key in ("ci_low", "ci_high"):
            if key in at_once[name].attrs:
                assert blocks[name].attrs[key] == pytest.approx(at_once[name].attrs[key], rel=1e-9)
    # the spread of y (offset 1e4) and of dy/dp from merged blocks, without cancellation
    np.testing.assert_allclose(blocks.y_var.values, ds.y.values.var(axis=0, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(blocks.sigma_C.values, ds.dy_dC.values.std(axis=0, ddof=1), rtol=1e-10)


def test_the_active_subspace_bootstrap_weighs_buckets_of_points(monkeypatch):
    """With 6 parameters the gradient outer products' bootstrap weighs buckets of 3 consecutive
    points (one weight each, so that it costs about what the other statistics' does): blocks of 101
    points, which cut buckets, add up to reading all points at once, and the intervals are those of
    weighing each point, within the bootstrap's own noise."""
    from pipeline.design import bounds, sums

    w = np.array([0.6, 0.8, 0.3, 0.0, 0.1, 0.0])

    def model(x, p0, p1, p2, p3, p4, p5):
        p = torch.stack([p0, p1, p2, p3, p4, p5])
        return (torch.sin(torch.tensor(w) @ p) + 0.5 * p2 * p3) * x

    params = [f"p{i}" for i in range(6)]
    d = design.sobol({p: design.uniform(-1, 1) for p in params}, 4096, seed=5)
    ds = sensitivity(model, torch.ones(1, dtype=torch.float64), d)
    assert sums.outer_bucket(6) == 3 and sums.outer_bucket(3) == 1
    at_once = bounds.design_bounds(ds, params, block_values=10**9)
    assert bounds.block_points(ds, params, 34 * 101) == 101
    blocked = bounds.design_bounds(ds, params, block_values=34 * 101)
    for name in ("active_eigenvalues_interval", "active_subspace_distance", "active_eigenvalues"):
        np.testing.assert_allclose(blocked[name].values, at_once[name].values, rtol=1e-9, atol=1e-12, err_msg=name)
    monkeypatch.setattr(sums, "outer_bucket", lambda parameters: 1)
    per_point = bounds.design_bounds(ds, params)
    width = np.diff(at_once.active_eigenvalues_interval.values[:, :2], axis=0)
    reference = np.diff(per_point.active_eigenvalues_interval.values[:, :2], axis=0)
    assert np.all((width / reference > 0.7) & (width / reference < 1.4)), width / reference
    for interval in (at_once, per_point):
        low, high = interval.active_eigenvalues_interval.values[:, 0]
        assert low < float(at_once.active_eigenvalues[0]) < high
