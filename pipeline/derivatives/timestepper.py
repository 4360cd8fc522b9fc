"""The time-stepping model protocol: what ``method.compile=true`` compiles one step of.

A user's model that integrates a state over fixed steps subclasses :class:`TimeStepper`
(``initial``, ``step``, ``observe``, ``steps``); :mod:`pipeline.derivatives.routine` turns it into pure step
functions of the swept parameters, and :mod:`pipeline.derivatives.compiled` compiles one step's batched
``jvp`` instead of the unrolled loop.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn


class TimeStepper(nn.Module):
    """A model that integrates a state over ``steps`` fixed steps and records an output per step.

    Subclasses define ``initial(x) -> state``, ``step(state) -> state`` and
    ``observe(state) -> Tensor`` (state: a tuple of tensors with the sample dim first);
    ``y`` stacks the observations of the initial state and of every step along a last dim.
    ``observe`` may return a dict of named outputs instead: each is stacked so (compiled as a
    whole model, not a step at a time).
    Written this way, ``method.compile=true`` compiles one step's batched ``jvp`` instead of
    the unrolled loop (:mod:`pipeline.derivatives.compiled`), so compiling takes seconds, not minutes.
    """

    steps: int

    def initial(self, x: Tensor) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def step(self, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def observe(self, state: tuple[Tensor, ...]) -> Tensor | Mapping[str, Tensor]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        state = self.initial(x)
        path = [self.observe(state)]
        for _ in range(self.steps):
            state = self.step(state)
            path.append(self.observe(state))
        if isinstance(path[0], Mapping):  # named outputs: each stacked along its own last dim
            return {name: torch.stack([seen[name] for seen in path], dim=-1) for name in path[0]}
        return torch.stack(path, dim=-1)
