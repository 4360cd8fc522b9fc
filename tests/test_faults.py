"""A workflow killed with SIGKILL resumes to the same results, without recomputing finished parts."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr
import yaml

from conftest import run

pytestmark = pytest.mark.slow

PARTS = 6
CONFIG = {
    "studies": ["oscillator"],
    "overrides": {"oscillator": [f"sweep.num={4 * PARTS}", f"sweep.parts={PARTS}", "model.args.steps=60",
                                 "verify.enabled=false"]},
}


def start(workflow: Path) -> subprocess.Popen:
    (workflow / "test-config.yaml").write_text(yaml.safe_dump(CONFIG))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(["snakemake", "--cores", "2", "--configfile", "test-config.yaml"], cwd=workflow, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def finished_parts(workflow: Path) -> dict[str, int]:
    """Part files Snakemake has recorded as complete (no marker in .snakemake/incomplete), by mtime."""
    parts = workflow / "outputs" / "oscillator" / "parts"
    done = {}
    for path in parts.glob("[!.]*.nc") if parts.exists() else ():  # not a killed writer's hidden temp file
        marker = base64.urlsafe_b64encode(str(path.relative_to(workflow)).encode()).decode()
        with contextlib.suppress(FileNotFoundError):
            mtime = path.stat().st_mtime_ns
            if not (workflow / ".snakemake" / "incomplete" / marker).exists():
                done[path.name] = mtime
    return done


def test_sigkill_then_rerun_gives_the_uninterrupted_result(workflow, tmp_path_factory):
    reference = tmp_path_factory.mktemp("reference")
    for name in os.listdir(workflow):
        os.symlink(workflow / name, reference / name)
    uninterrupted = start(reference)
    assert uninterrupted.wait(timeout=600) == 0

    job = start(workflow)
    deadline = time.monotonic() + 300
    while len(finished_parts(workflow)) < 2 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)  # snakemake and every job it started, mid-way
    job.wait()
    done = finished_parts(workflow)
    assert 2 <= len(done) < PARTS, f"kill came too late or too early: {sorted(done)}"
    # Parts whose job ended but which Snakemake had not yet recorded are rerun: it cannot know they finished.
    leftovers = [p.name for p in (workflow / "outputs" / "oscillator" / "parts").iterdir() if p.name.startswith(".")]
    for name in leftovers:  # a killed writer's temporary file is hidden and never taken for a part
        assert name.endswith(".tmp.nc")

    assert run(["snakemake", "--unlock", "--configfile", "test-config.yaml"], cwd=workflow).returncode == 0
    resumed = run(["snakemake", "--cores", "2", "--rerun-incomplete", "--configfile", "test-config.yaml"],
                  cwd=workflow)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = finished_parts(workflow)
    assert len(after) == PARTS
    assert not [p.name for p in (workflow / "outputs" / "oscillator" / "parts").iterdir() if p.name.startswith(".")]
    assert all(after[name] == mtime for name, mtime in done.items()), "a finished part was recomputed"

    for name in ("sensitivity.nc", "summary.nc"):
        with xr.open_dataset(workflow / "outputs" / "oscillator" / name) as got, \
                xr.open_dataset(reference / "outputs" / "oscillator" / name) as expected:
            xr.testing.assert_identical(got.drop_attrs(), expected.drop_attrs())  # bit for bit


@pytest.mark.parametrize("study", ["composite", "oscillator_grid"])
def test_two_runs_give_identical_datasets(tmp_path, study):
    """Same study twice, in separate processes: identical datasets, bit for bit, but for `history`."""
    out = tmp_path / "out.nc"
    args = [sys.executable, "-m", "pipeline.compute", f"study={study}", "sweep.num=6", f"output={out}",
            "model.args.steps=30" if study.startswith("oscillator") else "sweep.parts=1"]
    runs = []
    for _ in range(2):
        result = run(args, cwd=Path(__file__).resolve().parent.parent)
        assert result.returncode == 0, result.stderr
        with xr.open_dataset(out) as ds:
            runs.append(ds.load())
        out.unlink()
    for ds in runs:
        del ds.attrs["history"]
    xr.testing.assert_identical(*runs)
