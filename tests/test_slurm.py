"""The workflow on a real single-node SLURM (localhost), through profiles/slurm: same results as local.

The fixture starts SLURM with tests/slurm/localhost.sh (Debian's slurm-wlm and munge, installed
if missing). It skips, saying why, only where that cannot work (not root); in CI a failure to
start SLURM fails the test instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import xarray as xr
import yaml

from helpers import ROOT, run

pytestmark = pytest.mark.slow

SCRIPT = ROOT / "tests" / "slurm" / "localhost.sh"
CONFIG = {
    "studies": ["seed_linear", "oscillator"],
    "overrides": {"oscillator": ["sweep.num=8", "sweep.parts=4", "model.args.steps=40"]},
}


@pytest.fixture(scope="module")
def slurm():
    if os.geteuid() != 0:
        pytest.skip("a local SLURM needs root (apt-get, daemons)")
    started = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=600)
    if started.returncode != 0:
        message = f"could not start SLURM on localhost:\n{started.stdout}\n{started.stderr}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    yield
    subprocess.run([str(SCRIPT), "stop"], capture_output=True, timeout=60)


def test_slurm_profile_gives_the_local_results(slurm, workflow, tmp_path):
    shutil.copytree(ROOT / "profiles", workflow / "profiles")
    shutil.copytree(ROOT / "examples", workflow / "examples")
    (workflow / "c.yaml").write_text(yaml.safe_dump(CONFIG))
    local = tmp_path / "local"
    shutil.copytree(workflow, local)

    on_slurm = run(
        [
            "snakemake",
            "--profile",
            "profiles/slurm",
            "--configfile",
            "c.yaml",
            "--slurm-init-seconds-before-status-checks",
            "1",
            # what this node offers, per grouped submission (the profile's 8 cores would not fit)
            "--cores",
            str(os.cpu_count()),
            "--resources",
            "mem_mb=12000",
        ],
        cwd=workflow,
        timeout=600,
    )
    output = on_slurm.stdout + on_slurm.stderr
    assert on_slurm.returncode == 0, on_slurm.stdout[-3000:] + on_slurm.stderr[-3000:]
    # The compute jobs of both studies (seed_linear's and the oscillator's 4 parts) go in one submission.
    stats = output.split("Job stats:")[1].split("total")[0]
    jobs = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, flags=re.M)}
    assert jobs["compute"] >= 5 and "Group job compute" in output
    # the compute jobs go in one grouped submission (+ 1); `all` and the local rules (`current`,
    # `overview`) run on the submitting node
    not_alone = ("compute", "all", "current", "overview")
    submitted = sum(count for rule, count in jobs.items() if rule not in not_alone) + 1
    assert output.count("has been submitted with SLURM jobid") == submitted
    on_laptop = run(["snakemake", "--profile", "profiles/local", "--configfile", "c.yaml"], cwd=local, timeout=600)
    assert on_laptop.returncode == 0, on_laptop.stderr[-3000:]

    for study in CONFIG["studies"]:
        for name in ("sensitivity.nc", "summary.nc"):
            with (
                xr.open_dataset(workflow / "outputs" / study / name) as got,
                xr.open_dataset(local / "outputs" / study / name) as expected,
            ):
                xr.testing.assert_identical(got.drop_attrs(), expected.drop_attrs())
        assert (workflow / "outputs" / study / "plots" / "derivative_vs_param.png").exists()
