"""sensweep: batched forward-mode sensitivities dy/dC of PyTorch routines, swept over C.

Data flow, one module per stage: ``config`` (Hydra schema; ``checks``) -> ``sweep`` (values,
parts) -> ``routine`` + ``derivatives`` (jvp + vmap) -> ``dataset`` (xarray schema) -> ``storage``
(atomic NetCDF, checked readers) -> ``merge`` -> ``summarise`` (summary.nc) -> ``plot``, and
``verify``. Entry points: :func:`sensitivity` for notebooks, ``python -m pipeline.stages.compute`` for
one workflow job (docs/workflow.md has the whole layout).

Torch is imported lazily, so ``pipeline.config`` stays cheap for the Snakefile.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("sensweep")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from pipeline.api import sensitivity

__all__ = ["__version__", "sensitivity"]


def __getattr__(name: str):
    if name == "sensitivity":
        from pipeline.api import sensitivity

        return sensitivity
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
