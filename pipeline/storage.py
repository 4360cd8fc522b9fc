"""Atomic writes: a file appears under its final name complete, or not at all.

Every output is written to a hidden temporary name in the same directory and renamed into
place (``os.replace`` is atomic on POSIX), so a killed job never leaves a truncated file
that Snakemake or a user could take for a finished one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import netCDF4
import xarray as xr

from pipeline.dataset import encoding

CHUNK_CACHE_BYTES = 4 * 2**20
"""HDF5 chunk cache per open variable. netCDF-C's default (64 MiB) multiplied by every part file
and variable a merge opens made its memory grow with the sweep; a few of our ~1 MiB chunks is
enough, as reads and writes go chunk by chunk."""

netCDF4.set_chunk_cache(CHUNK_CACHE_BYTES, 1009, 0.75)  # for every file opened after this import


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` then rename ``tmp`` to ``path``; on any error remove ``tmp``.

    Temporary files that a killed earlier attempt left for the same ``path`` are removed first
    (one writer per output file: Snakemake runs one job per output).
    """
    final = Path(path)
    for stale in final.parent.glob(f".{final.name}.*.tmp{final.suffix}"):
        stale.unlink(missing_ok=True)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(err.errno, f"cannot write {final}: {final.parent} is not a writable folder "
                                 f"({err.strerror or err})") from err
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp{final.suffix}")
    try:
        write(tmp)
        os.replace(tmp, final)
    except OSError as err:
        raise OSError(err.errno, f"cannot write {final}: {err.strerror or err}") from err
    finally:
        tmp.unlink(missing_ok=True)
    return final


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` as compressed, chunked NetCDF-4, atomically."""
    return write_atomic(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4",
                                                         encoding=encoding(ds)))
