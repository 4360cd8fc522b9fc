"""Two-stage studies (sweep.screen) and parameters held fixed (sweep.fixed), against exact G-function values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from pipeline import ConfigError, design, sensitivity, summarise
from pipeline.config.screening import stage_overrides
from pipeline.config.studies import compose_job
from pipeline.config.validate import design_points, part_count
from pipeline.models import Oscillator, sobol_g
from pipeline.stages.build import build_model
from pipeline.stages.screen import selection

A = {"x1": 0.0, "x2": 1.0, "x3": 4.5, "x4": 9.0, "x5": 99.0, "x6": 99.0, "x7": 99.0, "x8": 99.0}


def partial_variances(a: dict[str, float]) -> dict[str, float]:
    return {p: 1 / (3 * (1 + ai) ** 2) for p, ai in a.items()}


def exact_group_total(a: dict[str, float], group: list[str]) -> float:
    """The exact total Sobol' index of ``group`` of the G-function: 1 - V(closed, rest) / V."""
    v = partial_variances(a)
    total = math.prod(1 + vi for vi in v.values()) - 1
    rest = math.prod(1 + vi for p, vi in v.items() if p not in group) - 1
    return 1 - rest / total


def test_screening_keeps_the_top_parameters_and_bounds_what_it_leaves_out():
    cfg = compose_job("sobol_g_screened")
    dists = {p: design.uniform(0, 1) for p in A}
    screening = summarise(
        sensitivity(lambda x, **p: sobol_g(x, A, **p), torch.zeros(1, dtype=torch.float64), design.sobol(dists, 256))
    )
    chosen = selection(screening, cfg)
    assert chosen["parameters"] == ["x1", "x2", "x3"]
    assert chosen["fixed"] == dict.fromkeys(["x4", "x5", "x6", "x7", "x8"], 0.5)  # the medians
    left = list(chosen["fixed"])
    exact = exact_group_total(A, left)
    assert exact <= chosen["left_out_total_at_most"] < 10 * exact, (exact, chosen["left_out_total_at_most"])
    by_mu = selection(screening, compose_job("sobol_g_screened", ["sweep.screen.by=mu_star"]))
    assert by_mu["parameters"] == ["x1", "x2", "x3"] and "left_out_total_at_most" not in by_mu


def test_the_screened_design_gives_the_exact_indices_of_the_reduced_function(tmp_path):
    """Stage 2 as the compute job composes it: three parameters, the others held at 0.5 through the
    model's keyword arguments; its Sobol' indices are those of the 3-parameter G-function."""
    file = tmp_path / "screening.yaml"
    file.write_text(
        yaml.safe_dump({"parameters": ["x1", "x2", "x3"], "fixed": dict.fromkeys(["x4", "x5", "x6", "x7", "x8"], 0.5)})
    )
    cfg = compose_job("sobol_g_screened", [f"screened={file}", "sweep.n=2048"])
    assert list(cfg.sweep.parameters) == ["x1", "x2", "x3"] and cfg.sweep.fixed["x8"] == 0.5
    assert part_count(cfg.sweep) == 1 and cfg.sweep.screen.top is None
    model = build_model(cfg)
    grid = design.saltelli({p: design.uniform(0, 1) for p in cfg.sweep.parameters}, 2048, seed=1)
    s = summarise(sensitivity(model, torch.zeros(1, dtype=torch.float64), grid, method="none"))
    kept = {p: A[p] for p in ("x1", "x2", "x3")}
    v = partial_variances(kept)
    total_v = math.prod(1 + vi for vi in v.values()) - 1
    first = [v[p] / total_v for p in kept]
    total = [exact_group_total(kept, [p]) for p in kept]
    for name, exact in (("sobol_first_aggregated", first), ("sobol_total_aggregated", total)):
        low, high = s[f"{name}_interval"].values
        assert (low <= exact).all() and (np.array(exact) <= high).all(), (name, low, high, exact)


def test_the_screening_stage_is_a_sobol_design_of_every_parameter_with_derivatives():
    cfg = compose_job("sobol_g_screened")
    assert design_points(cfg.sweep) == 1024 * 5  # the 3 kept parameters: n (3 + 2) points
    stage = compose_job("sobol_g_screened", stage_overrides(cfg))
    assert stage.sweep.kind.value == "sobol" and stage.sweep.n == 256 and len(stage.sweep.parameters) == 8
    assert stage.method.name.value == "forward" and stage.sweep.screen.top is None
    assert "screening" in stage.title


