"""The verify step: tolerances, pass and fail, and the seed-002 variant comparison."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import xarray as xr

from conftest import ROOT, run
from pipeline.compute import compute
from pipeline.config import compose_job
from pipeline.verify import to_markdown, tolerance, verify, verify_file


def test_tolerances_follow_dtype_and_step():
    assert tolerance("float32", "reverse") == pytest.approx(np.sqrt(np.finfo(np.float32).eps))
    assert tolerance("float64", "forward") == pytest.approx(np.sqrt(np.finfo(np.float64).eps))
    eps = np.finfo(np.float64).eps
    assert tolerance("float64", "finite_difference") == pytest.approx(max(np.sqrt(eps), 100 * eps ** (2 / 3)))
    assert tolerance("float32", "finite_difference") == tolerance("float32", "forward")


@pytest.fixture
def oscillator_result(tmp_path):
    cfg = compose_job("oscillator", ["sweep.num=6", "model.args.steps=40", f"output={tmp_path / 'sensitivity.nc'}",
                                     f"inputs.args.path={ROOT / 'data' / 'oscillator_initial.npy'}"])
    return compute(cfg, "oscillator")


def test_verify_passes_on_a_correct_study(oscillator_result):
    report = verify(oscillator_result)
    assert report.attrs["passed"] == 1
    assert list(report.comparison.values) == [f"forward (float64) vs {m} (float64)"
                                              for m in ("forward", "reverse", "finite_difference")]
    assert (report.max_rel_diff < report.tolerance).all()
    assert report.sel(comparison="forward (float64) vs forward (float64)").bitwise_equal == 1
    assert "| forward (float64) vs reverse (float64) |" in to_markdown(report)


def test_verify_fails_on_a_wrong_derivative(tmp_path, oscillator_result):
    broken = oscillator_result.copy(deep=True)
    broken["dy_dC"] = broken.dy_dC * (1 + 1e-6)  # 1e-6 relative: far above float64's tolerance
    report = verify(broken)
    assert report.attrs["passed"] == 0 and (report.passed == 0).all()
    path = tmp_path / "broken.nc"
    broken.to_netcdf(path)
    result = run([sys.executable, "-m", "pipeline.verify", str(path), str(tmp_path / "v.nc"), str(tmp_path / "v.md")],
                 cwd=ROOT)
    assert result.returncode == 1
    assert "verification failed" in result.stderr and "exceed their tolerance" in result.stderr


@pytest.mark.parametrize("kernel_size,equal_everywhere", [(1, True), (3, False)])
def test_variants_before_and_after_the_convolution(tmp_path, kernel_size, equal_everywhere):
    """Seed 002: kernel 1, allclose; kernel 3, different at the first kept step only."""
    cfg = compose_job("conv_slice", [f"model.args.kernel_size={kernel_size}", "sweep.num=5", "sweep.parts=1",
                                     "dtype=float64", f"output={tmp_path / 's.nc'}"])
    compute(cfg, "conv_slice")
    report = verify_file(tmp_path / "s.nc", tmp_path / "v.nc", tmp_path / "v.md", tmp_path / "agreement.png")
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
    report = verify_file(tmp_path / "s.nc", tmp_path / "v.nc", tmp_path / "v.md")
    assert report.attrs["passed"] == 1
    by_method = {str(c).split(" vs ")[1].split(" ")[0]: int(report.sel(comparison=c).hidden_dependence)
                 for c in report.comparison.values}
    assert by_method["forward"] == 0 and by_method["reverse"] == 0
    assert by_method["finite_difference"] > 0
    assert "hides a real dependence from autodiff" in (tmp_path / "v.md").read_text()
