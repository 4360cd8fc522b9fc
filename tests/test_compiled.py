"""method.compile=true: torch.compile of one step (TimeStepper) or of the whole batched jvp.

Compiled results are checked against eager forward mode in float64 (same derivatives up to
round-off: the compiled kernels fuse and reorder floating-point ops), and, for the oscillator,
against its closed form. Sizes are small: each case compiles once (a few seconds).
"""

from __future__ import annotations

import warnings
from types import MappingProxyType

import numpy as np
import pytest
import torch

from pipeline import sensitivity
from pipeline.derivatives.compiled import BLOCK_STEPS, _batch_one_step, _put_block, _run_time_loop
from pipeline.derivatives.methods import forward
from pipeline.derivatives.routine import as_routine
from pipeline.errors import ConfigError
from pipeline.models import Composite, Oscillator, oscillator_exact

pytestmark = pytest.mark.integration  # torch.compile: left out of `make unit`


def _x(samples: int, features: int) -> torch.Tensor:
    return torch.rand(samples, features, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1


def test_time_stepper_compiles_one_step_and_matches_eager_and_closed_form():
    model, x = Oscillator(dt=0.02, steps=100), _x(5, 2)
    values = np.linspace(0.2, 1.8, 7)  # chunk_size=3: chunks of 3, 3 and 1 padded to 3
    eager = sensitivity(model, x, {"C": values}, bind={"C": "damping"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = sensitivity(model, x, {"C": values}, bind={"C": "damping"}, compile=True, chunk_size=3)
    assert not [w for w in caught if "calls per evaluation" in str(w.message)]  # one step is compiled
    assert compiled.attrs["compiled"] == 1 and "(compiled)" in compiled.attrs["history"]
    np.testing.assert_allclose(compiled.y, eager.y, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(compiled.dy_dC, eager.dy_dC, rtol=1e-12, atol=1e-14)
    t = torch.tensor(model.output_coords["t"], dtype=torch.float64)
    for i, c in enumerate(values):
        _, exact = oscillator_exact(x, float(c), t)
        np.testing.assert_allclose(compiled.dy_dC[i], exact, rtol=1e-6, atol=1e-8)


def test_compiling_a_plain_function_of_many_torch_calls_warns_before_it_starts():
    """torch.compile unrolls a plain function's time loop (minutes for 200 RK4 steps): the first
    evaluation counts the calls, and more than UNROLLED_CALLS give a warning naming the way out
    (raised here as an error, so nothing compiles)."""

    def euler(x, C, steps=300):
        for _ in range(steps):
            x = x + 0.01 * (-C * x)  # 4 torch calls a step
        return x

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(RuntimeWarning, match=r"makes 1,20\d torch calls per evaluation.*TimeStepper"):
            sensitivity(euler, _x(3, 2), {"C": [0.5, 1.0]}, compile=True)
        few = sensitivity(lambda x, C: euler(x, C, steps=2), _x(3, 2), {"C": [0.5, 1.0]})  # eager: no warning
    assert few.dy_dC.shape == (2, 3, 2)


def test_time_stepper_grid_of_two_parameters_compiled():
    model, x = Oscillator(dt=0.05, steps=40), _x(4, 2)
    params = {"C": [0.3, 0.9, 1.5], "K": [0.5, 2.0]}
    bind = {"C": "damping", "K": "stiffness"}
    eager = sensitivity(model, x, params, bind=bind)
    compiled = sensitivity(model, x, params, bind=bind, compile=True)
    for name in ("y", "dy_dC", "dy_dK"):
        np.testing.assert_allclose(compiled[name], eager[name], rtol=1e-12, atol=1e-14)


def test_whole_model_compiled_when_not_a_time_stepper():
    torch.manual_seed(0)
    model, x = Composite().double(), _x(6, 4)
    bind = {"C": "branch_b.0.bias[1]"}
    eager = sensitivity(model, x, {"C": [-1.0, 0.0, 2.0]}, bind=bind)
    compiled = sensitivity(model, x, {"C": [-1.0, 0.0, 2.0]}, bind=bind, compile=True, chunk_size=2)
    np.testing.assert_allclose(compiled.dy_dC, eager.dy_dC, rtol=1e-12, atol=1e-14)
    # Structure is the eager check's: only the b outputs move.
    assert compiled.dy_dC.sel(output="b1").any() and not compiled.dy_dC.sel(output=["a0", "a1", "b0"]).any()


@pytest.mark.parametrize("kwargs", [{"method": "reverse"}, {"order": 2}])
def test_compile_only_with_first_order_forward(kwargs):
    with pytest.raises(ConfigError, match="compile=True"):
        sensitivity(lambda x, C: C * x, torch.arange(3.0), {"C": [1.0]}, compile=True, **kwargs)


@pytest.mark.parametrize("steps", [5, BLOCK_STEPS, 2 * BLOCK_STEPS + 3])
def test_time_loop_blocks_put_every_step_in_its_place(steps):
    """Observations gathered in blocks of steps land where each step's own does: fewer steps
    than a block, exactly one block, and full blocks plus a short one (uncompiled, so no compile)."""
    model, x = Oscillator(dt=0.05, steps=steps), _x(3, 2)
    routine = as_routine(model, ["C", "K"], bind={"C": "damping", "K": "stiffness"}, dtype=torch.float64)
    chunk = torch.tensor([[0.3, 0.5], [1.1, 2.0]], dtype=torch.float64)
    stepper = routine.stepper
    ys, dys = _run_time_loop(stepper, x, chunk, _batch_one_step(stepper), _put_block)
    eager = forward(routine.fn, x, chunk)
    assert ys.shape == eager.y.shape and dys.shape == eager.dy.shape
    torch.testing.assert_close(ys, eager.y, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(dys, eager.dy, rtol=1e-12, atol=1e-14)


class _OscillatorWithEnergy(Oscillator):
    """The oscillator observing two named outputs: its position and its energy."""

    output_dims = MappingProxyType({"position": ("t",), "energy": ("t",)})

    def observe(self, state):
        p, v = state
        return {"position": p, "energy": 0.5 * v**2 + 0.5 * self.stiffness * p**2}


def test_time_stepper_of_named_outputs_eager_and_compiled():
    """observe returning a dict: each output stacked along t; the position is the plain oscillator's,
    the energy's derivative agrees with per-point differences, and compile=true (the whole model,
    as a step's observation is not one tensor) gives the eager derivatives."""
    model, x, values = _OscillatorWithEnergy(dt=0.05, steps=4), _x(4, 2), np.linspace(0.2, 1.8, 5)
    plain = sensitivity(Oscillator(dt=0.05, steps=4), x, {"C": values}, bind={"C": "damping"})
    eager = sensitivity(model, x, {"C": values}, bind={"C": "damping"})
    assert eager.attrs["output_names"] == "position energy" and eager.denergy_dC.dims == ("C", "sample", "t")
    np.testing.assert_array_equal(eager.dposition_dC.values, plain.dy_dC.values)
    differences = sensitivity(model, x, {"C": values}, bind={"C": "damping"}, method="finite_difference")
    np.testing.assert_allclose(eager.denergy_dC, differences.denergy_dC, rtol=1e-6, atol=1e-8)
    compiled = sensitivity(model, x, {"C": values}, bind={"C": "damping"}, compile=True)
    assert compiled.attrs["compiled"] == 1
    for name in ("dposition_dC", "denergy_dC", "energy"):
        np.testing.assert_allclose(compiled[name], eager[name], rtol=1e-12, atol=1e-14)
