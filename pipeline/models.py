"""Built-in routines ``y = f(x; C)``, one per classic case of batched dy/dC.

Protocol: a model is either a function ``f(x, C, **kwargs)`` or an ``nn.Module`` called as
``module(x)`` whose parameter (or one element of one) is bound to ``C``. Either may name
its dims with ``input_dims`` / ``output_dims`` and give coordinates with ``input_coords`` /
``output_coords`` (dicts of dim name -> 1-D values); unnamed dims get default names.
All models take the whole batch: ``x`` has a leading sample dim, and so does ``y``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pipeline.derivatives.timestepper import TimeStepper


def seed_linear(x: Tensor, C: Tensor) -> Tensor:
    """``y = C * x`` : ``dy/dC = x`` exactly."""
    return C * x


def ishigami(x: Tensor, x1: Tensor, x2: Tensor, x3: Tensor, a: float = 7.0, b: float = 0.1) -> Tensor:
    """The Ishigami function ``sin x1 + a sin^2 x2 + b x3^4 sin x1`` of three uncertain parameters,
    the standard test of sensitivity analysis (Ishigami & Homma 1990), for every sample of ``x``
    (an offset added to y, so that a batch of inputs is a batch of shifted copies)."""
    return x + torch.sin(x1) + a * torch.sin(x2) ** 2 + b * x3**4 * torch.sin(x1)


def sobol_g(x: Tensor, a: dict[str, float], **parameters: Tensor) -> Tensor:
    """Sobol's G-function ``prod_i (|4 p_i - 2| + a_i) / (1 + a_i)`` of parameters uniform on [0, 1],
    with ``a`` naming each parameter's weight (small ``a_i``: important), plus ``x``: the test of
    screening (Saltelli et al. 2008), exact indices from ``V_i = 1 / (3 (1 + a_i)^2)``."""
    missing = sorted(set(parameters) ^ set(a))
    if missing:
        raise ValueError(f"sobol_g: parameters and a must name the same parameters; they differ in {missing}")
    y = torch.ones_like(x)
    for name, p in parameters.items():
        y = y * (torch.abs(4 * p - 2) + a[name]) / (1 + a[name])
    return x + y


def projectile(x: Tensor, speed: Tensor, angle: Tensor, g: float = 9.81, steps: int = 21) -> dict[str, Tensor]:
    """A projectile launched from heights ``x`` (m) at ``speed`` (m/s) and ``angle`` (degrees): its
    height at times 0..2 s and its range (where it lands): a model of several named outputs, with
    closed-form derivatives."""
    theta = torch.deg2rad(angle)
    up, across = speed * torch.sin(theta), speed * torch.cos(theta)
    t = torch.linspace(0.0, 2.0, steps, dtype=x.dtype, device=x.device)
    height = x[:, None] + up * t - 0.5 * g * t**2
    landing = (up + torch.sqrt(up**2 + 2 * g * x)) / g
    return {"height": height, "range": across * landing}


projectile.output_dims = {"height": ("t",), "range": ()}
projectile.output_coords = {"t": [2.0 * i / 20 for i in range(21)]}
projectile.units = {"height": "m", "range": "m", "speed": "m s-1", "angle": "degree", "t": "s", "x": "m"}


class Composite(nn.Module):
    """Sub-models composed sequentially, in parallel and conditionally.

    ``y = cat[branch_a(h), branch_b(h), where(x_0 > 0, head_pos(h), head_neg(h))]`` with
    ``h = encoder(x)``. A parameter bound to ``C`` inside ``branch_b`` moves only the
    ``b`` outputs; inside ``head_pos`` only the ``head`` outputs of samples with ``x_0 > 0``.
    ``detach=True`` cuts the graph after the encoder, so an encoder parameter no longer
    reaches ``y`` at all (structural independence, not a numerically zero derivative).
    """

    input_dims = ("feature",)
    output_dims = ("output",)

    def __init__(self, in_features: int = 4, hidden: int = 8, out_features: int = 2, detach: bool = False):
        super().__init__()
        self.detach = detach
        self.encoder = nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.branch_a = nn.Sequential(nn.Linear(hidden, out_features), nn.Tanh())
        self.branch_b = nn.Sequential(nn.Linear(hidden, out_features), nn.Tanh())
        self.head_pos = nn.Linear(hidden, out_features)
        self.head_neg = nn.Linear(hidden, out_features)
        part = [f"{name}{i}" for name in ("a", "b", "head") for i in range(out_features)]
        self.output_coords = {"output": part}

    def forward(self, x: Tensor) -> Tensor:
        h = self.encoder(x)
        if self.detach:
            h = h.detach()
        head = torch.where(x[..., :1] > 0, self.head_pos(h), self.head_neg(h))
        return torch.cat([self.branch_a(h), self.branch_b(h), head], dim=-1)


class ConvSlice(nn.Module):
    """``Conv1d`` whose output keeps the last ``last`` steps: slicing before or after a convolution.

    ``slice="after"``: ``conv(x)[..., -last:]``; ``slice="before"``: ``conv(x[..., -last:])``;
    ``slice="both"``: the two stacked along a leading output dim ``slice`` (before, after), so
    one study computes both and the verify step compares them. With ``kernel_size=1`` both give
    the same y and dy/dC up to round-off; larger kernels (``padding="same"``) differ at the left
    edge of the slice.
    """

    input_dims = ("in_channel", "step")

    def __init__(
        self, in_channels: int = 3, out_channels: int = 3, kernel_size: int = 1, last: int = 5, slice: str = "after"
    ):
        super().__init__()
        if slice not in ("before", "after", "both"):
            raise ValueError(f"invalid model.args.slice={slice!r}: valid: before, after, both")
        self.slice = slice
        self.output_dims = ("out_channel", "last_step") if slice != "both" else ("slice", "out_channel", "last_step")
        self.output_coords = {"slice": ["before", "after"]} if slice == "both" else {}
        self.last = last
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding="same")

    def forward(self, x: Tensor) -> Tensor:
        if self.slice == "before":
            return self.conv(x[..., -self.last :])
        if self.slice == "after":
            return self.conv(x)[..., -self.last :]
        return torch.stack([self.conv(x[..., -self.last :]), self.conv(x)[..., -self.last :]], dim=-3)


class Oscillator(TimeStepper):
    """Damped oscillator ``p'' + C p' + K p = 0`` integrated with fixed-step RK4.

    ``x`` holds initial states ``(position, velocity)`` per sample; ``y`` is the position at
    times ``0, dt, ..., steps*dt``. ``C`` is bound to the ``damping`` parameter, ``K`` (a grid
    study) to ``stiffness``. For ``K = 1`` and ``0 < C < 2`` there is a closed form
    (see :func:`oscillator_exact`).
    """

    input_dims = ("state",)
    output_dims = ("t",)  # elapsed model time, not a calendar time (CF's `time` needs a reference date)

    def __init__(self, dt: float = 0.05, steps: int = 200, damping: float = 0.5, stiffness: float = 1.0):
        super().__init__()
        if dt <= 0 or steps < 1:
            raise ValueError(f"invalid model.args dt={dt}, steps={steps}: need dt > 0 and steps >= 1")
        self.dt = dt
        self.steps = steps
        self.damping = nn.Parameter(torch.tensor(float(damping)))
        self.stiffness = nn.Parameter(torch.tensor(float(stiffness)))
        self.input_coords = {"state": ["position", "velocity"]}
        self.output_coords = {"t": [i * dt for i in range(steps + 1)]}
        self.units = {"t": "s"}

    def _rate(self, p: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        return v, -self.damping * v - self.stiffness * p

    def initial(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[..., 0], x[..., 1]

    def step(self, state: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """One RK4 step of ``(position, velocity)``."""
        p, v = state
        h = self.dt
        k1p, k1v = self._rate(p, v)
        k2p, k2v = self._rate(p + h / 2 * k1p, v + h / 2 * k1v)
        k3p, k3v = self._rate(p + h / 2 * k2p, v + h / 2 * k2v)
        k4p, k4v = self._rate(p + h * k3p, v + h * k3v)
        return p + h / 6 * (k1p + 2 * k2p + 2 * k3p + k4p), v + h / 6 * (k1v + 2 * k2v + 2 * k3v + k4v)

    def observe(self, state: tuple[Tensor, ...]) -> Tensor:
        return state[0]


def oscillator_exact(x: Tensor, C: float, t: Tensor) -> tuple[Tensor, Tensor]:
    """Closed-form position and d(position)/dC of the underdamped oscillator (``0 < C < 2``).

    ``p(t) = e^{-Ct/2} (p0 cos wt + B sin wt)`` with ``w = sqrt(1 - C^2/4)`` and
    ``B = (v0 + C p0 / 2) / w``; the derivative is differentiated by hand, term by term.
    Returns tensors of shape ``(samples, len(t))``.
    """
    p0, v0 = x[:, :1], x[:, 1:2]
    t = t[None, :]
    w = (1 - C**2 / 4) ** 0.5
    dw = -C / (4 * w)
    B = (v0 + C * p0 / 2) / w
    dB = p0 / (2 * w) - (v0 + C * p0 / 2) * dw / w**2
    decay = torch.exp(-C * t / 2)
    cos, sin = torch.cos(w * t), torch.sin(w * t)
    p = decay * (p0 * cos + B * sin)
    dp = -t / 2 * p + decay * (-p0 * sin * t * dw + dB * sin + B * cos * t * dw)
    return p, dp
