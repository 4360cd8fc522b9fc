"""Checked reads: a file a stage cannot read is moved aside and named in one message.

Inputs a stage cannot read (truncated, corrupt, not NetCDF) are renamed to ``<name>.corrupt``
(nothing is deleted); the file is then missing, so the next ``snakemake`` run rebuilds it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import xarray as xr

from pipeline.errors import UnreadableInputError
from pipeline.storage.write import MISSING_FILTER, chunk_cache

SLAB = 2**22
"""Elements read at a time when checking a file (16 MiB of float32)."""

READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, IndexError, TypeError)
"""What xarray and netCDF4 raise on a file they cannot read."""


def check_readable(path: str | os.PathLike) -> None:
    """Open ``path`` and read every variable, a slab at a time; raises what the reader raises."""
    chunk_cache()
    with xr.open_dataset(path) as ds:
        for var in ds.variables.values():
            if var.ndim == 0:
                var.values  # noqa: B018 (the read is the check)
                continue
            step = max(1, SLAB // max(1, math.prod(var.shape[1:])))
            for start in range(0, var.shape[0], step):
                var[start : start + step].values  # noqa: B018


def quarantine(path: str | os.PathLike) -> Path:
    """Move an unreadable file aside to ``<name>.corrupt`` (replacing an older one); returns that path."""
    source = Path(path)
    aside = source.with_name(f"{source.name}.corrupt")
    os.replace(source, aside)
    return aside


def _reason(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def unreadable_error(path: Path, err: BaseException, what: str = "input file") -> UnreadableInputError:
    """Move ``path`` aside and build the one message that says so.

    A file compressed with a filter this process lacks is not corrupt: it stays where it is.
    """
    if MISSING_FILTER in str(err):
        return UnreadableInputError(
            f"{what} {path} is compressed with an HDF5 filter plugin (zstd) that this netCDF4/HDF5 cannot find "
            f"(HDF5_PLUGIN_PATH={os.environ.get('HDF5_PLUGIN_PATH', 'unset')}); the file is kept: read it where "
            "netCDF4's filter plugins are found (its pip wheels include them), or write it with compression=zlib"
        )
    try:
        aside = f"moved it to {quarantine(path)}"
    except OSError as move_err:
        aside = f"could not move it aside ({move_err.strerror or move_err})"
    return UnreadableInputError(f"{what} {path} is unreadable ({_reason(err)}); {aside}: rerun snakemake to rebuild it")


def files_of(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """The files named by ``inputs``: files as given, folders as their ``*.nc`` files."""
    found = []
    for item in map(Path, inputs):
        found += sorted(item.glob("*.nc")) if item.is_dir() else [item]
    return found


@contextlib.contextmanager
def reading(inputs: Iterable[str | os.PathLike], what: str = "input file") -> Iterator[None]:
    """Run a stage that reads ``inputs``; if it fails, find an unreadable input, move it aside and say so.

    The check costs nothing while the stage succeeds: each input is read in full only after
    a failure, to tell a corrupt input from any other error (which is raised unchanged).
    """
    paths = files_of(inputs)
    try:
        yield
    except READ_ERRORS as err:
        if isinstance(err, UnreadableInputError):
            raise
        for path in paths:
            if not path.is_file():
                continue
            try:
                check_readable(path)
            except READ_ERRORS as bad:
                raise unreadable_error(path, bad, what) from err
        raise
