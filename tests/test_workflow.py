"""The Snakemake workflow end to end, in a temporary copy, on small versions of the studies."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from helpers import TEST_CONFIG, WORKFLOW_FILES, run
from pipeline.config.studies import study_names
from pipeline.paths import PLOTS

pytestmark = pytest.mark.slow

SMALL = TEST_CONFIG  # .test/config.yaml: seed_linear, and the oscillator with 8 values in 2 parts


def snakemake(workflow, *args, config=SMALL):
    (workflow / "test-config.yaml").write_text(yaml.safe_dump(config))
    return run(["snakemake", "--configfile", "test-config.yaml", *args], cwd=workflow)


def planned_jobs(result) -> dict[str, int]:
    """Job counts by rule from a dry run's 'Job stats' table."""
    table = result.stdout.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M)}


def test_workflow_end_to_end(workflow):
    dry = snakemake(workflow, "-n")
    assert dry.returncode == 0, dry.stderr
    assert planned_jobs(dry) == {
        "all": 1,
        "prepare": 2,
        "compute": 4,
        "merge": 2,
        "current": 2,
        "summarise": 2,
        "plot": 2,
        "verify": 2,
        "overview": 1,
    }
    assert not (workflow / "outputs" / "seed_linear").exists()  # a dry run runs nothing

    result = snakemake(workflow, "--cores", "2")
    assert result.returncode == 0, result.stderr

    out = workflow / "outputs"
    for study in SMALL["studies"]:
        for name in (
            "inputs.nc",
            "sensitivity.nc",
            "summary.nc",
            "verify.nc",
            "verify.md",
            "plots/method_agreement.png",
            *(f"plots/{p}" for p in PLOTS),
        ):
            assert (out / study / name).stat().st_size > 0, name
        assert "overall: PASS" in (out / study / "verify.md").read_text()
        for stage in ("prepare", "compute-0", "merge", "summarise", "plot", "verify"):
            assert (out / "logs" / study / f"{stage}.log").exists()
        assert (out / "benchmarks" / study / "compute-0.tsv").exists()

    with xr.open_dataset(out / "seed_linear" / "sensitivity.nc") as ds:
        assert ds.dy_dC.dims == ("C", "sample") and ds.sizes == {"C": 41, "sample": 10}
        np.testing.assert_array_equal(ds.dy_dC.values, np.tile(np.arange(10.0), (41, 1)))
        np.testing.assert_allclose(ds.C, np.linspace(-5, 5, 41))
        assert ds.attrs["study"] == "seed_linear" and ds.attrs["parts"] == 2
    with xr.open_dataset(out / "oscillator" / "sensitivity.nc") as ds:
        assert ds.dy_dC.dims == ("C", "sample", "t") and ds.sizes["t"] == 51
        assert ds.t.attrs["units"] == "s"
        assert ds.attrs["dtype"] == "float64" and ds.dy_dC.dtype == np.float64
        merged = ds.load()
    with xr.open_mfdataset(
        sorted((out / "oscillator" / "parts").glob("*.nc")),
        combine="by_coords",
        data_vars="minimal",
        coords="minimal",
        compat="override",
    ) as parts:
        xr.testing.assert_equal(parts[["y", "dy_dC"]].load(), merged[["y", "dy_dC"]])

    again = snakemake(workflow, "--cores", "2")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    # Changing one study's config reruns that study only.
    changed = {**SMALL, "overrides": {"oscillator": ["sweep.num=10", "sweep.parts=2", "model.args.steps=50"]}}
    plan = snakemake(workflow, "-n", config=changed)
    assert plan.returncode == 0, plan.stderr
    assert "seed_linear" not in plan.stdout.split("Job stats:")[0].replace("outputs/seed_linear/summary.nc", "")
    assert planned_jobs(plan)["compute"] == 2 and planned_jobs(plan)["prepare"] == 1

    # The report of the last run, without repeating its config.
    report = run(["snakemake", "--report", "outputs/report.html"], cwd=workflow)
    assert report.returncode == 0, report.stderr
    assert (out / "report.html").stat().st_size > 100_000


