"""No silent zeros: a dependence autodiff cannot see is reported, and connectivity never contradicts
the derivatives (an output with a non-zero derivative anywhere in the sweep is connected)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline import sensitivity
from pipeline.errors import DerivativeError
from pipeline.models import Composite


@pytest.fixture
def batchnorm():
    torch.manual_seed(0)
    return torch.nn.BatchNorm1d(3).eval(), torch.randn(20, 3, dtype=torch.float64)


def test_a_buffer_bound_as_the_parameter_is_a_hidden_dependence(batchnorm):
    """BatchNorm's running_mean: y = (x - C) / sqrt(var + eps) moves with C, forward AD says 0."""
    bn, x = batchnorm
    values = [-1.0, 0.0, 1.0]
    with pytest.warns(RuntimeWarning, match=r"20 outputs move with C \(finite differences see \|dy/dC\| up to 1\) "
                                            r"where autodiff gives exactly 0"):  # fmt: skip
        ds = sensitivity(bn, x, {"C": values}, bind={"C": "running_mean[0]"}, dtype="float64")
    assert ds.attrs["hidden_dependence_dy_dC"] == 20  # feature 0 of every sample
    expected = -1 / np.sqrt(1 + bn.eps)  # what the derivative is: d/dC of (x0 - C) / sqrt(1 + eps)
    assert (ds.dy_dC.values == 0).all() and expected != 0
    with pytest.raises(DerivativeError, match=r"hidden_policy=raise"):
        sensitivity(bn, x, {"C": values}, bind={"C": "running_mean[0]"}, dtype="float64", hidden_policy="raise")


def test_a_parameter_autodiff_sees_raises_no_alarm(batchnorm, recwarn):
    bn, x = batchnorm
    ds = sensitivity(bn, x, {"C": [0.5, 1.0, 2.0]}, bind={"C": "weight[0]"}, dtype="float64")
    assert ds.attrs["hidden_dependence_dy_dC"] == 0
    assert not [w for w in recwarn if "move with" in str(w.message)]
    # y0 = weight (x0 - mean) / sqrt(var + eps), running mean 0 and variance 1: dy0/dweight = x0 / sqrt(1 + eps)
    np.testing.assert_allclose(ds.dy_dC.values[0, :, 0], (x[:, 0] / np.sqrt(1 + bn.eps)).numpy(), rtol=1e-12)


def test_detach_is_seen_as_a_hidden_dependence():
    torch.manual_seed(0)
    x = torch.randn(16, 4)
    with pytest.warns(RuntimeWarning, match="outputs move with C"):
        ds = sensitivity(Composite(detach=True), x, {"C": [-1.0, 0.0, 1.0]}, bind={"C": "encoder.0.bias[0]"})
    assert ds.attrs["hidden_dependence_dy_dC"] > 0 and (ds.dy_dC_connected == 0).all()


def test_connectivity_never_contradicts_the_derivatives():
    """C selects the branch: the structure check's points (first, middle, last) all pick the zero branch,
    yet dy/dC = x at C = 2: those outputs are connected."""

    def switch(x, C):
        return torch.where(C > 0, C * x, torch.zeros_like(x))

    x = torch.arange(1.0, 4.0, dtype=torch.float64)
    ds = sensitivity(switch, x, {"C": [-3.0, -2.0, -1.0, 2.0, -0.5]}, hidden_policy="off")
    assert (ds.dy_dC.sel(C=2.0) == x.numpy()).all()
    assert (ds.dy_dC_connected == 1).all() and ds.attrs["structurally_independent_outputs"] == 0
