"""The verify step: tolerances, pass and fail, and the seed-002 variant comparison."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import xarray as xr

from helpers import ROOT, run
from pipeline.config.studies import compose_job
from pipeline.stages.build import build_model
from pipeline.stages.compute import compute
from pipeline.stages.verify import to_markdown, tolerance, verify, verify_file

pytestmark = pytest.mark.integration  # the verify stage, with float64 references: left out of `make unit`


def test_tolerances_follow_dtype_and_the_reference_error():
    assert tolerance("float32") == pytest.approx(np.sqrt(np.finfo(np.float32).eps))
    assert tolerance("float64") == pytest.approx(np.sqrt(np.finfo(np.float64).eps))
    assert tolerance("float64", 2.4e-8) == pytest.approx(2.4e-7)  # differences less accurate than the study
    assert tolerance("float32", 1e-9) == tolerance("float32")


OSCILLATOR = ["sweep.num=6", "model.args.steps=40", f"inputs.args.path={ROOT / 'data' / 'oscillator_initial.npy'}"]


@pytest.fixture
def oscillator_cfg(tmp_path):
    return compose_job("oscillator", [*OSCILLATOR, f"output={tmp_path / 'sensitivity.nc'}"])


@pytest.fixture
def oscillator_result(oscillator_cfg):
    return compute(oscillator_cfg, "oscillator")


def test_verify_passes_on_a_correct_study(oscillator_result, oscillator_cfg):
    report = verify(oscillator_result, oscillator_cfg)
    assert report.attrs["passed"] == 1
    reverse = "forward (float64) vs reverse (float64, 4 random projections)"
    # the study's own method in its own dtype (forward, float64) would be compared with itself: left out
    assert list(report.comparison.values) == [reverse, "forward (float64) vs finite_difference (float64)"]
    assert (report.max_rel_diff < report.tolerance).all()
    assert f"| {reverse} |" in to_markdown(report)


def test_reverse_mode_is_checked_on_projections_that_catch_one_wrong_element(oscillator_result, oscillator_cfg):
    """Reverse mode's cost grows with the outputs: it checks w . dy for random w. One wrong output
    element among all of them still fails; on correct derivatives both sides agree to round-off."""
    from pipeline.stages.verify import PROJECTIONS, _projected_reverse

    broken = oscillator_result.copy(deep=True)
    values = broken.dy_dC.values.copy()
    values[0, 0, 5] *= 1.001  # one element of one point
    broken["dy_dC"] = (broken.dy_dC.dims, values)
    report = verify(broken, oscillator_cfg)
    row = report.sel(comparison="forward (float64) vs reverse (float64, 4 random projections)")
    assert row.passed == 0 and row.max_rel_diff > 1e-6
    model = build_model(oscillator_cfg)
    sub = oscillator_result.isel(C=[0, 5], sample=[0, 1])
    projected, missing = _projected_reverse(model, oscillator_cfg, sub, ["C"], ["C"], ["t"])
    study, reference = projected["C"]
    assert missing == "" and study.shape == (2, PROJECTIONS)
    np.testing.assert_allclose(study, reference, rtol=1e-10)


def verify_cli(path, tmp_path, *overrides):
    return run(
        [
            sys.executable,
            "-m",
            "pipeline.stages.verify",
            str(path),
            "--study",
            "oscillator",
            "--nc",
            str(tmp_path / "v.nc"),
            "--md",
            str(tmp_path / "v.md"),
            "--overrides",
            *overrides,
        ],
        cwd=ROOT,
    )


def test_verify_fails_on_a_wrong_derivative(tmp_path, oscillator_result, oscillator_cfg):
    broken = oscillator_result.copy(deep=True)
    broken["dy_dC"] = broken.dy_dC * (1 + 1e-6)  # 1e-6 relative: far above float64's tolerance
    report = verify(broken, oscillator_cfg)
    assert report.attrs["passed"] == 0 and (report.passed == 0).all()
    path = tmp_path / "broken.nc"
    broken.to_netcdf(path)
    result = verify_cli(path, tmp_path, *OSCILLATOR)
    assert result.returncode == 1
    assert "verification failed" in result.stderr and "exceed their tolerance" in result.stderr
    assert "Traceback" not in result.stderr
    # the table the message names outlives the outputs Snakemake deletes after a failed job
    assert f"(the table: {tmp_path / 'v.failed.md'})" in result.stderr
    (tmp_path / "v.md").unlink()
    assert "overall: FAIL" in (tmp_path / "v.failed.md").read_text()
    oscillator_result.to_netcdf(tmp_path / "ok.nc")
    assert verify_cli(tmp_path / "ok.nc", tmp_path, *OSCILLATOR).returncode == 0
    assert not (tmp_path / "v.failed.md").exists()  # a later pass removes the stale table


CRAFTED = """model:
  _target_: subprocess.Popen
  args: {{args: [touch, {marker}]}}
