"""A user model outside the package: 1-D heat equation, explicit finite differences.

``u_t = C u_xx`` on a rod with fixed (zero) ends; ``x`` holds initial temperature profiles
(samples x points), ``y`` the profiles after ``steps`` time steps. ``C`` is the diffusivity.
Used by ``conf/study/example_heat.yaml`` through ``model._target_: examples.heat.heat``:
sensweep imports it like any user code, with no change to the package.
"""

from __future__ import annotations

import numpy as np
import torch


def heat(x: torch.Tensor, C: torch.Tensor, steps: int = 200, dx: float = 0.05, dt: float = 0.001) -> torch.Tensor:
    """Temperature after ``steps`` explicit Euler steps (stable for ``C dt / dx^2 <= 1/2``)."""
    u = x
    r = C * dt / dx**2
    for _ in range(steps):
        interior = u[..., 1:-1] + r * (u[..., 2:] - 2 * u[..., 1:-1] + u[..., :-2])
        u = torch.nn.functional.pad(interior, (1, 1))
    return u


heat.output_dims = ("position",)
heat.input_dims = ("initial_position",)
heat.units = {"x": "K", "y": "K", "C": "m2 s-1"}


def write_initial_profiles(path: str, samples: int = 16, points: int = 21, seed: int = 0) -> None:
    """Random smooth initial profiles (a few sine modes), zero at both ends, as ``.npy``."""
    rng = np.random.default_rng(seed)
    s = np.linspace(0, 1, points)
    modes = np.stack([np.sin(np.pi * k * s) for k in range(1, 4)])
    np.save(path, rng.normal(size=(samples, 3)) @ modes)


if __name__ == "__main__":
    write_initial_profiles("data/heat_initial.npy")
