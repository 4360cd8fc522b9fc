"""Every study composes and validates; bad values fail before compute, naming the key."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import ConfigCompositionException

from pipeline.config.schema import DESIGN_KINDS
from pipeline.config.studies import compose_job, study_names
from pipeline.design.sweep import part_bounds, part_grid, sweep_design, sweep_values
from pipeline.errors import ConfigError
from pipeline.stages.build import build_inputs, build_model

STUDIES = study_names()


def test_the_four_seed_studies_exist():
    assert {"seed_linear", "composite", "conv_slice", "oscillator"} <= set(STUDIES)


@pytest.mark.parametrize("study", STUDIES)
def test_every_study_composes_and_builds(study):
    cfg = compose_job(study)
    model = build_model(cfg)
    x = build_inputs(cfg)
    assert x.dim() >= 1 and x.shape[0] >= 1 and torch.isfinite(x).all()
    assert callable(model)
    if cfg.sweep.kind in DESIGN_KINDS:  # a sampled design: its points, enough for its parts
        design = sweep_design(cfg.sweep)
        assert len(design) >= cfg.sweep.parts and np.isfinite(design.table).all()
        return
    values = sweep_values(cfg.sweep)
    assert len(values) >= cfg.sweep.parts and np.all(np.diff(values) > 0)


def test_study_overrides_run_wide_defaults():
    assert compose_job("oscillator").dtype.value == "float64"
    assert compose_job("oscillator", ["dtype=float32"]).dtype.value == "float32"
    assert compose_job("seed_linear").dtype.value == "float32"


@pytest.mark.parametrize(
    "overrides,error,message",
    [
        (["sweep.num=abc"], ConfigError, "sweep.num"),
        (["sweep.nmu=3"], ConfigError, "sweep.nmu"),
        (["sweep.kind=cubic"], ConfigError, "linear, log, list"),
        (["dtype=float16"], ConfigError, "float32, float64"),
        (["model=nope"], ConfigError, "seed_linear"),
        (["sweep.start=2", "sweep.stop=1"], ConfigError, "sweep.stop=1.0: must be greater than sweep.start=2.0"),
        (["sweep.num=0"], ConfigError, "sweep.num=0"),
        (["sweep=log", "sweep.start=0"], ConfigError, "a log sweep needs start > 0"),
        (["sweep=list", "sweep.values=[]"], ConfigError, "sweep.values"),
        (["sweep=list", "sweep.values=[1,nan]"], ConfigError, "every value must be finite"),
        (["sweep.parts=500"], ConfigError, "sweep.parts=500: must be between 1 and the number of values"),
        (["part=7"], ConfigError, "part=7"),
        (["device=gpu"], ConfigError, "device='gpu': valid: auto, cpu, cuda, cuda:<index>"),
        (["method.chunk_size=0"], ConfigError, "method.chunk_size=0"),
        (["sweep.param=1C"], ConfigError, "sweep.param"),
    ],
)
def test_bad_values_are_named(overrides, error, message):
    with pytest.raises(error) as err:
        compose_job("seed_linear", overrides)
    text = str(err.value) + str(getattr(err.value, "__cause__", ""))
    assert message in text


def test_unknown_study_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown study .nope.: valid studies are composite, composite_conditional"):
        compose_job("nope")


def test_model_and_inputs_args_are_checked_against_signatures():
    with pytest.raises(ConfigError, match=r"model.args.hiden: .*takes .*hidden"):
        build_model(compose_job("composite", ["+model.args.hiden=3"]))
    with pytest.raises(ConfigError, match=r"inputs.args.size: .*takes num"):
        build_inputs(compose_job("seed_linear", ["+inputs.args.size=3"]))
    with pytest.raises(ConfigError, match=r"model._target_='pipeline.models.nope': cannot import it"):
        build_model(compose_job("seed_linear", ["model._target_=pipeline.models.nope"]))


def test_missing_input_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("inputs.args.path='missing.npy': no such file")):
        build_inputs(compose_job("oscillator", ["inputs.args.path=missing.npy"]))
    np.save(tmp_path / "bad.npy", np.array([1.0, np.inf]))
    with pytest.raises(ConfigError, match="1 non-finite values"):
        build_inputs(compose_job("oscillator", [f"inputs.args.path={tmp_path / 'bad.npy'}"]))


def test_typed_schema_rejects_unknown_top_level_key():
    with pytest.raises(ConfigError, match=r"study seed_linear .*Key 'devise' not in 'JobConfig'") as err:
        compose_job("seed_linear", ["devise=cpu"])
    assert isinstance(err.value.__cause__, ConfigCompositionException)
    with pytest.raises(ConfigError, match=r"'devise' is not a config key \(did you mean device\?"):
        compose_job("seed_linear", ["+devise=cpu"])


def test_sweep_kinds():
    cfg = compose_job("seed_linear", ["sweep.start=-1", "sweep.stop=1", "sweep.num=5"])
    np.testing.assert_array_equal(sweep_values(cfg.sweep), [-1, -0.5, 0, 0.5, 1])
    cfg = compose_job("seed_linear", ["sweep=log", "sweep.start=0.01", "sweep.stop=100", "sweep.num=5"])
    np.testing.assert_allclose(sweep_values(cfg.sweep), [0.01, 0.1, 1, 10, 100])
    cfg = compose_job("seed_linear", ["sweep=list", "sweep.values=[3,-1,2]"])
    np.testing.assert_array_equal(sweep_values(cfg.sweep), [-1, 2, 3])
    with pytest.raises(ConfigError, match="distinct"):
        sweep_values(compose_job("seed_linear", ["sweep=list", "sweep.values=[1,1]"]).sweep)


@pytest.mark.parametrize("count,parts", [(10, 1), (10, 3), (41, 2), (7, 7), (100, 8)])
def test_parts_cover_every_value_once(count, parts):
    bounds = [part_bounds(count, parts, p) for p in range(parts)]
    assert bounds[0][0] == 0 and bounds[-1][1] == count
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in itertools.pairwise(bounds))
    cfg = compose_job("seed_linear", [f"sweep.num={count}", f"sweep.parts={parts}"])
    joined = np.concatenate([part_grid(cfg.sweep, p)["C"] for p in range(parts)])
    np.testing.assert_array_equal(joined, part_grid(cfg.sweep, None)["C"])


def test_config_reference_is_up_to_date():
    """docs/reference/config.md is generated from the structured configs: `python -m pipeline.config`."""
    from pipeline.config.reference import reference_markdown

    assert (
        Path(__file__).resolve().parent.parent / "docs" / "reference" / "config.md"
    ).read_text() == reference_markdown()


def test_a_custom_module_takes_bind_from_the_command_line():
    from pipeline.stages.compute import sweep_dataset

    overrides = ["model=custom", "model._target_=pipeline.models.Composite", '+model.bind.C="branch_b.0.bias[1]"',
                 "inputs=random", "inputs.args.shape=[4]", "sweep.num=3"]  # fmt: skip
    cfg = compose_job("seed_linear", overrides)
    assert dict(cfg.model.bind) == {"C": "branch_b.0.bias[1]"}
    ds = sweep_dataset(cfg, "custom")
    assert ds.attrs["bound_to"] == "C=branch_b.0.bias[1]" and ds.dy_dC.sel(output="b1").mean() != 0


def test_conf_folder_comes_from_the_environment_or_the_working_folder(tmp_path, monkeypatch):
    from pipeline.paths import CONF_ENV, PACKAGE_CONF_DIR, conf_dir

    monkeypatch.delenv(CONF_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert conf_dir() == PACKAGE_CONF_DIR  # no conf/ here: the package's
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "job.yaml").write_text("{}")
    assert conf_dir() == tmp_path / "conf"  # the working folder's own
    monkeypatch.setenv(CONF_ENV, str(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError, match=r"invalid SENSWEEP_CONF=.*elsewhere.*no job.yaml in that folder"):
        conf_dir()


@pytest.mark.parametrize(
    "text", ["plain", "a folder/with space", "it's", "back\\slash\\", "$(rm -rf x) 'q' \\'", "a\\\\'b\\"]
)
def test_a_quoted_value_is_one_hydra_value_that_reads_back_unchanged(text):
    """Paths and titles go into Hydra overrides through one quoting (pipeline.config.hydratext)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from pipeline.config.hydratext import quoted

    (override,) = OverridesParser.create().parse_overrides([f"title={quoted(text)}"])
    assert override.value() == text
