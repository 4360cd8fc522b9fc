"""Op-bound models (pipeline.derivatives.opcost): told apart by their seconds per torch call at one point."""

import math

import pytest
import torch
from torch.overrides import TorchFunctionMode

from pipeline.derivatives import opcost
from tests.helpers import SimulatedClock


def rk4(x, C, steps=200, dt=0.05):
    """A damped oscillator as a user writes it: a Python loop of RK4 steps, a few cheap ops each."""
    pos, vel = x[:, 0], x[:, 1]
    for _ in range(steps):

        def f(p, v):
            return v, -p - C * v

        k1 = f(pos, vel)
        k2 = f(pos + dt / 2 * k1[0], vel + dt / 2 * k1[1])
        k3 = f(pos + dt / 2 * k2[0], vel + dt / 2 * k2[1])
        k4 = f(pos + dt * k3[0], vel + dt * k3[1])
        pos = pos + dt / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        vel = vel + dt / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    return torch.stack([pos, vel], dim=-1)


def mlp(x, C, weights=[]):  # noqa: B006 (weights made once)
    if not weights:
        generator = torch.Generator().manual_seed(0)
        weights.extend(torch.randn(shape, generator=generator) for shape in [(16, 512), (512, 512), (512, 10)])
    hidden = torch.tanh(x @ weights[0] * C)
    return torch.tanh(hidden @ weights[1]) @ weights[2]


def test_calls_are_counted_and_the_result_returned():
    one = torch.ones(3)
    result, cost = opcost.call_cost(lambda: (one + one) * one)
    assert torch.equal(result, torch.full((3,), 2.0)) and cost.calls == 2 and 0 < cost.per_call < 1
    _, none = opcost.call_cost(lambda: 3.0)
    assert none.calls == 0 and none.per_call == math.inf and not opcost.is_op_bound(none)


def test_a_time_stepper_makes_thousands_of_calls_an_mlp_a_few():
    """What the classification counts, independent of the machine: the RK4 loop's torch calls per
    evaluation (thousands) against the MLP's (a handful)."""
    C = torch.tensor(0.3)
    x = torch.randn(1000, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        loop = opcost.call_cost(lambda: rk4(x, C))[1]
        dense = opcost.call_cost(lambda: mlp(torch.randn(1000, 16), C))[1]
    assert loop.calls > 5000 and dense.calls <= 20, (loop, dense)


class _CallsTake(TorchFunctionMode):
    """Every torch call moves the simulated clock by ``seconds``."""

    def __init__(self, clock: SimulatedClock, seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.clock.advance(self.seconds)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(("trivial_calls_per_call", "op_bound"), [(1.2, True), (3.9, True), (4.1, False), (200, False)])
def test_op_bound_means_calls_as_cheap_as_a_few_trivial_ones(monkeypatch, trivial_calls_per_call, op_bound):
    """A simulated clock: a trivial call takes 2 us, the model's calls the chosen multiple of that
    (measured on this project's CPU: RK4 loops 1.0-1.4, nn.LSTM 6.7, the MLP 115-220)."""
    clock = SimulatedClock()
    monkeypatch.setattr(opcost, "clock", clock)
    with _CallsTake(clock, 2e-6):
        trivial = opcost.trivial_call_seconds()
    with _CallsTake(clock, trivial_calls_per_call * 2e-6), torch.no_grad():
        _, cost = opcost.call_cost(lambda: rk4(torch.ones(4, 2), torch.tensor(0.3), steps=3))
    assert trivial == pytest.approx(2e-6) and cost.per_call == pytest.approx(trivial_calls_per_call * 2e-6)
    with _CallsTake(clock, 2e-6):  # is_op_bound times the trivial calls again
        assert opcost.is_op_bound(cost) == op_bound


def test_sensitivity_compares_costs_outside_any_torch_function_mode(monkeypatch):
    """The model's first evaluation is timed with no other mode active, so the trivial calls it is
    compared with must be too: under the number-operand mode they cost about 1.5 times as much,
    which would move the threshold from 4 to about 6 trivial calls (where nn.LSTM and nn.GRU sit)."""
    from pipeline import plan as planning
    from pipeline import sensitivity

    seen = []
    real = planning.is_op_bound
    monkeypatch.setattr(
        planning, "is_op_bound", lambda cost: seen.append(torch._C._is_torch_function_mode_enabled()) or real(cost)
    )
    sensitivity(lambda x, C: C * x, torch.arange(3.0), {"C": [1.0, 2.0]}, method="forward")
    assert seen == [False]
