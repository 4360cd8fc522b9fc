"""Files on disk: how datasets are laid out (:func:`encoding`: chunks, checksums, compression),
atomic writes that keep the last good version, and checked reads.

# NOTE [What a failed or killed job leaves]
Every output is written to a hidden temporary name in the same folder and renamed into place
(``os.replace`` is atomic on POSIX), so a killed job never leaves a truncated file that
Snakemake or a user could take for a finished one. After the rename, a copy
``.<name>.last-good`` is made (a copy-on-write clone where the file system has them): Snakemake
deletes a job's outputs before it reruns the job, and if that rerun then fails (a full disk), the
last complete version is still there under that name. A copy, not a hard link, so that a file
changed in place does not change its kept version too; part files that Snakemake deletes once
merged lose theirs in the merge. A failed write names the file, says "no space left on device"
when that is the cause, and names the kept version.

Inputs a stage cannot read (truncated, corrupt, not NetCDF) are renamed to ``<name>.corrupt``
(nothing is deleted) and named in one message; the file is then missing, so the next
``snakemake`` run rebuilds it. Data variables are written with HDF5 Fletcher-32 checksums, so
a corrupted chunk fails when it is read instead of passing as wrong numbers.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import xarray as xr

from pipeline.checks import COMPRESSIONS
from pipeline.config import yamltext
from pipeline.errors import ConfigError

CHUNK_CACHE_BYTES = 4 * 2**20
"""HDF5 chunk cache per open variable. netCDF-C's default (64 MiB) multiplied by every part file
and variable a merge opens made its memory grow with the sweep; a few of our ~1 MiB chunks is
enough, as reads and writes go chunk by chunk. Set by :func:`chunk_cache` where files are opened."""

LOW_SPACE_BYTES = 8 * 2**20
"""A write that fails with less free space than this on its file system failed for lack of space
(netCDF reports a full disk as an HDF error or "Permission denied")."""

CHUNK_ELEMENTS = 2**18
"""Target number of elements per NetCDF chunk (1 MiB of float32 before compression)."""

CHUNK_ROW_BYTES = 64 * 2**20
"""At most this many bytes in one chunk of every variable (fewer elements per chunk where a dataset
has many variables, e.g. the derivatives of 100 parameters): a reader of a block of points (a
design's summary) holds a chunk of each variable, and reads each once."""

COMPRESSION_ENCODING: dict[str, dict[str, Any]] = {
    "zstd": {"compression": "zstd", "complevel": 1},
    "zlib": {"zlib": True, "complevel": 1, "shuffle": True},
    "none": {},
}
"""netCDF4 settings of each :data:`pipeline.checks.COMPRESSIONS` choice: zstd level 1 writes and
reads fast, zlib with shuffle is smaller but several times slower to write, none is fastest and
largest (docs/bench/workflow.md has the figures). Blosc is left out: its HDF5 filter fails the
write on a chunk it cannot compress (random bytes)."""


def leading_chunks(ds: xr.Dataset, encodings: dict[str, dict[str, Any]] | None = None) -> dict[str, int]:
    """The chunk size along each variable's leading dim that ``encodings`` (default: :func:`encoding`)
    writes (the smallest where variables differ): dask chunks of this size write whole chunks, none twice."""
    found: dict[str, int] = {}
    for name, enc in (encoding(ds) if encodings is None else encodings).items():
        if "chunksizes" in enc and name in ds.variables:
            dim = ds[name].dims[0]
            found[dim] = min(found.get(dim, enc["chunksizes"][0]), enc["chunksizes"][0])
    return found


@functools.cache
def leading_chunk(size: int, at_most: int) -> int:
    """Rows per chunk of a leading dim of ``size`` cut into chunks of ``at_most`` rows: the largest
    divisor of ``size`` from ``at_most / 2`` up (2,500 -> 250 of at most 262), else a power of two.

    A part of a sweep is then whole chunks of the merged file when the parts are equal: a divisor
    of a part is one of the whole sweep, and parts of 2^k points (designs) get 2^j rows.

    >>> leading_chunk(2500, 262), leading_chunk(2**20, 5000), leading_chunk(1009, 100)
    (250, 4096, 64)
    """
    for rows in range(at_most, at_most // 2, -1):
        if size % rows == 0:
            return rows
    return 1 << (at_most.bit_length() - 1)


def chunk_limits(ds: xr.Dataset) -> dict[str, tuple[int, ...]]:
    """The largest chunk of each numeric, non-coordinate variable: about :data:`CHUNK_ELEMENTS`
    elements (fewer with many variables: :data:`CHUNK_ROW_BYTES`), trailing dims kept whole."""
    chunked = {n: v for n, v in ds.variables.items() if n not in ds.dims and v.dtype.kind in "fiu" and v.ndim}
    row = CHUNK_ROW_BYTES // max(1, sum(v.dtype.itemsize for v in chunked.values()))  # elements per variable
    elements = min(CHUNK_ELEMENTS, 1 << max(12, row.bit_length() - 1))  # a power of two, 4,096 at least
    limits = {}
    for name, var in chunked.items():
        chunks, room = [], elements
        for size in reversed(var.shape):  # keep trailing dims whole, cut leading ones
            chunk = max(1, min(size, room))
            chunks.append(chunk)
            room = max(1, room // chunk)
        limits[name] = tuple(reversed(chunks))
    return limits


def encoding(ds: xr.Dataset, compression: str = COMPRESSIONS[0]) -> dict[str, dict[str, Any]]:
    """Compression, chunks within :func:`chunk_limits` and checksums for every numeric variable.

    A leading dim that is cut is cut in chunks that divide it (:func:`leading_chunk`), so that equal
    parts of a sweep hold whole chunks of the merged file, which the merge then copies as stored
    (:mod:`pipeline.storage.chunkcopy`).

    HDF5's Fletcher-32 checksum per chunk makes a corrupted chunk an error when it is read.
    """
    enc = {}
    limits = chunk_limits(ds)
    for name, var in ds.variables.items():
        if name in ds.dims:  # CF: coordinate variables carry no _FillValue
            enc[name] = {"_FillValue": None, **({"fletcher32": True} if var.dtype.kind in "fiu" else {})}
        elif name in limits:
            rows, *rest = limits[name]
            if rows < var.shape[0]:
                rows = leading_chunk(var.shape[0], rows)
            enc[name] = {**COMPRESSION_ENCODING[compression], "fletcher32": True, "chunksizes": (rows, *rest)}
    return enc


def chunk_cache(per_variable: int = CHUNK_CACHE_BYTES) -> None:
    """Bound netCDF's chunk cache for the files this process opens from now on (see constant); 0
    where every chunk is read once (a merge), so that none is kept."""
    import netCDF4

    netCDF4.set_chunk_cache(per_variable, 1009, 0.75)


def last_good(path: str | os.PathLike) -> Path:
    """Where the last complete version of ``path`` is kept (NOTE above)."""
    final = Path(path)
    return final.with_name(f".{final.name}.last-good")


FICLONE = 0x40049409
"""Linux's ioctl that makes a copy-on-write clone of a file (btrfs, XFS): instant, no space used."""


def _clone_or_copy(source: Path, target: Path) -> None:
    """``target`` as a copy of ``source``: a copy-on-write clone where the file system has them, else bytes."""
    import fcntl

    with source.open("rb") as src, target.open("wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            return
        except OSError:
            pass
    shutil.copyfile(source, target)


def _keep_last_good(final: Path) -> None:
    """A copy of ``final`` as ``.<name>.last-good`` (never a hard link: a file changed in place
    would change its kept version with it). Where the copy cannot be made (a nearly full disk),
    no stale version is left to pass for this one."""
    copy = final.with_name(f".{final.name}.{os.getpid()}.keep")
    try:
        _clone_or_copy(final, copy)
        os.replace(copy, last_good(final))
    except OSError:
        copy.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            last_good(final).unlink(missing_ok=True)


def drop_last_good(paths: Iterable[str | os.PathLike]) -> None:
    """Remove the kept versions of ``paths`` (part files Snakemake deletes once merged)."""
    for path in paths:
        with contextlib.suppress(OSError):
            last_good(path).unlink(missing_ok=True)


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
        return OSError(
            errno.ENOSPC,
            f"cannot write {final}: no space left on device ({free} bytes free in {final.parent}){keep_note}",
        )
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
        raise OSError(
            err.errno, f"cannot write {final}: {final.parent} is not a writable folder ({err.strerror or err})"
        ) from err
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


FILTER_CHECKS = {"zstd": "has_zstd_filter"}
"""netCDF4's test of each compression choice that is an HDF5 plugin (zlib is built into HDF5)."""

MISSING_FILTER = "undefined filter"
"""netCDF's message on reading data compressed with a filter plugin it cannot load (NC_ENOFILTER)."""


@functools.cache
def _has_filter(name: str) -> bool:
    """Whether this process's netCDF4/HDF5 can use the compression filter ``name``."""
    import netCDF4

    with netCDF4.Dataset("probe.nc", "w", memory=1024) as probe:
        return bool(getattr(probe, FILTER_CHECKS[name])())


def compression_of(ds: xr.Dataset) -> str:
    """The compression chosen in the config the dataset records (``attrs["config"]``), else the default."""
    with contextlib.suppress(ConfigError, AttributeError):
        chosen = (yamltext.load(ds.attrs.get("config", ""), "config attr") or {}).get("compression")
        if chosen in COMPRESSIONS:
            return chosen
    return COMPRESSIONS[0]


def usable_compression(ds: xr.Dataset, path: str | os.PathLike, compression: str | None = None) -> str:
    """``compression``, else the one ``ds``'s config chose (:func:`compression_of`); zlib, with a
    warning, where HDF5 lacks the chosen filter, instead of failing after the work is done."""
    compression = compression or compression_of(ds)
    if compression in FILTER_CHECKS and not _has_filter(compression):
        warnings.warn(
            f"{path}: HDF5 has no {compression} filter here (HDF5_PLUGIN_PATH="
            f"{os.environ.get('HDF5_PLUGIN_PATH', 'unset')}); writing it with zlib instead",
            stacklevel=3,
        )
        compression = "zlib"
    return compression


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike, compression: str | None = None) -> Path:
    """Write ``ds`` as compressed, chunked, checksummed NetCDF-4, atomically.

    ``compression``: one of :data:`~pipeline.checks.COMPRESSIONS`, else as :func:`usable_compression`
    picks.
    """
    chunk_cache()
    enc = encoding(ds, usable_compression(ds, path, compression))
    return write_atomic(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=enc))
