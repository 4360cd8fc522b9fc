"""Input batches ``x`` (leading dim = samples), generated from config or read from ``data/``.

Each builder is referenced from ``conf/inputs/*.yaml`` by ``_target_`` and returns a float64
tensor; the job casts it to the run's dtype. Reading never executes code from a data file
(``.npy`` is loaded with ``allow_pickle=False``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from pipeline.config import ConfigError, conf_dir
from pipeline.sizes import GIB, RESULT_MEMORY_FRACTION, available_ram_bytes

SUFFIXES = (".npy", ".nc")


def _check_size(elements: int, key: str) -> None:
    need = elements * 8
    if need > available_ram_bytes() * RESULT_MEMORY_FRACTION:
        raise ConfigError(
            f"invalid {key}: x would need {need / GIB:.3g} GiB ({elements:.3g} float64 values), more "
            f"than {RESULT_MEMORY_FRACTION:.0%} of the available memory; use fewer samples"
        )


def arange(num: int = 10) -> Tensor:
    """``x = arange(num)``, one scalar per sample (seed 000)."""
    if num < 1:
        raise ConfigError(f"invalid inputs.args.num={num!r}: must be >= 1")
    _check_size(num, "inputs.args.num")
    return torch.arange(num, dtype=torch.float64)


def random(samples: int = 32, shape: list[int] = (), seed: int = 0) -> Tensor:
    """Standard normal ``x`` of shape ``(samples, *shape)`` from a generator seeded with ``seed``."""
    if samples < 1 or any(n < 1 for n in shape):
        raise ConfigError(f"invalid inputs.args samples={samples!r}, shape={list(shape)!r}: sizes must be >= 1")
    _check_size(samples * math.prod(shape), "inputs.args.samples")
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(samples, *shape, generator=generator, dtype=torch.float64)


def from_file(path: str) -> Tensor:
    """Read ``x`` from a ``.npy`` array or a NetCDF file's variable ``x``.

    A relative ``path`` is relative to the workflow folder (the one holding ``conf/``), so a study
    file's ``data/...`` means the same file whatever folder a job runs in.
    """
    return read_x(path, key="inputs.args.path", base=conf_dir().parent)


def read_x(path: str, key: str, base: Path | None = None) -> Tensor:
    """Read ``x`` from ``path`` (relative to ``base`` if given); errors name the config ``key``."""
    file = Path(path)
    if base is not None and not file.is_absolute():
        file = base / file
    if file.suffix not in SUFFIXES:
        raise ConfigError(f"invalid {key}={path!r}: supported file types are {', '.join(SUFFIXES)}")
    if not file.is_file():
        where = f" (looked for {file})" if file != Path(path) else ""
        raise ConfigError(f"invalid {key}={path!r}: no such file{where}")
    try:
        if file.suffix == ".npy":
            array = np.load(file, allow_pickle=False)
        else:
            with xr.open_dataset(file, engine="netcdf4") as ds:
                if "x" not in ds:
                    raise ConfigError(f"invalid {key}={path!r}: no variable 'x' (has {list(ds.data_vars)})")
                array = ds["x"].values
    except (OSError, ValueError, RuntimeError) as err:
        if isinstance(err, ConfigError):
            raise
        what = "not a NetCDF file, or a corrupt one" if file.suffix == ".nc" else "not a .npy file, or a corrupt one"
        raise ConfigError(
            f"invalid {key}={path!r}: cannot read it: {what} ({' '.join(str(err).split())[:200] or type(err).__name__})"
        ) from err
    if np.iscomplexobj(array):
        raise ConfigError(
            f"invalid {key}={path!r}: complex values ({array.dtype}) are not supported; store the real "
            "and imaginary parts as separate features"
        )
    if array.ndim == 0 or not np.issubdtype(array.dtype, np.number):
        raise ConfigError(
            f"invalid {key}={path!r}: need a numeric array with a sample dim, got "
            f"dtype {array.dtype}, shape {array.shape}"
        )
    if 0 in array.shape:
        raise ConfigError(
            f"invalid {key}={path!r}: x has shape {array.shape}, an empty dim; every dim (samples "
            "first) needs at least one entry"
        )
    if not np.isfinite(array).all():
        raise ConfigError(f"invalid {key}={path!r}: {np.size(array) - np.isfinite(array).sum()} non-finite values")
    return torch.from_numpy(np.asarray(array, dtype=np.float64))
