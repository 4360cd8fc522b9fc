"""sensweep: batched forward-mode sensitivities dy/dC of PyTorch routines, over sweeps and designs.

The names a notebook needs are here; ``docs/reference/layout.md`` maps the subpackages, in the order the
data flows: ``config`` -> ``design`` (sweeps and sampled designs) -> ``derivatives`` ->
``storage`` (the dataset, NetCDF) -> ``summary`` -> ``stages`` (one module per workflow rule).

>>> import torch, pipeline
>>> ds = pipeline.sensitivity(lambda x, C: C * x**2, torch.tensor([1.0, 2.0]), {"C": [0.5, 1.0]})
>>> ds.dy_dC.sel(C=1.0).values.tolist()
[1.0, 4.0]

Everything but the errors is imported on first use, so ``import pipeline`` loads neither torch
nor Hydra (the Snakefile imports parts of the package).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from pipeline.errors import (
    ConfigError,
    DerivativeError,
    Kind,
    MergeError,
    SensweepError,
    UnreadableInputError,
    VerificationError,
)

try:
    __version__ = version("sensweep")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from pipeline import design
    from pipeline.api import sensitivity
    from pipeline.derivatives.timestepper import TimeStepper
    from pipeline.storage.parts import open_sensitivity
    from pipeline.summary import summarise

_LAZY = {
    "sensitivity": "pipeline.api",
    "design": None,
    "summarise": "pipeline.summary",
    "open_sensitivity": "pipeline.storage.parts",
    "TimeStepper": "pipeline.derivatives.timestepper",
}
"""The public names that need torch, xarray or scipy, and the module each comes from."""

__all__ = [
    "ConfigError",
    "DerivativeError",
    "Kind",
    "MergeError",
    "SensweepError",
    "TimeStepper",
    "UnreadableInputError",
    "VerificationError",
    "__version__",
    "design",
    "open_sensitivity",
    "sensitivity",
    "summarise",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    module = _LAZY[name]
    return import_module(f"pipeline.{name}") if module is None else getattr(import_module(module), name)