"""


@pytest.mark.parametrize("edit_fingerprint", [False, True])
def test_a_data_file_never_chooses_code_to_run(tmp_path, oscillator_result, edit_fingerprint):
    """A crafted `config` attr naming subprocess.Popen: verify uses the study's config, so nothing runs."""
    marker = tmp_path / "ran-code"
    crafted = oscillator_result.copy()
    crafted.attrs["config"] = CRAFTED.format(marker=marker)
    if edit_fingerprint:  # an attacker who also rewrites the fingerprint: the file no longer matches the study
        crafted.attrs["fingerprint"] = "0" * 64
    path = tmp_path / "crafted.nc"
    crafted.to_netcdf(path)
    result = verify_cli(path, tmp_path, *OSCILLATOR)
    assert not marker.exists()
    if edit_fingerprint:
        assert result.returncode == 1, result.stdout
        assert "was not computed from this study's config: keys that differ (file -> config): " in result.stderr
        assert "model._target_: subprocess.Popen -> pipeline.models.Oscillator" in result.stderr
        assert not (tmp_path / "v.nc").exists()
    else:  # the numbers match the study's config: verified with the study's own model
        assert result.returncode == 0, result.stderr
        assert "overall: PASS" in (tmp_path / "v.md").read_text()


def test_verify_refuses_data_of_another_config(tmp_path, oscillator_result):
    path = tmp_path / "sensitivity.nc"
    result = verify_cli(path, tmp_path, *OSCILLATOR, "model.args.steps=41")
    assert result.returncode == 1
    assert "keys that differ (file -> config): model.args.steps: 40 -> 41" in result.stderr


@pytest.mark.parametrize("kernel_size,equal_everywhere", [(1, True), (3, False)])
def test_variants_before_and_after_the_convolution(tmp_path, kernel_size, equal_everywhere):
    """Seed 002: kernel 1, allclose; kernel 3, different at the first kept step only."""
    cfg = compose_job(
        "conv_slice",
        [
            f"model.args.kernel_size={kernel_size}",
            "sweep.num=5",
            "sweep.parts=1",
            "dtype=float64",
            f"output={tmp_path / 's.nc'}",
        ],
    )
    compute(cfg, "conv_slice")
    report = verify_file(tmp_path / "s.nc", cfg, tmp_path / "v.nc", tmp_path / "v.md", tmp_path / "agreement.png")
    assert (tmp_path / "agreement.png").read_bytes()[:4] == b"\x89PNG"
    assert report.attrs["passed"] == 1
    rows = report.sel(variant_check=["dy_dC: slice=before vs slice=after", "y: slice=before vs slice=after"])
    assert (rows.variant_allclose == int(equal_everywhere)).all()
    if equal_everywhere:
        assert (rows.variant_max_rel_diff < 1e-12).all() and (rows.variant_differs_at == "nowhere").all()
    else:
        assert (rows.variant_max_rel_diff > 1e-3).all() and (rows.variant_differs_at == "last_step=0").all()
    with xr.open_dataset(tmp_path / "v.nc") as back:
        assert back.attrs["passed"] == 1
    assert "differ at" in (tmp_path / "v.md").read_text()


def test_detach_hides_a_dependence_that_finite_differences_see(tmp_path):
    """Seed 001: after detach() autodiff says 0 (by structure); the value still moves with C."""
    cfg = compose_job("composite_detach", ["sweep.num=5", f"output={tmp_path / 's.nc'}"])
    compute(cfg, "composite_detach")
    report = verify_file(tmp_path / "s.nc", cfg, tmp_path / "v.nc", tmp_path / "v.md")
    assert report.attrs["passed"] == 1
    by_method = {
        str(c).split(" vs ")[1].split(" ")[0]: int(report.sel(comparison=c).hidden_dependence)
        for c in report.comparison.values
    }
    assert by_method["forward"] == 0 and by_method["reverse"] == 0
    assert by_method["finite_difference"] > 0
    assert "hides a real dependence from autodiff" in (tmp_path / "v.md").read_text()


