"""The job entry points as a user or Snakemake runs them."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import xarray as xr

from helpers import ROOT, run

pytestmark = pytest.mark.integration  # jobs run as subprocesses: left out of `make unit`


def compute(*args: str, cwd=ROOT):
    return run([sys.executable, "-m", "pipeline.stages.compute", *args], cwd=cwd)


def test_compute_writes_one_part(tmp_path):
    out = tmp_path / "part.nc"
    result = compute("study=seed_linear", "sweep.num=9", "sweep.parts=3", "part=1", f"output={out}")
    assert result.returncode == 0, result.stderr
    with xr.open_dataset(out) as ds:
        np.testing.assert_allclose(ds.C, np.linspace(-5, 5, 9)[3:6])
        np.testing.assert_array_equal(ds.dy_dC.values, np.tile(np.arange(10), (3, 1)))
        assert ds.attrs["study"] == "seed_linear" and ds.attrs["part"] == 1 and ds.attrs["parts"] == 3
        assert "sweep:" in ds.attrs["config"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".part.nc.last-good", "part.nc"]  # no Hydra dirs or logs
    assert not (ROOT / "outputs" / "2026").exists() and not list(ROOT.glob(".hydra"))


@pytest.mark.parametrize(
    "override,message",
    [
        ("model=nope", "Could not find 'model/nope'"),
        ("sweep.num=many", "sweep.num"),
        ("sweep.parts=0", "invalid sweep.parts=0"),
        ("model._target_=nowhere.model", "invalid model._target_='nowhere.model': cannot import it"),
        ('model.bind.C="branch_b.0.bais[1]"', "did you mean 'branch_b.0.bias'?"),
    ],
)
def test_bad_overrides_exit_non_zero_naming_the_key(tmp_path, override, message):
    out = tmp_path / "part.nc"
    result = compute("study=composite", override, f"output={out}")
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_help_lists_the_config_groups():
    result = compute("--help")
    assert result.returncode == 0
    for group in ("model:", "inputs:", "sweep:", "method:", "study:"):
        assert group in result.stdout


def test_nan_policy_raise_fails_the_job_without_output(tmp_path):
    """A user model by `_target_`: log(C x) over x = 0..9, C in {-5, -2.5, 0, 2.5, 5}.

    y is non-finite for C <= 0 (20 + 10) and at x = 0 for C > 0 (2): 32; dy/dC = x / (C x) is
    non-finite at C = 0 (10) and at x = 0 otherwise (4): 14.
    """
    out = tmp_path / "part.nc"
    args = ["study=seed_linear", "model._target_=tests.bad_models.log_model", "sweep.num=5", f"output={out}"]
    failed = compute(*args, "nan_policy=raise")
    assert failed.returncode == 1
    assert (
        "non-finite results: 32 in y, 14 in dy/dC; first at C=-5 (index 0), sample 0 (nan_policy=raise)"
        in failed.stderr
    )
    assert not out.exists()
    warned = compute(*args)
    assert warned.returncode == 0 and out.exists()
    with xr.open_dataset(out) as ds:
        assert ds.attrs["nonfinite_y"] == 32 and ds.attrs["nonfinite_dy_dC"] == 14


def test_reading_stages_and_the_snakefile_start_without_torch():
    """Merge, summarise and plot only read datasets, and the Snakefile only composes configs: none
    imports torch (about a second per job and per snakemake call)."""
    stages = [f"pipeline.stages.{m}" for m in ("merge", "summarise", "plot")]
    config = [f"pipeline.config.{m}" for m in ("schema", "studies", "validate")]
    modules = ", ".join([*stages, *config, "pipeline.storage.provenance", "pipeline.paths"])
    done = run([sys.executable, "-c", f"import sys, {modules}; print('torch' in sys.modules)"], ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_import_pipeline_and_its_api_need_no_hydra():
    """A notebook pays for torch and xarray, not for the command-line layer: ``import pipeline`` loads
    neither torch nor Hydra, and using ``pipeline.sensitivity`` loads torch but still no Hydra."""
    check = (
        "import sys, pipeline; print(sorted(m for m in ('torch', 'hydra', 'omegaconf') if m in sys.modules)); "
        "pipeline.sensitivity; print(sorted(m for m in ('torch', 'hydra', 'omegaconf') if m in sys.modules))"
    )
    done = run([sys.executable, "-c", check], ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "['torch']"], done.stdout


def test_compute_job_imports_scipy_stats_only_for_designs():
    """scipy.stats (0.3 s of imports) is loaded where a design is sampled, not by every compute job."""
    check = "import sys, pipeline.stages.compute; print(any(m.startswith('scipy.stats') for m in sys.modules))"
    done = run([sys.executable, "-c", check], ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
