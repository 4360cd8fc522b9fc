"""Whether a model is op-bound: so many cheap torch calls that torch's cost per call is its cost.

# NOTE [Op-bound models]
A time stepper written as plain Python (200 RK4 steps of a few ops on 1,000 samples) makes
thousands of torch calls per pass, each about as cheap as torch's own dispatch: a forward-mode
pass of 8 parameter values then costs little more than one of a single value, and timing small
chunks at the start of a CPU sweep (NOTE [Choosing the chunk size] in
:mod:`pipeline.derivatives.chunking`) wastes a large share of the sweep before it settles on large
ones. An MLP or a convolution stack makes a few calls that each do real work, and its best chunks
are small.

The model's evaluation at one point, which :func:`pipeline.sensitivity` runs anyway to check its
inputs, tells the two apart: its seconds per torch call (counted by a ``TorchFunctionMode``)
against those of a trivial call (adding two one-element tensors) under the same count. Eager
time steppers (RK4 loops, torchdiffeq's and torchode's solvers, Newton iterations on a few
values) cost a few trivial calls per call; recurrent and Transformer layers on a small batch
several; an MLP or a convolution stack over many samples hundreds (``make bench`` prints each
model's figure). A first
call's lazy initialisation only makes a model look dearer per call: it is then tuned as if it
were not op-bound, the safe side.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

OP_BOUND_CALLS = 4.0
"""A model whose torch calls cost under this many trivial calls each (at one point) is op-bound."""

TRIVIAL_BATCHES = 5
"""Batches of 20 trivial calls timed; the fastest counts (a pause can only make calls look dearer,
which would make a model look op-bound)."""


clock: Callable[[], float] = time.perf_counter
"""The clock costs are read from: tests put a simulated one in its place (no test depends on wall time)."""


class _CountCalls(TorchFunctionMode):
    """Counts the torch calls made while it is active (calls inside a call are not seen)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


@dataclass(frozen=True)
class CallCost:
    """The torch calls of one evaluation and its wall seconds."""

    calls: int
    seconds: float

    @property
    def per_call(self) -> float:
        """Seconds per torch call (infinite where there were none)."""
        return self.seconds / self.calls if self.calls else math.inf


def call_cost(run: Callable[[], Any]) -> tuple[Any, CallCost]:
    """``run()`` and what it cost: its torch calls (counted by a ``TorchFunctionMode``) and seconds."""
    with _CountCalls() as count:
        start = clock()
        result = run()
        seconds = clock() - start
    return result, CallCost(count.calls, seconds)


def trivial_call_seconds() -> float:
    """Seconds of one trivial torch call (two one-element CPU tensors added) under the same count."""
    one = torch.ones(1)
    return min(call_cost(lambda: [one + one for _ in range(20)])[1].per_call for _ in range(TRIVIAL_BATCHES))


def is_op_bound(cost: CallCost) -> bool:
    """Whether an evaluation at one point that cost ``cost`` (:func:`call_cost`) is an op-bound model's."""
    return cost.per_call < OP_BOUND_CALLS * trivial_call_seconds()
