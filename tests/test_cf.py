"""Every file the workflow writes passes the IOOS compliance checker for CF-1.10 (offline)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from helpers import ROOT, run
from pipeline.config.studies import compose_job
from pipeline.stages.compute import compute
from pipeline.stages.summarise import summarise_file
from pipeline.stages.verify import verify_file

pytestmark = pytest.mark.integration  # the CF compliance checker on every stage's files: left out of `make unit`

CHECKER = shutil.which("compliance-checker", path=str(Path(sys.executable).parent))


OSCILLATOR = ["model.args.steps=20", f"inputs.args.path={ROOT / 'data' / 'oscillator_initial.npy'}"]
SMALL = {
    "oscillator": OSCILLATOR,
    "oscillator_grid": [*OSCILLATOR, "sweep.grid.K.num=2"],
    "composite": [],
    "projectile": [],  # several named outputs
}


@pytest.mark.skipif(CHECKER is None, reason="compliance-checker is not installed (make setup installs it)")
@pytest.mark.parametrize("study", list(SMALL))
def test_outputs_pass_cf_1_10(tmp_path, study):
    size = ["sweep.n=16"] if study == "projectile" else ["sweep.num=6"]
    cfg = compose_job(study, [*size, "sweep.parts=1", *SMALL[study], f"output={tmp_path / 'sensitivity.nc'}"])
    ds = compute(cfg, study)
    assert ds.attrs["snakemake_version"]
    assert "git_commit" in ds.attrs or not (ROOT / ".git").exists()
    summarise_file(tmp_path / "sensitivity.nc", tmp_path / "summary.nc")
    verify_file(tmp_path / "sensitivity.nc", cfg, tmp_path / "verify.nc", tmp_path / "verify.md")
    for name in ("sensitivity.nc", "summary.nc", "verify.nc"):
        result = run([CHECKER, "--test=cf:1.10", str(tmp_path / name)], cwd=tmp_path)
        assert "All tests passed!" in result.stdout, f"{name}:\n{result.stdout}"


def test_units_are_written_the_cf_way():
    """Derivatives in units(y) / units(C) as one UDUNITS product, powers combined; anything that is
    not a plain product kept whole in parentheses; counts dimensionless."""
    from pipeline.storage.units import power, ratio

    assert ratio("m", "s-1") == "m s" and ratio("m", "s-2") == "m s2" and ratio("K", "m") == "K m-1"
    assert ratio("m", "1") == "m" and ratio("1", "s") == "s-1" and ratio("m s-1", "m") == "s-1"
    assert ratio("m/s", "s") == "(m/s)/(s)" and power("m s-1", 2) == "m2 s-2" and power("m", 1) == "m"


def test_design_measures_and_second_derivatives_carry_units():
    """Indices and bounds are fractions of a variance ('1'), variances units(y)^2, the DGSM
    units(dy/dv)^2 (dy/d ln p has y's units), d2y/dC2 units(y) / units(C)^2."""
    import torch

    from pipeline import design, sensitivity, summarise

    units = {"y": "m", "C": "s-1", "K": "s-2"}
    d = design.saltelli({"C": design.uniform(0.1, 1.0), "K": design.loguniform(0.5, 2.0)}, 64)
    s = summarise(sensitivity(lambda x, C, K: x * C * K, torch.ones(2, dtype=torch.float64), d, units=units))
    assert s.sobol_total.attrs["units"] == s.sobol_total_upper_C.attrs["units"] == "1"
    assert s.y_var.attrs["units"] == "m2" and s.dgsm_C.attrs["units"] == "m2 s2" and s.dgsm_K.attrs["units"] == "m2"
    grid = sensitivity(
        lambda x, C: x * C**2, torch.ones(2, dtype=torch.float64), {"C": [1.0, 2.0]}, order=2, units=units
    )
    assert grid.d2y_dC2.attrs["units"] == "m s2"


def test_a_state_of_mixed_units_gets_a_unit_per_component(tmp_path):
    """The oscillator's x holds a position (m) and a velocity (m s-1): no single, wrong `units`, but one
    per state component; a mapping that does not name the components is refused, naming them."""
    from pipeline import ConfigError

    extra = [
        "sweep.num=3",
        "sweep.parts=1",
        "model.args.steps=5",
        f"inputs.args.path={ROOT / 'data' / 'oscillator_initial.npy'}",
    ]
    cfg = compose_job("oscillator", [*extra, f"output={tmp_path / 'sensitivity.nc'}"])
    ds = compute(cfg, "oscillator")
    assert "units" not in ds.x.attrs and ds.x.attrs["units_by_state"] == "position: m; velocity: m s-1"
    assert ds.y.attrs["units"] == "m" and ds.dy_dC.attrs["units"] == "m s"
    import torch

    from pipeline import sensitivity
    from pipeline.models import Oscillator

    x = torch.tensor([[1.0, 0.0]])
    with pytest.raises(ConfigError, match=r"names each coordinate of x's last dim 'state' \(position, velocity\)"):
        sensitivity(Oscillator(steps=3), x, {"C": [0.5]}, bind={"C": "damping"}, units={"x": {"pos": "m"}})