def test_compare_along_a_dim_that_is_not_an_output_is_refused_before_any_reference(tmp_path, oscillator_result):
    from pipeline.errors import ConfigError

    cfg = compose_job("oscillator", [*OSCILLATOR, f"output={tmp_path / 'sensitivity.nc'}", "verify.compare_along=nope"])
    with pytest.raises(ConfigError, match=r"invalid verify.compare_along='nope': need an output dim .*valid: \['t'\]"):
        verify(oscillator_result, cfg)


@pytest.mark.parametrize(("values", "max_points", "checked"), [(2, 100, 8), (5, 20, 20), (1, 20, 1)])
def test_a_design_checks_values_to_the_p_points_at_most_max_points(values, max_points, checked):
    """A design of P parameters is checked at values^P of its points (a grid's count), at most
    verify.max_points: a design of 100 parameters would otherwise check every point, each with
    finite differences of 2 x 100 evaluations."""
    from pipeline.stages.compute import sweep_dataset

    overrides = ["sweep.n=64", "sweep.part_size=null", f"verify.values={values}", f"verify.max_points={max_points}"]
    cfg = compose_job("ishigami", [*overrides, "verify.methods=[finite_difference]"])
    report = verify(sweep_dataset(cfg, "ishigami"), cfg)
    assert report.attrs["checked_points"] == checked and report.attrs["passed"] == 1


@pytest.mark.parametrize(("count", "size"), [(125, 2**20), (125, 64), (8, 64), (1, 64), (7, 7), (7, 8), (120, 160)])
def test_a_designs_checked_points_are_a_few_runs_spread_over_it(count, size):
    """Scattered points would read every stored chunk of every variable (a 100-parameter design of
    2^20 points: the whole 1.5 GB file for 125 points); runs of consecutive points read a few."""
    from pipeline.stages.verify import RUNS, _runs

    picked = _runs(count, size)
    assert len(picked) == min(count, size) and np.all(np.diff(picked) > 0)
    assert picked[0] == 0 and (picked[-1] == size - 1 or count == 1)  # from the first point to the last
    runs = 1 + int(np.sum(np.diff(picked) > 1))
    assert runs <= RUNS or len(picked) < 2 * RUNS


def test_many_comparisons_are_drawn_a_row_per_method_with_the_worst_and_the_failed_named(tmp_path):
    """60 parameters x 2 reference methods: 2 rows (not 120), each bar the worst of its method's
    derivatives, that derivative named, the failed ones listed; the figure stays a few inches tall."""
    from matplotlib.image import imread

    from pipeline.stages.plot import _agreement_rows, plot_agreement

    params = [f"x{i}" for i in range(60)]
    labels = [f"dy_d{p}: forward (float32) vs {m} (float64)" for m in ("reverse", "finite_difference") for p in params]
    rel = np.geomspace(1e-9, 1e-7, 120)
    rel[70] = 0.3  # finite differences at x10: far off
    report = xr.Dataset(
        {
            "max_rel_diff": ("comparison", rel),
            "tolerance": ("comparison", np.full(120, 3.5e-4)),
            "passed": ("comparison", (rel < 3.5e-4).astype(int)),
        },
        coords={"comparison": labels},
        attrs={"study": "many", "checked_points": 125, "checked_samples": 8},
    )
    rows = _agreement_rows(report)
    assert [r.label for r in rows] == [
        "forward (float32) vs reverse (float64)",
        "forward (float32) vs finite_difference (float64)",
    ]
    assert rows[0].passed and rows[0].worst == rel[59] and rows[0].note == "worst dy_dx59"
    assert not rows[1].passed and rows[1].worst == 0.3 and rows[1].note == "worst dy_dx10; FAIL: dy_dx10"
    assert len(rows[1].values) == 60
    image = imread(plot_agreement(report, tmp_path / "agreement.png"))
    assert image.shape[0] < 400  # pixels: 2 rows, where a row per comparison took 6,800
    report = report.isel(comparison=slice(0, 10))  # few comparisons: a row each, as before
    assert [r.label for r in _agreement_rows(report)] == labels[:10]
