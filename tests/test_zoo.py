"""Other people's models through the default method: each against a closed form or differences (float64).

The models (torchdiffeq, torchode, recurrent and attention layers, iterative solvers) live in
tests/zoo.py, which also prints the README's table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from bad_models import NoForward, Opaque

from pipeline import sensitivity
from pipeline.derivatives.fallback import LADDER
from pipeline.errors import DerivativeError
from zoo import cases, reference, relative_error, run

pytestmark = pytest.mark.integration  # other people's solvers: left out of `make unit`

CASES = cases()


@pytest.mark.parametrize("name", list(CASES))
def test_zoo_model_matches_its_reference(name):
    case = CASES[name]
    ds, _ = run(case)
    assert ds.attrs["method"] == case.expected_method, ds.attrs.get("fallback_reason")
    assert relative_error(ds["dy_dC"].values, reference(case)) < case.rtol
    if ds.attrs["method"] != "forward":
        assert ds.attrs["method_requested"] == "auto" and "failed" in ds.attrs["fallback_reason"]


def test_fixed_step_solver_matches_differences_of_itself():
    """torchdiffeq rk4: the derivative of the discrete solution, against its own central differences."""
    case = CASES["torchdiffeq rk4"]
    ds, _ = run(case)
    differences = reference(type(case)(case.model, case.x, case.params))  # no closed form: differences
    assert relative_error(ds["dy_dC"].values, differences) < 1e-6


def test_fallback_warns_once_naming_the_line_and_the_method_used():
    case = CASES["Newton, early exit"]
    with pytest.warns(RuntimeWarning, match=r"method=auto used forward_per_point.*zoo\.py:\d+ \(newton_cubic\)"):
        sensitivity(case.model, case.x, case.params, dtype="float64")


def test_a_named_method_never_falls_back():
    case = CASES["Newton, early exit"]
    with pytest.raises(DerivativeError, match=r"method=forward cannot batch .*\.item\(\)"):
        sensitivity(case.model, case.x, case.params, method="forward")


@pytest.mark.parametrize("method", LADDER[1:])
def test_every_rung_of_the_ladder_on_an_adaptive_solver(method):
    """A model no batched method runs: each per-point method, forced by name, against the closed form."""
    case = CASES["torchode Dopri5"]
    ds, _ = run(case, method=method)
    assert ds.attrs["method"] == method
    rtol = 1e-6 if method.startswith("finite") else case.rtol
    assert relative_error(ds["dy_dC"].values, reference(case)) < rtol


def test_op_without_forward_rule_goes_to_reverse():
    with pytest.warns(RuntimeWarning, match="no forward-mode rule"):
        ds = sensitivity(lambda x, C: x * NoForward.apply(C), torch.arange(3.0), {"C": [1.0, 2.0]})
    assert ds.attrs["method"] == "reverse_per_point"
    np.testing.assert_array_equal(ds.dy_dC, [[0, 2, 4], [0, 2, 4]])


def test_no_derivative_rule_at_all_goes_to_differences():
    """An autograd.Function with neither a jvp nor a backward: only differences are left."""

    x = torch.tensor([0.5, 1.0], dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="used finite_difference_per_point"):
        ds = sensitivity(lambda x, C: x * Opaque.apply(C), x, {"C": [1.0]})
    np.testing.assert_allclose(ds.dy_dC.values[0], x.numpy() * np.cos(1.0), rtol=1e-8)


def test_arithmetic_outside_torch_is_reported_as_hidden():
    """Dual tensors lose their tangent to numpy without an error: the hidden-dependence check says so."""

    def through_numpy(x, C):
        return torch.from_numpy(np.sin(C.numpy() * x.numpy()))

    x = torch.tensor([0.5, 1.0], dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match=r"2 outputs move with C .*method=finite_difference sees"):
        ds = sensitivity(through_numpy, x, {"C": [1.0]})
    assert ds.attrs["hidden_dependence_dy_dC"] == 2
    exact = sensitivity(through_numpy, x, {"C": [1.0]}, method="finite_difference_per_point")
    np.testing.assert_allclose(exact.dy_dC.values[0], x.numpy() * np.cos(x.numpy()), rtol=1e-8)


def test_batchnorm_running_mean_bound_is_reported_as_hidden():
    """Forward AD ignores a BatchNorm buffer's tangent: dy/dC = 0 while y moves, warned and counted."""
    case = CASES["BatchNorm1d weight"]
    with pytest.warns(RuntimeWarning, match=r"outputs move with C .* where autodiff gives exactly 0"):
        ds = sensitivity(case.model, case.x, {"C": [0.0, 0.5]}, bind={"C": "running_mean[1]"}, dtype="float64")
    assert ds.attrs["hidden_dependence_dy_dC"] == case.x.shape[0]


