"""Several inputs (a dict or tuple of tensors), integer inputs kept as integers, through the API and the workflow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from pipeline import sensitivity
from pipeline.config.studies import compose_job
from pipeline.errors import ConfigError
from pipeline.inputs import input_from_dataset
from zoo import TokenModel


def tokens_and_scale(samples: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "tokens": torch.randint(0, 20, (samples, 7), generator=g),
        "scale": torch.rand(samples, generator=g, dtype=torch.float64) + 0.5,
    }


def test_dict_inputs_with_integer_tokens_through_embedding():
    torch.manual_seed(0)
    model = TokenModel().double()
    x = tokens_and_scale()
    bind = {"C": "head.weight[1,2]"}
    ds = sensitivity(model, x, {"C": [-0.5, 0.5]}, bind=bind, dtype="float64")
    assert ds.attrs["method"] == "forward" and ds.attrs["input_structure"] == "dict"
    assert ds.x_tokens.dtype == np.int64 and ds.x_scale.dtype == np.float64
    assert ds.x_tokens.dims == ("sample", "tokens_dim1")
    np.testing.assert_array_equal(ds.x_tokens.values, x["tokens"].numpy())
    reference = sensitivity(model, x, {"C": [-0.5, 0.5]}, bind=bind, method="finite_difference_per_point")
    np.testing.assert_allclose(ds.dy_dC.values, reference.dy_dC.values, rtol=1e-8, atol=1e-12)
    rebuilt = input_from_dataset(ds)
    assert set(rebuilt) == {"tokens", "scale"} and torch.equal(rebuilt["tokens"], x["tokens"])


def test_float32_run_keeps_integer_inputs():
    torch.manual_seed(0)
    x = tokens_and_scale()
    ds = sensitivity(TokenModel(), x, {"C": [0.5]}, bind={"C": "head.bias[0]"}, dtype="float32")
    assert ds.x_tokens.dtype == np.int64 and ds.x_scale.dtype == np.float32


def test_tuple_inputs_and_one_integer_tensor():
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 30.0])
    ds = sensitivity(lambda x, C: C * x[0] + x[1], (a, b), {"C": [2.0]})
    np.testing.assert_array_equal(ds.dy_dC.values[0], a.numpy())
    assert ds.attrs["input_structure"] == "tuple" and set(ds.data_vars) >= {"x_0", "x_1"}
    assert isinstance(input_from_dataset(ds), tuple)
    ints = sensitivity(lambda x, C: C * x, torch.arange(4), {"C": [1.5]})
    assert ints.x.dtype == np.int64
    np.testing.assert_array_equal(ints.dy_dC.values[0], np.arange(4.0))


@pytest.mark.parametrize(
    "x,message",
    [
        ({"a": torch.ones(3), "b": torch.ones(4)}, r"different numbers of samples .*x_a: 3, x_b: 4"),
        ({"a": torch.ones(3, 0)}, r"invalid x_a of shape \(3, 0\): empty"),
        ({}, "an empty dict"),
        ({"not a name": torch.ones(2)}, "must be names"),
    ],
)
def test_bad_input_trees_are_named(x, message):
    with pytest.raises(ConfigError, match=message):
        sensitivity(lambda x, C: C * next(iter(x.values())), x, {"C": [1.0]})


def test_workflow_reads_several_input_variables(tmp_path):
    """A NetCDF file of tokens and scales: inputs=file with inputs.args.variables, through prepare,
    compute (reading prepare's file) and verify."""
    from pipeline.stages.compute import compute
    from pipeline.stages.prepare import prepare
    from pipeline.stages.verify import verify

    x = tokens_and_scale(6)
    data = tmp_path / "tokens.nc"
    xr.Dataset(
        {name: (("sample", *(["position"] if t.dim() > 1 else [])), t.numpy()) for name, t in x.items()}
    ).to_netcdf(data)
    overrides = [
        "model=custom",
        "model._target_=tests.zoo.TokenModel",
        '+model.bind.C="head.weight[0,1]"',
        "inputs=file",
        f"inputs.args.path={data}",
        "inputs.args.variables=[tokens,scale]",
        "method=auto",
        "dtype=float64",
        "sweep.num=3",
        "sweep.parts=1",
    ]
    prepared = prepare(compose_job("seed_linear", [*overrides, f"output={tmp_path / 'inputs.nc'}"]), "seed_linear")
    assert prepared.x_tokens.dtype == np.int64
    cfg = compose_job(
        "seed_linear", [*overrides, f"inputs_file={tmp_path / 'inputs.nc'}", f"output={tmp_path / 'sensitivity.nc'}"]
    )
    ds = compute(cfg, "seed_linear")
    with xr.open_dataset(tmp_path / "sensitivity.nc") as stored:
        np.testing.assert_array_equal(stored.x_tokens.values, x["tokens"].numpy())
        assert stored.x_tokens.dtype == np.int64
    assert verify(ds, cfg).attrs["passed"] == 1


TOKENS_STUDY = """# @package _global_
defaults:
  - override /model: custom
  - override /inputs: file
  - override /sweep: linear
title: "Token model: one read-out weight"
model:
  _target_: my_models.TokenModel
  bind: {C: "head.weight[0,1]"}
inputs:
  args: {path: data/tokens.nc, variables: [tokens, scale]}
sweep: {start: -1.0, stop: 1.0, num: 6, parts: 2}
"""


@pytest.mark.slow
def test_several_inputs_end_to_end_through_snakemake(workflow):
    """Integer tokens and float scales from one NetCDF file, a user's Embedding model, two parts,
    merged, summarised, plotted and verified."""
    import shutil
    from pathlib import Path

    from helpers import run

    shutil.copy(Path(__file__).with_name("zoo.py"), workflow / "my_models.py")
    x = tokens_and_scale(8)
    xr.Dataset(
        {"tokens": (("sample", "position"), x["tokens"].numpy()), "scale": ("sample", x["scale"].numpy())}
    ).to_netcdf(workflow / "data" / "tokens.nc")
    (workflow / "conf" / "study" / "tokens.yaml").write_text(TOKENS_STUDY)
    result = run(["snakemake", "--cores", "2", "--config", "studies=[tokens]"], cwd=workflow)
    assert result.returncode == 0, result.stderr[-3000:]
    out = workflow / "outputs" / "tokens"
    with xr.open_dataset(out / "sensitivity.nc") as ds:
        assert ds.x_tokens.dtype == np.int64 and ds.sizes["C"] == 6
        np.testing.assert_array_equal(ds.x_tokens.values, x["tokens"].numpy())
    assert "overall: PASS" in (out / "verify.md").read_text()
    assert (out / "summary.nc").is_file() and any((out / "plots").glob("*.png"))
