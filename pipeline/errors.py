"""The errors a user can act on.

Each error's message names the bad key, value or file and what would be valid. The command-line
entry points (:func:`pipeline.stages.cli.run_cli`) print such an error as one line and exit 1;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import textwrap
from enum import StrEnum

RANDOMNESS = (
    "sensweep rejects this so that every value of a parameter sees the same computation: call model.eval(), "
    "seed the generator inside the model, or draw the randomness into the inputs x"
)
"""How to make a model that draws random numbers deterministic (every method refuses one that is not)."""


class SensweepError(Exception):
    """Base of the errors whose message tells the user what to change."""


class ConfigError(SensweepError, ValueError):
    """A config value is invalid; the message names the key and the valid choices."""


class Kind(StrEnum):
    """What went wrong in a derivative pass: code decides on this, never on a message's words."""

    RANDOMNESS = "randomness"
    """The model draws random numbers: no method cures that."""
    NO_FORWARD_RULE = "no_forward_rule"
    """An op (or autograd.Function) has no forward-mode rule: reverse mode or differences may work."""
    UNBATCHABLE = "unbatchable"
    """The model cannot run under ``vmap``: a method that runs one point at a time may work."""
    COMPILE = "compile"
    """torch.compile failed on the model."""
    POLICY = "policy"
    """A check found wrong or non-finite results and its policy is ``raise``."""
    NO_METHOD = "no_method"
    """No method of ``auto``'s ladder could differentiate the model."""
    OTHER = "other"


class DerivativeError(SensweepError, RuntimeError):
    """A derivative cannot be computed with the chosen method; the message says what to do, ``kind`` what happened."""

    def __init__(self, message: str, kind: Kind = Kind.OTHER) -> None:
        super().__init__(message)
        self.kind = kind


class MergeError(SensweepError, RuntimeError):
    """Part files that do not form one complete sweep of one config; the message says which and why."""


class UnreadableInputError(SensweepError, RuntimeError):
    """An input file cannot be read; it has been moved aside so that a rerun rebuilds it."""


class VerificationError(SensweepError, RuntimeError):
    """A sensitivity file cannot be verified against the given config (it was computed from another)."""


def clipped(text: str, width: int = 160) -> str:
    """``text`` on one line, cut at a word (``...`` where cut) to at most ``width`` characters: other
    tools' messages quoted inside ours, never cut mid-word."""
    flat = " ".join(str(text).split())
    short = textwrap.shorten(flat, width, placeholder=" ...")
    if flat and short == "...":  # the first word alone is too long: cut inside it rather than drop it all
        return flat[: width - 4] + " ..."
    return short
