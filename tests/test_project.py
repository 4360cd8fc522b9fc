"""A user's own project folder, run by sensweep installed from a wheel (not this source tree)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT

MODEL = '''
import torch


def decay(x, k):
    """Exponential decay of initial amounts x at times t = 0..4: y = x exp(-k t)."""
    t = torch.arange(5, dtype=x.dtype)
    return x[:, None] * torch.exp(-k * t)


decay.output_dims = ("t",)
'''

STUDY = """# @package _global_
defaults:
  - override /model: custom
  - override /inputs: file
  - override /sweep: linear
  - override /method: forward

title: "Decay of my samples"
dtype: float64
model:
  _target_: my_models.decay
  units: {y: mol, k: s-1, t: s}
inputs:
  args: {path: data/x0.npy}
sweep: {param: k, start: 0.1, stop: 1.0, num: 10}
"""

CONFIG = "studies: [decay]\noutputs: results\nmerge: true\nkeep_parts: true\ncompute_threads: 1\noverrides: {}\n"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """sensweep built as a wheel and installed (not editable) into a folder of its own."""
    tmp = tmp_path_factory.mktemp("installed")
    run = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = tmp / "build"
    subprocess.run([*run, "wheel", "--no-deps", "--no-build-isolation", "-w", build, ROOT], check=True, cwd=tmp)
    wheel = next(build.glob("sensweep-*.whl"))
    subprocess.run([*run, "install", "--no-deps", "--target", tmp / "site", wheel], check=True, cwd=tmp)
    return tmp / "site"


def project(folder: Path) -> Path:
    (folder / "conf" / "study").mkdir(parents=True)
    (folder / "config").mkdir()
    (folder / "data").mkdir()
    (folder / "my_models.py").write_text(MODEL)
    (folder / "conf" / "study" / "decay.yaml").write_text(STUDY)
    (folder / "config" / "config.yaml").write_text(CONFIG)
    np.save(folder / "data" / "x0.npy", np.array([1.0, 2.0, 3.0]))
    return folder


@pytest.mark.slow
def test_a_project_folder_runs_with_the_installed_workflow(installed, tmp_path):
    """The documented command in the user's folder: their study, model and data; results where they
    said; the derivatives exact; an edited model reruns its study."""
    import xarray as xr

    folder = project(tmp_path / "my project")
    env = {**os.environ, "PYTHONPATH": str(installed), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("SENSWEEP_CONF", None)
    where = subprocess.run(
        [sys.executable, "-c", "import pipeline.paths as p; print(p.SNAKEFILE)"],
        env=env,
        cwd=folder,
        text=True,
        capture_output=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(installed)), where.stdout  # not this source tree
    command = [sys.executable, "-m", "pipeline.workflow", "--cores", "2"]
    result = subprocess.run(command, env=env, cwd=folder, text=True, capture_output=True)
    assert result.returncode == 0, result.stderr[-3000:]
    out = folder / "results" / "decay"
    with xr.open_dataset(out / "sensitivity.nc") as ds:
        k, t, x = ds.k.values[:, None, None], np.arange(5)[None, None, :], ds.x.values[None, :, None]
        np.testing.assert_allclose(ds.dy_dk.values, -t * x * np.exp(-k * t), rtol=1e-12, atol=1e-15)
        assert ds.dy_dk.attrs["units"] == "mol s" and ds.attrs["title"] == "Decay of my samples"
    assert "overall: PASS" in (out / "verify.md").read_text()
    assert all(
        (out / "plots" / name).stat().st_size > 0 for name in ("derivative_vs_param.png", "method_agreement.png")
    )
    assert not (folder / "outputs").exists()

    with open(folder / "my_models.py", "a") as f:
        f.write("\n# an edit\n")
    plan = subprocess.run([*command, "-n"], env=env, cwd=folder, text=True, capture_output=True)
    assert plan.returncode == 0 and "compute" in plan.stdout, plan.stdout[-2000:]


def test_the_installed_workflow_lists_a_project_study_beside_its_own(tmp_path, monkeypatch):
    """Hydra's search path: the project's study files before the workflow's; an unknown one names both folders."""
    from pipeline import ConfigError
    from pipeline.config.studies import compose_job, study_names
    from pipeline.paths import PROJECT_ENV, workflow_dir

    folder = project(tmp_path)
    monkeypatch.setenv(PROJECT_ENV, str(folder))
    monkeypatch.syspath_prepend(str(folder))
    assert {"decay", "oscillator"} <= set(study_names())
    cfg = compose_job("decay")
    assert cfg.model._target_ == "my_models.decay" and workflow_dir() == folder.resolve()
    with pytest.raises(
        ConfigError, match=rf"unknown study 'decy'; did you mean 'decay'\?.*{folder / 'conf' / 'study'}"
    ):
        compose_job("decy")