STUDY = """# @package _global_
defaults:
  - override /model: custom
  - override /inputs: arange
  - override /sweep: linear
title: "{title}"
model:
  _target_: my_models.{target}
dtype: float64
sweep: {{start: 0.5, stop: 1.5, num: 4, parts: 2}}
"""


@pytest.mark.slow
def test_users_solvers_end_to_end_through_snakemake(workflow):
    """A user's file of models beside the Snakefile: an RK4 ODE solve and a Newton solver with early exit,
    each in its own study on the default method; results, fallback record and verification."""
    import shutil

    import xarray as xr
    import yaml

    from helpers import run
    from zoo import T, _decay_exact, _newton_exact

    shutil.copy(Path(__file__).with_name("zoo.py"), workflow / "my_models.py")
    studies = {"decay": ("odeint_decay", "torchdiffeq RK4 decay"), "newton": ("newton_cubic", "Newton cubic root")}
    for name, (target, title) in studies.items():
        (workflow / "conf" / "study" / f"{name}.yaml").write_text(STUDY.format(target=target, title=title))
    (workflow / "zoo-config.yaml").write_text(yaml.safe_dump({"studies": list(studies)}))
    result = run(["snakemake", "--configfile", "zoo-config.yaml", "--cores", "2"], cwd=workflow)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "method=auto used forward_per_point" in (workflow / "outputs/logs/decay/compute-0.log").read_text()
    exact = {"decay": _decay_exact, "newton": _newton_exact}
    for name in studies:
        with xr.open_dataset(workflow / "outputs" / name / "sensitivity.nc") as ds:
            assert ds.attrs["method"] == "forward_per_point" and ds.attrs["title"] == studies[name][1]
            x = ds.x.values
            expected = np.stack([exact[name](x, c) for c in ds.C.values])
            if name == "decay":
                assert ds.sizes["output"] == len(T)
            assert np.abs(ds.dy_dC.values - expected).max() / np.abs(expected).max() < 1e-7
        report = (workflow / "outputs" / name / "verify.md").read_text()
        assert "overall: PASS" in report, report
    # an edited model file is an input of every part of its studies: all of them rerun
    models = workflow / "my_models.py"
    models.write_text(models.read_text() + "\n# edited after the run\n")
    dry = run(["snakemake", "--configfile", "zoo-config.yaml", "--cores", "2", "-n"], cwd=workflow)
    assert dry.returncode == 0 and dry.stdout.count("rule compute:") == 4, dry.stdout[-3000:]


def test_verify_of_an_adaptive_solver_takes_its_tolerance(tmp_path):
    """dopri5 at rtol 1e-7 (float64): autodiff differentiates the accepted steps while differences also
    see the step sizes move with C, so the two differ at the solver's tolerance (docs/how-to/own-model.md);
    verify.rtol says so, and a derivative off by 1e-4 still fails."""
    from pipeline.config.studies import compose_job
    from pipeline.stages.compute import compute
    from pipeline.stages.verify import verify

    overrides = [
        "model=custom",
        "model._target_=tests.zoo.odeint_decay",
        "+model.args.method=dopri5",
        "+model.args.rtol=1e-7",
        "method=auto",
        "dtype=float64",
        "sweep.num=3",
        "sweep.start=0.5",
        "sweep.stop=1.5",
        "sweep.parts=1",
        f"output={tmp_path / 'sensitivity.nc'}",
    ]
    cfg = compose_job("seed_linear", overrides)
    with pytest.warns(RuntimeWarning, match="used reverse_per_point"):
        ds = compute(cfg, "seed_linear")
    strict = verify(ds, cfg)
    assert strict.attrs["passed"] == 0  # 7e-7 between autodiff and differences: more than sqrt(eps)
    cfg = compose_job("seed_linear", [*overrides, "verify.rtol=1e-5"])
    report = verify(ds, cfg)
    assert report.attrs["passed"] == 1, report.to_dataframe().to_string()
    rows = [str(c) for c in report.comparison.values]
    assert any(c.startswith("forward (float64): not available") for c in rows)  # dopri5 has no forward rule
    wrong = ds.copy()
    wrong["dy_dC"] = ds.dy_dC * (1 + 1e-4)
    assert verify(wrong, cfg).attrs["passed"] == 0