def test_lint_is_clean(workflow):
    result = snakemake(workflow, "--lint")
    assert result.returncode == 0
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_unknown_study_is_named(workflow):
    result = snakemake(workflow, "-n", config={"studies": ["oscilator"]})
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "unknown studies ['oscilator'] in config 'studies': valid studies are" in output
    assert ", ".join(study_names()) in output


def test_bad_workflow_config_key_is_named(workflow):
    result = snakemake(workflow, "-n", config={"studies": ["seed_linear"], "cores_per_job": 3})
    assert result.returncode != 0
    assert "cores_per_job" in result.stdout + result.stderr


ODD_FOLDER = "out dir ü/$(touch PWNED) it's"
"""An outputs folder with spaces, non-ASCII letters, a quote and shell syntax: every path is quoted."""


def test_no_merge_mode_analyses_the_parts_directly(workflow):
    """`merge: false`: no sensitivity.nc; summary, plots and verify read the parts (docs/how-to/workflow.md)."""
    config = {
        "studies": ["oscillator"],
        "merge": False,
        "outputs": ODD_FOLDER,
        "overrides": {"oscillator": ["sweep.num=9", "sweep.parts=3", "model.args.steps=40"]},
    }
    dry = snakemake(workflow, "-n", config=config)
    assert dry.returncode == 0, dry.stderr
    assert "merge" not in planned_jobs(dry)
    result = snakemake(workflow, "--cores", "2", config=config)
    assert result.returncode == 0, result.stderr
    assert not list(workflow.rglob("PWNED")) and not list(workflow.parent.glob("PWNED"))
    assert sorted(p.name for p in workflow.iterdir() if p.name not in WORKFLOW_FILES) == [
        ".snakemake",
        "out dir ü",
        "test-config.yaml",
    ]  # nothing written beside the outputs folder
    study = workflow / ODD_FOLDER / "oscillator"
    assert not (study / "sensitivity.nc").exists()
    assert "overall: PASS" in (study / "verify.md").read_text()
    assert all((study / "plots" / p).stat().st_size > 0 for p in PLOTS)

    parts = [xr.load_dataset(study / "parts" / f"{i}.nc") for i in range(3)]
    dy = np.concatenate([p.dy_dC.values for p in parts])  # (C, sample, t), in sweep order
    with xr.open_dataset(study / "summary.nc") as summary:
        assert summary.sizes["C"] == 9 and summary.attrs["study"] == "oscillator"
        np.testing.assert_allclose(summary.dy_dC_mean, dy.mean(axis=1), rtol=1e-12)
        np.testing.assert_allclose(summary.dgsm_C, (dy**2).mean(axis=0), rtol=1e-12)

    from pipeline.errors import MergeError
    from pipeline.storage.parts import open_sensitivity

    with open_sensitivity(study / "parts") as ds:
        np.testing.assert_array_equal(ds.dy_dC.values, dy)
        assert ds.attrs["parts"] == 3 and "part" not in ds.attrs
    (study / "parts" / "3.nc").write_bytes((study / "parts" / "0.nc").read_bytes())  # the same part twice
    with pytest.raises(MergeError, match=r"the same part given more than once: part 0 in .*0.nc, .*3.nc"):
        open_sensitivity(study / "parts")
    (study / "parts" / "3.nc").unlink()

    # Fewer parts: the old 2.nc stays in parts/, and the workflow reads only this config's part files.
    fewer = {**config, "overrides": {"oscillator": ["sweep.num=9", "sweep.parts=2", "model.args.steps=40"]}}
    again = snakemake(workflow, "--cores", "2", config=fewer)
    assert again.returncode == 0, again.stderr
    with xr.open_dataset(study / "summary.nc") as summary:
        assert summary.sizes["C"] == 9
    with pytest.raises(
        MergeError,
        match=r"part files of 2 different configs: .*config keys that differ: "
        r"sweep.parts: (3 -> 2|2 -> 3).*holds files of an earlier run",
    ):
        open_sensitivity(study / "parts")  # by hand, the folder is ambiguous: one message says why


