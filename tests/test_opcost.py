"""Op-bound models (pipeline.opcost): told apart by their seconds per torch call at one point."""

import math

import torch

from pipeline import opcost


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


def test_a_time_stepper_of_cheap_ops_is_op_bound_an_mlp_is_not():
    """The RK4 loop's calls each cost about a trivial call (1.0-1.4x measured); the MLP's matrix
    products over 1,000 samples hundreds of times more: far on either side of the threshold (4x).
    The fastest of three evaluations counts for the loop, as a pause only makes calls look dearer."""
    C = torch.tensor(0.3)
    x = torch.randn(1000, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        loop = min((opcost.call_cost(lambda: rk4(x, C))[1] for _ in range(3)), key=lambda cost: cost.seconds)
        dense = opcost.call_cost(lambda: mlp(torch.randn(1000, 16), C))[1]
    trivial = opcost.trivial_call_seconds()
    assert opcost.is_op_bound(loop) and loop.calls > 5000, (loop, trivial)
    assert not opcost.is_op_bound(dense) and dense.per_call > 10 * opcost.OP_BOUND_CALLS * trivial, (dense, trivial)


def test_sensitivity_compares_costs_outside_any_torch_function_mode(monkeypatch):
    """The model's first evaluation is timed with no other mode active, so the trivial calls it is
    compared with must be too: under the number-operand mode they cost about 1.5 times as much,
    which would move the threshold from 4 to about 6 trivial calls (where nn.LSTM and nn.GRU sit)."""
    from pipeline import api, sensitivity

    seen = []
    real = api.is_op_bound
    monkeypatch.setattr(
        api, "is_op_bound", lambda cost: seen.append(torch._C._is_torch_function_mode_enabled()) or real(cost)
    )
    sensitivity(lambda x, C: C * x, torch.arange(3.0), {"C": [1.0, 2.0]}, method="forward")
    assert seen == [False]