def test_verify_estimates_the_error_of_differences(tmp_path):
    """y = 1e6 + C x (float64): differences lose about 1e-5 of dy/dC to round-off, far more than the
    fixed sqrt(eps); verify estimates it from steps h and h/2 and passes the exact study."""
    from pipeline.config.studies import compose_job
    from pipeline.stages.compute import compute
    from pipeline.stages.verify import verify

    cfg = compose_job(
        "seed_linear",
        [
            "model=custom",
            "model._target_=tests.zoo.offset_linear",
            "dtype=float64",
            "sweep.num=3",
            "sweep.parts=1",
            "verify.methods=[finite_difference]",
            f"output={tmp_path / 'sensitivity.nc'}",
        ],
    )
    report = verify(compute(cfg, "seed_linear"), cfg)
    row = report.isel(comparison=0)
    assert 1e-8 < float(row.max_rel_diff) < float(row.tolerance) and float(row.reference_error) > 1e-9
    assert report.attrs["passed"] == 1


class Once(torch.autograd.Function):
    """sin, with a backward that is not itself differentiable."""

    @staticmethod
    def forward(ctx, c):
        ctx.save_for_backward(c)
        return torch.sin(c)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (c,) = ctx.saved_tensors
        return grad * torch.cos(c)


def test_reverse_without_double_backward_uses_one_vjp_per_output():
    """An op whose backward is not itself differentiable (as cuDNN's LSTM on a GPU): reverse mode
    falls back from the double-backward trick to vector-Jacobian products."""

    x = torch.arange(4.0, dtype=torch.float64)
    ds = sensitivity(lambda x, C: x * Once.apply(C), x, {"C": [0.3]}, method="reverse_per_point")
    np.testing.assert_allclose(ds.dy_dC.values[0], x.numpy() * np.cos(0.3), rtol=1e-14)
    # One path through the op, one around it: the trick alone would miss only the first.
    ds = sensitivity(lambda x, C: x * Once.apply(C) + C * x, x, {"C": [0.3]}, method="reverse_per_point")
    np.testing.assert_allclose(ds.dy_dC.values[0], x.numpy() * (np.cos(0.3) + 1), rtol=1e-14)


def test_reverse_falls_back_to_a_loop_where_the_backward_cannot_be_batched():
    """A backward that reads its gradient outside torch (cannot be vmapped, as cuDNN's RNNs on a GPU)
    and has no double backward: the batched attempt must leave the graph for the loop of vjps."""

    class Outside(Once):
        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad):
            (c,) = ctx.saved_tensors
            return torch.as_tensor(grad.numpy() * np.cos(c.numpy()))

    x = torch.arange(4.0, dtype=torch.float64)
    ds = sensitivity(lambda x, C: (x * Outside.apply(C)) ** 2, x, {"C": [0.3]})
    assert ds.attrs["method"] == "reverse_per_point", ds.attrs.get("fallback_reason")
    expected = 2 * (x.numpy() * np.sin(0.3)) * x.numpy() * np.cos(0.3)
    np.testing.assert_allclose(ds.dy_dC.values[0], expected, rtol=1e-14)


def test_named_outputs_of_a_torchdiffeq_model_match_differences():
    """A stranger's ODE (torchdiffeq rk4) returning a dict: a trajectory along t and a scalar energy,
    over a grid of two parameters. Each output gets its variables, against per-point differences."""
    from torchdiffeq import odeint

    t = torch.linspace(0, 2, 11, dtype=torch.float64)

    def oscillator(x, C, K):
        def rhs(_, s):
            return torch.stack([s[..., 1], -C * s[..., 1] - K * s[..., 0]], -1)

        path = odeint(rhs, x, t, method="rk4", options={"step_size": 0.05})  # (t, sample, state)
        end = path[-1]
        return {"position": path[..., 0].transpose(0, 1), "energy": 0.5 * end[..., 1] ** 2 + 0.5 * K * end[..., 0] ** 2}

    oscillator.output_dims = {"position": ("t",), "energy": ()}
    x = torch.tensor([[1.0, 0.0], [0.5, -0.3], [0.0, 1.0]], dtype=torch.float64)
    grid = {"C": [0.2, 0.5], "K": [1.0, 2.0, 3.0]}
    with pytest.warns(RuntimeWarning, match="method=auto used forward_per_point"):  # torchdiffeq writes in place
        ds = sensitivity(oscillator, x, grid, dtype="float64")
    ref = sensitivity(oscillator, x, grid, dtype="float64", method="finite_difference_per_point")
    assert ds.attrs["output_names"] == "position energy"
    assert ds.dposition_dK.dims == ("C", "K", "sample", "t") and ds.denergy_dC.dims == ("C", "K", "sample")
    for name in ("dposition_dC", "dposition_dK", "denergy_dC", "denergy_dK"):
        assert relative_error(ds[name].values, ref[name].values) < 1e-8, name