def test_fixed_parameters_reach_a_module_through_its_bound_element():
    cfg = compose_job("oscillator_design", ["~sweep.parameters.K", "+sweep.fixed.K=2.0"])
    module = build_model(cfg)
    assert module.stiffness.item() == 2.0 and module.damping.item() == 0.5
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    ds = sensitivity(module, x, design.sobol({"C": design.uniform(0.1, 1.0)}, 4), bind={"C": "damping"})
    reference = Oscillator(steps=100, damping=float(ds.C[0]), stiffness=2.0).double()(x)
    np.testing.assert_allclose(ds.y.isel(point=0).values, reference.detach().numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("study", "overrides", "message"),
    [
        ("sobol_g_screened", ["sweep.screen.top=8"], r"sweep\.screen\.top=8: must be between 1 and 7"),
        ("sobol_g_screened", ["sweep.screen.n=100"], r"sweep\.screen\.n=100: .*power of two"),
        ("sobol_g_screened", ["+sweep.fixed.x1=0.5"], r"sweep\.fixed\.x1=0\.5: x1 is swept"),
        ("ishigami", ["+sweep.fixed.z=0.5"], r"sweep\.fixed\.z: .*ishigami has no argument z"),
        (
            "oscillator_design",
            ["~sweep.parameters.K", "+sweep.fixed.k=2.0"],
            r"sweep\.fixed\.k: .*add it to model\.bind",
        ),
    ],
)
def test_bad_screening_and_fixed_keys_are_named(study, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_model(compose_job(study, overrides))


def test_a_screening_on_a_grid_and_a_screening_file_that_does_not_match_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"sweep\.screen\.top=1: screening is for a sampled design"):
        compose_job("oscillator", ["sweep.screen.top=1"])
    file = tmp_path / "screening.yaml"
    file.write_text(yaml.safe_dump({"parameters": ["x1", "x9"], "fixed": {}}))
    with pytest.raises(ConfigError, match=r"it keeps \['x1', 'x9'\].*rerun the screening stage"):
        compose_job("sobol_g_screened", [f"screened={file}"])
    file.write_text("not: a screening file\n")
    with pytest.raises(ConfigError, match="not a screening file"):
        compose_job("sobol_g_screened", [f"screened={file}"])
    with pytest.raises(ConfigError, match="cannot read it"):
        compose_job("sobol_g_screened", [f"screened={tmp_path / 'missing.yaml'}"])


@pytest.mark.slow
def test_a_two_stage_study_through_snakemake(workflow):
    """The workflow screens first (sobol_g_screened.screen), writes what it keeps, runs the Saltelli
    design of those; a second run has nothing to do; a changed screening reruns the second stage."""
    import xarray as xr

    from helpers import run

    def config(*extra: str) -> list[str]:
        overrides = ", ".join(["sweep.n=256", "sweep.screen.n=128", *extra])
        return ["--config", "studies=[sobol_g_screened]", f"overrides={{sobol_g_screened: [{overrides}]}}"]

    small = config()
    result = run(["snakemake", "--cores", "2", *small], cwd=workflow)
    assert result.returncode == 0, result.stderr[-3000:]
    out = workflow / "outputs" / "sobol_g_screened"
    chosen = yaml.safe_load((out / "screening.yaml").read_text())
    assert chosen["parameters"] == ["x1", "x2", "x3"] and chosen["screening_points"] == 128
    assert "held at 0.5" in (out / "screening.md").read_text()
    with xr.open_dataset(workflow / "outputs" / "sobol_g_screened.screen" / "summary.nc") as s:
        assert "sobol_total_upper_x8_aggregated" in s  # every parameter screened, with derivatives
    with xr.open_dataset(out / "sensitivity.nc") as ds:
        assert ds.attrs["swept_parameters"] == "x1 x2 x3" and ds.sizes["point"] == 256 * 5
        assert ds.attrs["fixed_parameters"].startswith("x4 = 0.5")
    assert "held fixed, not swept: x4 = 0.5" in (out / "headline.md").read_text()
    again = run(["snakemake", "--cores", "2", "-n", *small], cwd=workflow)
    assert "Nothing to be done" in again.stdout + again.stderr
    result = run(["snakemake", "--cores", "2", *config("sweep.screen.top=2")], cwd=workflow)
    assert result.returncode == 0, result.stderr[-3000:]
    with xr.open_dataset(out / "sensitivity.nc") as ds:
        assert ds.attrs["swept_parameters"] == "x1 x2" and ds.sizes["point"] == 256 * 4
