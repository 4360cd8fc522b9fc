"""Trained weights (model.weights), factories, the seeded-initialisation note, a custom model's title."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from pipeline import sensitivity
from pipeline.config.studies import compose_job
from pipeline.errors import ConfigError
from pipeline.models import Composite
from pipeline.stages.build import build_model
from pipeline.stages.compute import sweep_dataset
from pipeline.storage.provenance import fingerprint
from zoo import Recurrent

COMPOSITE = ["sweep.num=3", "sweep.parts=1", "verify.enabled=false"]


@pytest.fixture
def trained(tmp_path):
    """A Composite whose weights differ from its seeded initialisation, saved as a state dict."""
    torch.manual_seed(123)
    model = Composite()
    path = tmp_path / "trained.pt"
    torch.save(model.state_dict(), path)
    return model, path


def test_weights_are_loaded_and_change_the_result(trained, caplog):
    model, path = trained
    cfg = compose_job("composite", [*COMPOSITE, f"model.weights={path}"])
    with caplog.at_level(logging.INFO, logger="sensweep.build"):
        ds = sweep_dataset(cfg, "composite")
    assert "weights loaded from" in caplog.text
    x = torch.from_numpy(ds.x.values)
    grid = {"C": ds.C.values}
    expected = sensitivity(model, x, grid, bind=dict(cfg.model.bind), dtype=cfg.dtype.value)
    np.testing.assert_array_equal(ds.dy_dC.values, expected.dy_dC.values)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sensweep.build"):
        seeded = sweep_dataset(compose_job("composite", COMPOSITE), "composite")
    assert "weights are the seeded initialisation (seed=0)" in caplog.text
    assert not np.array_equal(seeded.dy_dC.values, ds.dy_dC.values)


def test_weights_file_enters_the_fingerprint(trained, tmp_path):
    model, path = trained
    cfg = compose_job("composite", [*COMPOSITE, f"model.weights={path}"])
    x = np.zeros((2, 4))
    before = fingerprint(cfg, x)
    state = model.state_dict()
    state["encoder.0.bias"] += 1
    torch.save(state, path)
    assert fingerprint(cfg, x) != before  # same path, new weights: parts of both never merge


def test_weights_that_do_not_fit_name_the_keys(trained, tmp_path):
    model, _ = trained
    state = model.state_dict()
    del state["encoder.0.bias"]
    state["decoder.weight"] = torch.zeros(2)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    cfg = compose_job("composite", [*COMPOSITE, f"model.weights={bad}"])
    with pytest.raises(ConfigError, match=r"missing keys: encoder\.0\.bias; unexpected keys: decoder\.weight"):
        build_model(cfg)
    with pytest.raises(ConfigError, match=r"invalid model.weights='nowhere.pt': no such file"):
        build_model(compose_job("composite", [*COMPOSITE, "model.weights=nowhere.pt"]))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read a state dict"):
        build_model(compose_job("composite", [*COMPOSITE, f"model.weights={tmp_path / 'junk.pt'}"]))


def test_a_factory_with_arguments_builds_the_model(tmp_path):
    torch.manual_seed(5)
    module = Recurrent()
    torch.save(module.state_dict(), tmp_path / "rnn.pt")
    cfg = compose_job(
        "seed_linear",
        [
            "model=custom",
            "model._target_=tests.zoo.load_recurrent",
            f"+model.args.checkpoint={tmp_path / 'rnn.pt'}",
            '+model.bind.C="head.bias[0]"',
            "method=auto",
        ],
    )
    built = build_model(cfg)
    assert type(built).__name__ == "Recurrent"  # tests.zoo.Recurrent: the module imported as zoo is another
    assert torch.equal(built.rnn.weight_hh_l0, module.rnn.weight_hh_l0)


def test_a_swapped_model_does_not_take_the_studys_title():
    overrides = ["model=custom", "model._target_=tests.zoo.offset_linear", "method=auto", "sweep.num=3"]
    ds = sweep_dataset(compose_job("seed_linear", overrides), "seed_linear")
    assert ds.attrs["title"] == "tests.zoo.offset_linear (seed_linear sweep)"
    ds = sweep_dataset(compose_job("seed_linear", [*overrides, "title=Mine"]), "seed_linear")
    assert ds.attrs["title"] == "Mine"
    assert sweep_dataset(compose_job("seed_linear", ["sweep.num=3"]), "seed_linear").attrs["title"] == (
        "Seed linear: y = C x"
    )
