"""A model zoo: other people's solvers and layers, each with an independent reference for dy/dC.

Every entry builds ``(model, x, params, bind)`` in float64 and a reference: a closed form where
there is one, else central differences of plain calls (``finite_difference_per_point``) with a
Richardson step pair. ``python tests/zoo.py`` prints the table the README quotes: the method
the default ``auto`` ended up using, the error against the reference, and the time.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class Case:
    """One zoo entry: what to pass to :func:`pipeline.sensitivity` and what dy/dC must be."""

    model: Callable | nn.Module
    x: Any
    params: dict[str, list[float]]
    bind: dict[str, str] | None = None
    exact: Callable[[np.ndarray, float], np.ndarray] | None = None  # (x, C) -> dy/dC; None: differences
    rtol: float = 1e-6
    expected_method: str = "forward"  # what `auto` uses with torch 2.13 on a CPU
    kwargs: dict[str, Any] = field(default_factory=dict)


T = np.linspace(0.0, 2.0, 11)


def _decay_exact(x: np.ndarray, C: float) -> np.ndarray:
    """y' = -C y: y = x exp(-C t), dy/dC = -t x exp(-C t)."""
    return -T * x[:, None] * np.exp(-C * T)


def odeint_decay(x: torch.Tensor, C: torch.Tensor, method: str = "rk4", rtol: float = 1e-11) -> torch.Tensor:
    """torchdiffeq's ``odeint`` on y' = -C y, fixed-step (``rk4``) or adaptive (``dopri5``, tolerance ``rtol``)."""
    from torchdiffeq import odeint

    t = torch.as_tensor(T, dtype=x.dtype)
    options = {"step_size": 0.01} if method == "rk4" else {}
    tolerances = {} if method == "rk4" else {"rtol": rtol, "atol": rtol / 100}
    return odeint(lambda t, y: -C * y, x, t, method=method, options=options, **tolerances).T


