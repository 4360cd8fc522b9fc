"""A workflow killed with SIGKILL resumes to the same results, without recomputing finished parts."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr
import yaml

from helpers import run

pytestmark = pytest.mark.slow

PARTS = 6
CONFIG = {
    "studies": ["oscillator"],
    "overrides": {
        "oscillator": [f"sweep.num={4 * PARTS}", f"sweep.parts={PARTS}", "model.args.steps=60", "verify.enabled=false"]
    },
}


def start(workflow: Path) -> subprocess.Popen:
    (workflow / "test-config.yaml").write_text(yaml.safe_dump(CONFIG))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(
        ["snakemake", "--cores", "2", "--configfile", "test-config.yaml"],
        cwd=workflow,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


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
        assert name.endswith((".tmp.nc", ".last-good"))

    assert run(["snakemake", "--unlock", "--configfile", "test-config.yaml"], cwd=workflow).returncode == 0
    resumed = run(["snakemake", "--cores", "2", "--rerun-incomplete", "--configfile", "test-config.yaml"], cwd=workflow)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = finished_parts(workflow)
    assert len(after) == PARTS
    assert not [p.name for p in (workflow / "outputs" / "oscillator" / "parts").iterdir() if p.name.endswith(".tmp.nc")]
    assert all(after[name] == mtime for name, mtime in done.items()), "a finished part was recomputed"

    for name in ("sensitivity.nc", "summary.nc"):
        with (
            xr.open_dataset(workflow / "outputs" / "oscillator" / name) as got,
            xr.open_dataset(reference / "outputs" / "oscillator" / name) as expected,
        ):
            xr.testing.assert_identical(got.drop_attrs(), expected.drop_attrs())  # bit for bit


@pytest.mark.parametrize("study", ["composite", "oscillator_grid"])
def test_two_runs_give_identical_datasets(tmp_path, study):
    """Same study twice, in separate processes: identical datasets, bit for bit, but for `history`."""
    out = tmp_path / "out.nc"
    args = [
        sys.executable,
        "-m",
        "pipeline.stages.compute",
        f"study={study}",
        "sweep.num=6",
        f"output={out}",
        "model.args.steps=30" if study.startswith("oscillator") else "sweep.parts=1",
    ]
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


SMALL = {  # verify off: these tests are about files, and each run would recompute it
    "studies": ["oscillator"],
    "overrides": {"oscillator": ["sweep.num=6", "sweep.parts=2", "model.args.steps=30", "verify.enabled=false"]},
}


def snakemake(workflow: Path, *args: str, config: dict = SMALL) -> subprocess.CompletedProcess:
    (workflow / "test-config.yaml").write_text(yaml.safe_dump(config))
    return run(["snakemake", "--cores", "2", "--configfile", "test-config.yaml", *args], cwd=workflow)


def test_parts_of_two_configs_never_merge(workflow):
    """Without Snakemake's records (.snakemake/ deleted, mtime triggers only), a config change plus one
    rebuilt part would mix two sweeps: the merge refuses, naming the files and the keys that differ."""
    assert snakemake(workflow).returncode == 0
    study = workflow / "outputs" / "oscillator"
    shutil.rmtree(workflow / ".snakemake")
    (study / "parts" / "1.nc").unlink()  # one part and the merged file deleted by hand, to rebuild them
    (study / "sensitivity.nc").unlink()
    changed = {**SMALL, "overrides": {"oscillator": ["sweep.num=8", "sweep.parts=2", "model.args.steps=30",
                                                     "verify.enabled=false"]}}  # fmt: skip
    result = snakemake(workflow, "--rerun-triggers", "mtime", config=changed)
    assert result.returncode != 0
    assert "part files of 2 different configs" in result.stderr
    assert f"{Path('outputs/oscillator/parts/0.nc')} | {Path('outputs/oscillator/parts/1.nc')}" in result.stderr
    assert "config keys that differ: sweep.num: 6 -> 8" in result.stderr
    assert not (study / "sensitivity.nc").exists()
    with xr.open_dataset(study / ".sensitivity.nc.last-good") as kept:  # the last good merge is kept
        assert kept.sizes["C"] == 6


@pytest.mark.parametrize("merge", [True, False])
def test_results_of_another_config_are_never_served(workflow, merge):
    """A config change run with --rerun-triggers mtime (or an outputs folder copied from another
    config): Snakemake would find nothing to do; the results are refused before any stage reads them."""
    config = {**SMALL, "merge": merge}
    assert snakemake(workflow, config=config).returncode == 0
    changed = {**config, "overrides": {"oscillator": ["sweep.num=6", "sweep.parts=2", "model.args.steps=20",
                                                      "verify.enabled=false"]}}  # fmt: skip
    result = snakemake(workflow, "--rerun-triggers", "mtime", config=changed)
    assert result.returncode != 0
    assert "keys that differ (file -> config): model.args.steps: 30 -> 20" in result.stderr
    assert "snakemake --forcerun compute --config studies=[oscillator]" in result.stderr
    assert "Traceback" not in result.stderr
    fixed = snakemake(workflow, "--rerun-triggers", "mtime", "--forcerun", "compute", config=changed)
    assert fixed.returncode == 0, fixed.stderr
    with xr.open_dataset(workflow / "outputs" / "oscillator" / "parts" / "1.nc") as part:
        assert yaml.safe_load(part.attrs["config"])["model"]["args"]["steps"] == 20
    assert snakemake(workflow, config=changed).returncode == 0  # and the same config is served again


@pytest.mark.parametrize("merge", [True, False])
def test_corrupt_files_are_moved_aside_and_rebuilt(workflow, merge):
    """A truncated inputs.nc, part, sensitivity.nc or summary.nc: one message naming it, moved aside, and
    the next run rebuilds it, to the same numbers as before."""
    config = {**SMALL, "merge": merge}
    assert snakemake(workflow, config=config).returncode == 0
    study = workflow / "outputs" / "oscillator"
    with xr.open_dataset(study / "summary.nc") as summary:
        expected = summary.load()
    names = ["inputs.nc", "sensitivity.nc", "summary.nc"] if merge else ["parts/1.nc"]  # the others as with merge
    for name in names:
        path = study / name
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])  # truncated in place, as a failing disk or copy leaves it
        failed = snakemake(workflow, config=config)
        assert failed.returncode != 0, name
        assert f"{path.relative_to(workflow)} is unreadable" in failed.stderr, failed.stderr
        assert f"moved it to {path.relative_to(workflow)}.corrupt: rerun snakemake to rebuild it" in failed.stderr
        assert "Traceback" not in failed.stderr
        assert not path.exists() and Path(f"{path}.corrupt").exists()
        rebuilt = snakemake(workflow, config=config)
        assert rebuilt.returncode == 0, rebuilt.stderr
        with xr.open_dataset(study / "summary.nc") as summary:
            xr.testing.assert_identical(summary.drop_attrs(), expected.drop_attrs())


@pytest.fixture
def small_disk(tmp_path):
    """A 40 MiB file system of its own (tmpfs), unmounted afterwards; skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("mounting a small file system needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> None:
    """Fill ``disk`` to the last page."""
    with open(disk / "filler", "wb", buffering=0) as f:
        for block in (2**20, 4096):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * block)


