"""Files on disk: atomic writes that keep the last good version, and checked reads.

# NOTE [What a failed or killed job leaves]
Every output is written to a hidden temporary name in the same folder and renamed into place
(``os.replace`` is atomic on POSIX), so a killed job never leaves a truncated file that
Snakemake or a user could take for a finished one. After the rename, a hard link
``.<name>.last-good`` is pointed at the new file: Snakemake deletes a job's outputs before it
reruns the job, and if that rerun then fails (a full disk), the last complete version is still
there under that name (same inode, no extra space). A failed write names the file, says "no
space left on device" when that is the cause, and names the kept version.

Inputs a stage cannot read (truncated, corrupt, not NetCDF) are renamed to ``<name>.corrupt``
(nothing is deleted) and named in one message; the file is then missing, so the next
``snakemake`` run rebuilds it. Data variables are written with HDF5 Fletcher-32 checksums, so
a corrupted chunk fails when it is read instead of passing as wrong numbers.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import xarray as xr

from pipeline.dataset import encoding
from pipeline.errors import UnreadableInputError

CHUNK_CACHE_BYTES = 4 * 2**20
"""HDF5 chunk cache per open variable. netCDF-C's default (64 MiB) multiplied by every part file
and variable a merge opens made its memory grow with the sweep; a few of our ~1 MiB chunks is
enough, as reads and writes go chunk by chunk. Set by :func:`chunk_cache` where files are opened."""

LOW_SPACE_BYTES = 8 * 2**20
"""A write that fails with less free space than this on its file system failed for lack of space
(netCDF reports a full disk as an HDF error or "Permission denied")."""

SLAB = 2**22
"""Elements read at a time when checking a file (16 MiB of float32)."""

READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, IndexError, TypeError)
"""What xarray and netCDF4 raise on a file they cannot read."""


def chunk_cache() -> None:
    """Bound netCDF's chunk cache for the files this process opens from now on (see constant)."""
    import netCDF4

    netCDF4.set_chunk_cache(CHUNK_CACHE_BYTES, 1009, 0.75)


def last_good(path: str | os.PathLike) -> Path:
    """Where the last complete version of ``path`` is kept (NOTE above)."""
    final = Path(path)
    return final.with_name(f".{final.name}.last-good")


def _keep_last_good(final: Path) -> None:
    link = final.with_name(f".{final.name}.{os.getpid()}.link")
    try:
        os.link(final, link)
        os.replace(link, last_good(final))
    except OSError:  # a file system without hard links: no kept version, nothing else changes
        link.unlink(missing_ok=True)


def _write_error(final: Path, err: BaseException) -> OSError:
    """One OSError naming ``final``: "no space left on device" when that is the cause."""
    code = getattr(err, "errno", None)
    try:
        free = shutil.disk_usage(final.parent).free
    except OSError:
        free = None
    kept = last_good(final)
    keep_note = f"; the last complete version is kept as {kept}" if kept.exists() and not final.exists() else ""
    if code in (errno.ENOSPC, errno.EDQUOT) or (free is not None and free < LOW_SPACE_BYTES):
        return OSError(errno.ENOSPC, f"cannot write {final}: no space left on device ({free} bytes free in "
                                     f"{final.parent}){keep_note}")
    reason = getattr(err, "strerror", None) or " ".join(str(err).split()) or type(err).__name__
    return OSError(code or errno.EIO, f"cannot write {final}: {reason}{keep_note}")


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` then rename ``tmp`` to ``path``; on any error remove ``tmp``.

    Temporary files that a killed earlier attempt left for the same ``path`` are removed first
    (one writer per output file: Snakemake runs one job per output). Errors are one
    :class:`OSError` naming the file (NOTE above).
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
    except (OSError, RuntimeError) as err:  # netCDF4 reports write failures as RuntimeError too
        raise _write_error(final, err) from err
    finally:
        tmp.unlink(missing_ok=True)
    _keep_last_good(final)
    return final


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` as compressed, chunked, checksummed NetCDF-4, atomically."""
    chunk_cache()
    return write_atomic(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4",
                                                         encoding=encoding(ds)))


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
    """Move ``path`` aside and build the one message that says so."""
    try:
        aside = f"moved it to {quarantine(path)}"
    except OSError as move_err:
        aside = f"could not move it aside ({move_err.strerror or move_err})"
    return UnreadableInputError(f"{what} {path} is unreadable ({_reason(err)}); {aside}: rerun snakemake to "
                                "rebuild it")


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