def torchode_decay(x: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """torchode's Dopri5 with an integral step-size controller on y' = -C y (one ODE per sample)."""
    import torchode as to

    term = to.ODETerm(lambda t, y: -C * y)
    solver = to.AutoDiffAdjoint(to.Dopri5(term=term), to.IntegralController(atol=1e-13, rtol=1e-11, term=term))
    t = torch.as_tensor(T, dtype=x.dtype).expand(x.shape[0], -1)
    return solver.solve(to.InitialValueProblem(y0=x[:, None], t_eval=t)).ys[..., 0]


class Recurrent(nn.Module):
    """A user's sequence model: an ``nn.LSTM`` or ``nn.GRU`` and a linear read-out of the last state."""

    def __init__(self, cell: type[nn.Module] = nn.LSTM, features: int = 3, hidden: int = 6):
        super().__init__()
        self.rnn = cell(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def load_recurrent(checkpoint: str, cell: str = "LSTM") -> nn.Module:
    """A user's factory: builds the module and loads its trained weights itself."""
    model = Recurrent(getattr(nn, cell))
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    return model


class Encoder(nn.Module):
    """One ``nn.TransformerEncoderLayer`` in eval mode, mean-pooled. Its fused fast path has no
    forward-mode rule; torch skips that path while a torch function mode is active, as it is while
    sensweep computes (``pipeline.derivatives.zerotensor.NumberOperands``), so forward mode goes through."""

    def __init__(self, d_model: int = 8):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model, nhead=2, dim_feedforward=16, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x).mean(dim=1)


class TokenModel(nn.Module):
    """A user's model of several inputs: ``x = {"tokens": int64 ids, "scale": float}``, through
    ``nn.Embedding`` (which needs integer ids) and a linear read-out."""

    def __init__(self, vocabulary: int = 20, width: int = 6):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.head = nn.Linear(width, 3)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        pooled = self.embed(x["tokens"]).mean(dim=1)
        return torch.tanh(self.head(pooled)) * x["scale"][:, None]


def newton_cubic(x: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """The root z of z^3 + C z = x by Newton's method, stopping once converged (a data-dependent exit).

    Implicit function theorem: dz/dC = -z / (3 z^2 + C).
    """
    z = x.clone()
    for _ in range(100):
        g = z**3 + C * z - x
        z = z - g / (3 * z**2 + C)
        if g.abs().max() < 1e-14:
            break
    return z


def _newton_exact(x: np.ndarray, C: float) -> np.ndarray:
    z = np.array([np.real(r[np.isreal(r)][0]) for r in (np.roots([1, 0, C, -xi]) for xi in x)])
    return -z / (3 * z**2 + C)


def fixed_point(x: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """z = 0.5 cos(z) + C x, iterated until the update is below 1e-15: dz/dC = x / (1 + 0.5 sin z)."""
    z = torch.zeros_like(x)
    while True:
        new = 0.5 * torch.cos(z) + C * x
        if (new - z).abs().max() < 1e-15:
            return new
        z = new


def _fixed_point_exact(x: np.ndarray, C: float) -> np.ndarray:
    z = np.zeros_like(x)
    for _ in range(200):
        z = 0.5 * np.cos(z) + C * x
    return x / (1 + 0.5 * np.sin(z))


def offset_linear(x: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """y = 1e6 + C x: dy/dC = x exactly, while differences of y lose digits to the offset."""
    return 1e6 + C * x


def _batchnorm() -> nn.Module:
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(3).double().eval()
    bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
    bn.running_var.copy_(torch.tensor([1.5, 0.5, 2.0]))
    return bn


def cases() -> dict[str, Case]:
    """The zoo, built afresh (seeded) on each call."""
    torch.manual_seed(0)
    x1 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    seq = torch.randn(4, 5, 3, dtype=torch.float64)
    bn = _batchnorm()
    bn_x = torch.randn(6, 3, dtype=torch.float64)
    bn_scale = ((bn_x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)).numpy()
    return {
        "torchdiffeq rk4": Case(
            odeint_decay, x1, {"C": [0.5, 1.5]}, exact=_decay_exact, rtol=1e-8, expected_method="forward_per_point"
        ),
        "torchdiffeq dopri5": Case(
            lambda x, C: odeint_decay(x, C, "dopri5"),
            x1,
            {"C": [0.5, 1.5]},
            exact=_decay_exact,
            rtol=1e-8,
            expected_method="reverse_per_point",
        ),
        "torchode Dopri5": Case(
            torchode_decay, x1, {"C": [0.5, 1.5]}, exact=_decay_exact, rtol=1e-8, expected_method="forward_per_point"
        ),
        "nn.LSTM": Case(Recurrent(nn.LSTM).double(), seq, {"C": [-0.3, 0.4]}, bind={"C": "rnn.weight_hh_l0[1,2]"}),
        "nn.GRU": Case(
            Recurrent(nn.GRU).double(),
            seq,
            {"C": [-0.3, 0.4]},
            bind={"C": "rnn.weight_ih_l0[0,1]"},
            expected_method="forward_per_point",
        ),
        "TransformerEncoderLayer (eval)": Case(
            Encoder().double().eval(),
            torch.randn(3, 4, 8, dtype=torch.float64),
            {"C": [-0.5, 0.5]},
            bind={"C": "layer.linear1.bias[3]"},
        ),
        "BatchNorm1d weight": Case(
            bn, bn_x, {"C": [0.5, 2.0]}, bind={"C": "weight[1]"}, exact=lambda x, C: _bn_weight(bn_scale), rtol=1e-14
        ),
        "Newton, early exit": Case(
            newton_cubic,
            x1.abs() + 0.5,
            {"C": [0.5, 2.0]},
            exact=_newton_exact,
            rtol=1e-12,
            expected_method="forward_per_point",
        ),
        "fixed-point iteration": Case(
            fixed_point,
            x1,
            {"C": [0.2, 0.6]},
            exact=_fixed_point_exact,
            rtol=1e-12,
            expected_method="forward_per_point",
        ),
    }


def _bn_weight(scale: np.ndarray) -> np.ndarray:
    out = np.zeros_like(scale)
    out[:, 1] = scale[:, 1]
    return out


def reference(case: Case) -> np.ndarray:
    """dy/dC at every value of the case: closed form, or central differences (Richardson-extrapolated)."""
    from pipeline import sensitivity

    values = next(iter(case.params.values()))
    if case.exact is not None:
        x = case.x.numpy() if isinstance(case.x, torch.Tensor) else np.asarray(case.x)
        return np.stack([case.exact(x, v) for v in values])
    results = []
    for h in (1e-4, 5e-5):
        results.append(
            sensitivity(
                case.model,
                case.x,
                case.params,
                bind=case.bind,
                method="finite_difference_per_point",
                step=h,
                dtype="float64",
                hidden_policy="off",
            )["dy_dC"].values
        )
    return (4 * results[1] - results[0]) / 3  # O(h^4): Richardson


def run(case: Case, **kwargs: Any) -> tuple[Any, float]:
    """The dataset of the default method (float64) and its wall time."""
    from pipeline import sensitivity

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = sensitivity(case.model, case.x, case.params, bind=case.bind, dtype="float64", **kwargs)
    return ds, time.perf_counter() - start


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), math.ulp(1.0)))


if __name__ == "__main__":
    print("| model | method used | max rel. error vs reference | reference | time (s) |")
    print("| --- | --- | --- | --- | --- |")
    for name, case in cases().items():
        ds, seconds = run(case)
        error = relative_error(ds["dy_dC"].values, reference(case))
        kind = "closed form" if case.exact else "central differences"
        print(f"| {name} | {ds.attrs['method']} | {error:.1e} | {kind} | {seconds:.2f} |")