def test_full_disk_keeps_the_last_good_result_and_says_so(workflow, small_disk):
    config = {**SMALL, "outputs": str(small_disk / "outputs")}
    assert snakemake(workflow, config=config).returncode == 0
    study = small_disk / "outputs" / "oscillator"
    before = (study / "sensitivity.nc").read_bytes()
    # Another name for the file's blocks: deleting sensitivity.nc before the rerun frees no space.
    os.link(study / "sensitivity.nc", small_disk / "held")
    fill(small_disk)
    failed = snakemake(workflow, "--forcerun", "merge", config=config)  # Snakemake deletes sensitivity.nc first
    assert failed.returncode != 0
    # The job's log is on the full disk too: the message reaches Snakemake's own output.
    assert f"cannot write {study / 'sensitivity.nc'}: no space left on device" in failed.stderr
    assert f"the last complete version is kept as {study / '.sensitivity.nc.last-good'}" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not (study / "sensitivity.nc").exists()
    assert (study / ".sensitivity.nc.last-good").read_bytes() == before
    assert not [p for p in study.iterdir() if ".tmp" in p.name]

    (small_disk / "filler").unlink()
    (small_disk / "held").unlink()
    again = snakemake(workflow, config=config)
    assert again.returncode == 0, again.stderr
    with xr.open_dataset(study / "sensitivity.nc") as ds, xr.open_dataset(study / ".sensitivity.nc.last-good") as kept:
        xr.testing.assert_identical(ds[["y", "dy_dC"]].load(), kept[["y", "dy_dC"]].load())