@pytest.mark.parametrize(
    "config,message",
    [
        ({"outputs": ""}, "'' should be non-empty"),
        ({"outputs": "out/{study}"}, "does not match '^[^{}]*$'"),
        ({"overrides": {"oscilator": ["sweep.num=3"]}}, "'oscilator' is not a study; did you mean 'oscillator'?"),
        ({"overrides": {"seed_linear": ["sweep.num=abc"]}}, "study seed_linear (overrides ['sweep.num=abc'])"),
        (
            {"overrides": {"seed_linear": ["+sweep.nmu=3"]}},
            "study seed_linear: invalid key: 'sweep.nmu' is not a config",
        ),
    ],
)
def test_workflow_config_mistakes_are_named(workflow, config, message):
    result = snakemake(workflow, "-n", config={"studies": ["seed_linear"], **config})
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_workflow_config_from_the_command_line_and_the_working_folder(workflow):
    """`--config merge=false` as docs/how-to/workflow.md shows it; the copied folder's own conf/ is the one used."""
    study = workflow / "conf" / "study" / "seed_linear.yaml"
    study.write_text(study.read_text().replace("parts: 2", "parts: 3"))
    result = snakemake(
        workflow,
        "-n",
        "--config",
        "merge=false",
        config={"studies": ["seed_linear"], "overrides": {"oscillator": ["sweep.num=9"]}},
    )
    assert result.returncode == 0, result.stderr
    assert planned_jobs(result) == {
        "all": 1,
        "prepare": 1,
        "compute": 3,
        "current": 1,
        "summarise": 1,
        "plot": 1,
        "verify": 1,
        "overview": 1,
    }
    assert "overrides for study 'oscillator' are not used: it is not in 'studies'" in result.stderr


def rendered(chromium: str, page: Path) -> str:
    """The DOM of ``page`` once headless Chromium has run its scripts."""
    result = run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        cwd=page.parent,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
def test_the_report_shows_every_study_s_numbers_in_chromium(workflow, chromium):
    """The HTML report of a run, rendered: an overview page whose table has a row per study with its
    verify verdict and its most important parameter, and each study's headline table as a page."""
    config = {
        "studies": ["seed_linear", "ishigami_sobol"],
        "overrides": {"ishigami_sobol": ["sweep.n=256", "sweep.part_size=2048"]},
    }
    assert snakemake(workflow, "--cores", "2", config=config).returncode == 0
    report = run(["snakemake", "--report", "outputs/report.html"], cwd=workflow)
    assert report.returncode == 0, report.stderr[-2000:]
    app = rendered(chromium, workflow / "outputs" / "report.html")
    assert "overview" in app and "seed_linear" in app and "ishigami_sobol" in app  # the report's categories
    page = rendered(chromium, workflow / "outputs" / "overview.html")
    tables = re.findall(r"<table>.*?</table>", page, flags=re.S)
    overview = tables[0]
    for study in ("seed_linear", "ishigami_sobol"):
        row = re.search(rf"<tr><td><a href=\"#{study}\">{study}</a></td>.*?</tr>", overview, flags=re.S)
        assert row and "PASS" in row[0], (study, overview[:2000])
    assert re.search(r"x1 \(S_T 0\.\d+\)", overview)
    headline = rendered(chromium, workflow / "outputs" / "ishigami_sobol" / "headline.html")
    assert re.search(r"<td>x1</td><td class=\"num\">0\.\d+ \[0\.\d+, 0\.\d+\]</td>", headline), headline[:3000]
    # the report embeds the same pages
    assert "headline.html" in report.stdout + report.stderr + (workflow / "outputs" / "report.html").read_text()
