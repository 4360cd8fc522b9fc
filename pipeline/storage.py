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
import datetime as dt
import errno
import functools
import math
import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr
import yaml

from pipeline import yamltext
from pipeline.checks import COMPRESSIONS
from pipeline.errors import ConfigError, MergeError, UnreadableInputError
from pipeline.provenance import config_differences

CHUNK_CACHE_BYTES = 4 * 2**20
"""HDF5 chunk cache per open variable. netCDF-C's default (64 MiB) multiplied by every part file
and variable a merge opens made its memory grow with the sweep; a few of our ~1 MiB chunks is
enough, as reads and writes go chunk by chunk. Set by :func:`chunk_cache` where files are opened."""

LOW_SPACE_BYTES = 8 * 2**20
"""A write that fails with less free space than this on its file system failed for lack of space
(netCDF reports a full disk as an HDF error or "Permission denied")."""

SLAB = 2**22
"""Elements read at a time when checking a file (16 MiB of float32)."""

READ_BYTES = 32 * 2**20
"""About how much a merge or a no-merge reader reads at a time from a part (:func:`read_chunks`)."""

READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, IndexError, TypeError)
"""What xarray and netCDF4 raise on a file they cannot read."""

CHUNK_ELEMENTS = 2**18
"""Target number of elements per NetCDF chunk (1 MiB of float32 before compression)."""

COMPRESSION_ENCODING: dict[str, dict[str, Any]] = {
    "zstd": {"compression": "zstd", "complevel": 1},
    "zlib": {"zlib": True, "complevel": 1, "shuffle": True},
    "none": {},
}
"""netCDF4 settings of each :data:`pipeline.checks.COMPRESSIONS` choice. On the oscillator's float32
results (420 MB, one thread) zstd level 1 writes in 0.61 s and reads in 0.37 s (385 MB on disk),
zlib level 1 with shuffle in 4.9 s and 2.0 s (264 MB), none in 0.19 s and 0.13 s (421 MB). Blosc
is left out: its HDF5 filter fails the write on a chunk it cannot compress (random bytes)."""


def encoding(ds: xr.Dataset, compression: str = COMPRESSIONS[0]) -> dict[str, dict[str, Any]]:
    """Compression, chunks of about :data:`CHUNK_ELEMENTS` and checksums for every numeric variable.

    HDF5's Fletcher-32 checksum per chunk makes a corrupted chunk an error when it is read.
    """
    enc = {}
    for name, var in ds.variables.items():
        if name in ds.dims:  # CF: coordinate variables carry no _FillValue
            enc[name] = {"_FillValue": None, **({"fletcher32": True} if var.dtype.kind in "fiu" else {})}
            continue
        if var.dtype.kind not in "fiu" or var.ndim == 0:
            continue
        chunks, room = [], CHUNK_ELEMENTS
        for size in reversed(var.shape):  # keep trailing dims whole, cut leading ones
            chunk = max(1, min(size, room))
            chunks.append(chunk)
            room = max(1, room // chunk)
        enc[name] = {**COMPRESSION_ENCODING[compression], "fletcher32": True, "chunksizes": tuple(reversed(chunks))}
    return enc


def chunk_cache() -> None:
    """Bound netCDF's chunk cache for the files this process opens from now on (see constant)."""
    import netCDF4

    netCDF4.set_chunk_cache(CHUNK_CACHE_BYTES, 1009, 0.75)


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


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike, compression: str | None = None) -> Path:
    """Write ``ds`` as compressed, chunked, checksummed NetCDF-4, atomically.

    ``compression``: one of :data:`~pipeline.checks.COMPRESSIONS`; ``None``, the one its config
    chose (:func:`compression_of`). Where HDF5 lacks the zstd plugin, zlib is used with a warning
    instead of failing after the work is done.
    """
    chunk_cache()
    compression = compression or compression_of(ds)
    if compression in FILTER_CHECKS and not _has_filter(compression):
        warnings.warn(
            f"{path}: HDF5 has no {compression} filter here (HDF5_PLUGIN_PATH="
            f"{os.environ.get('HDF5_PLUGIN_PATH', 'unset')}); writing it with zlib instead",
            stacklevel=2,
        )
        compression = "zlib"
    enc = encoding(ds, compression)
    return write_atomic(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=enc))


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


# Readers of sensitivity data: one file, a list of part files, or a parts/ folder.


def read_chunks(path: str | os.PathLike) -> dict[str, int]:
    """Dask chunks to read a part with: whole multiples of its largest variable's chunks along the
    leading dim, about :data:`READ_BYTES` each (the merge of 1.7 GB took 7.6 s in the files' own
    ~1 MiB chunks, 5.6 s in these)."""
    with xr.open_dataset(path) as ds:
        var = max(ds.data_vars.values(), key=lambda v: v.size)
        stored = var.encoding.get("chunksizes")
        if not stored or var.ndim == 0:
            return {}
        block = var.dtype.itemsize * math.prod(stored[:1] + var.shape[1:])
        return {var.dims[0]: stored[0] * max(1, READ_BYTES // block)}


def open_parts(paths: Sequence[str | os.PathLike]) -> xr.Dataset:
    """Open part files as one lazy dataset, concatenated along the swept parameter."""
    if not paths:
        raise MergeError("no part files to merge")
    chunk_cache()
    files = sorted(map(str, paths))
    return xr.open_mfdataset(
        files,
        combine="by_coords",
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="exact",
        combine_attrs="override",
        chunks=read_chunks(files[0]),
    )


@dataclass
class PartInfo:
    """What the merge checks of a part before reading its data: attrs and connectivity flags."""

    path: Path
    part: int | None
    parts: int | None
    part_size: int | None  # a growable design's part (no fixed number of parts)
    fingerprint: str | None
    config: str
    study: str
    history: str
    flags: list[xr.DataArray] = field(default_factory=list)


def read_part_info(path: str | os.PathLike) -> PartInfo:
    """Attrs and the small connectivity flags of a part; an unreadable file is moved aside."""
    chunk_cache()
    try:
        with xr.open_dataset(path) as part:
            has_x = "x" in part.data_vars or any("input_key" in part[v].attrs for v in part.data_vars)
            missing = {"y", *(() if has_x else ("x",))} - set(part.data_vars)
            if missing or "swept_parameters" not in part.attrs:
                raise ValueError(f"not a sensitivity part (missing {sorted(missing) or 'attrs'})")
            attrs = part.attrs
            return PartInfo(
                path=Path(path),
                part=attrs.get("part"),
                parts=attrs.get("parts"),
                part_size=attrs.get("part_size"),
                fingerprint=attrs.get("fingerprint"),
                config=attrs.get("config", ""),
                study=attrs.get("study", ""),
                history=attrs.get("history", ""),
                flags=[part[k].load() for k in part.data_vars if k.endswith("_connected")],
            )
    except READ_ERRORS as err:
        raise unreadable_error(Path(path), err, "part file") from err


def _names(infos: Sequence[PartInfo]) -> str:
    return ", ".join(str(i.path) for i in infos)


def check_parts(infos: Sequence[PartInfo], stale_hint: str = "") -> None:
    """Refuse parts that are not one complete sweep of one config (:class:`MergeError`)."""
    groups: dict[str | None, list[PartInfo]] = {}
    for info in infos:
        groups.setdefault(info.fingerprint, []).append(info)
    if len(groups) > 1:
        (a, *_), (b, *_) = list(groups.values())[:2]
        keys = config_differences(a.config, b.config)
        why = (
            f"config keys that differ: {'; '.join(keys)}"
            if keys
            else "same config, different inputs x (inputs.nc or the data file changed)"
        )
        listing = " | ".join(f"{_names(members)}" for members in groups.values())
        raise MergeError(f"part files of {len(groups)} different configs: {listing}; {why}{stale_hint}")
    studies = {info.study for info in infos}
    if len(studies) > 1:
        raise MergeError(f"part files of different studies {sorted(studies)}: {_names(infos)}")
    unnumbered = [info for info in infos if info.part is None or (info.parts or info.part_size) is None]
    if unnumbered:
        raise MergeError(
            f"not part files of a sweep (no part/parts attrs): {_names(unnumbered)}; merge the files "
            "that pipeline.compute wrote with part=<i>"
        )
    totals = {info.parts for info in infos}
    if len(totals) > 1:
        raise MergeError(
            f"part files of sweeps split into different numbers of parts {sorted(totals)}: {_names(infos)}{stale_hint}"
        )
    (total,) = totals
    if total is None:  # a growable design: parts 0, 1, ... of part_size points each, as many as given
        total = max(int(info.part) for info in infos) + 1
    seen: dict[int, list[PartInfo]] = {}
    for info in infos:
        seen.setdefault(int(info.part), []).append(info)
    twice = {i: members for i, members in seen.items() if len(members) > 1}
    if twice:
        raise MergeError(
            "the same part given more than once: "
            + "; ".join(f"part {i} in {_names(members)}" for i, members in sorted(twice.items()))
        )
    missing = sorted(set(range(total)) - set(seen))
    if missing:
        raise MergeError(
            f"incomplete sweep: parts {missing} of {total} are missing (have {sorted(seen)}); "
            "rerun snakemake to compute them"
        )


def combined_parts(ds: xr.Dataset, infos: Sequence[PartInfo], note: str) -> xr.Dataset:
    """The parts' dataset with connectivity OR'd over parts and every part's history line."""
    flags = [flag for info in infos for flag in info.flags]
    for flag in flags:  # connected anywhere in the sweep: the OR over parts
        ds[flag.name] = (
            xr.concat([f for f in flags if f.name == flag.name], "part").max("part").assign_attrs(flag.attrs)
        )
    if flags:
        names = {flag.name for flag in flags}
        ds.attrs["structurally_independent_outputs"] = sum(int((ds[name] == 0).sum()) for name in names)
    ds.attrs.pop("part", None)
    if ds.attrs.pop("part_size", None) and "config" in ds.attrs:  # a grown design: its size is the parts'
        config = yamltext.load(ds.attrs["config"], "config attr of the parts")
        config["sweep"]["n"] = ds.sizes["point"]
        ds.attrs["config"] = yaml.safe_dump(config, sort_keys=False)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    ds.attrs.update(parts=len(infos), history="\n".join([*(i.history for i in infos), f"{now}: {note}"]))
    return ds


def checked_parts(paths: Sequence[str | os.PathLike], stale_hint: str = "") -> list[PartInfo]:
    if not paths:
        raise MergeError("no part files given")
    infos = [read_part_info(path) for path in paths]
    check_parts(infos, stale_hint)
    return sorted(infos, key=lambda info: info.part)


def _part_files(source: Path) -> list[Path]:
    files = sorted(source.glob("*.nc"), key=lambda f: (len(f.stem), f.stem))
    if not files:
        raise MergeError(f"no part files (*.nc) in {source}")
    return files


Source = str | os.PathLike | Sequence[str | os.PathLike]
"""What the analysis stages read: ``sensitivity.nc``, a ``parts/`` folder, or a list of part files."""


def one_or_many(paths: Sequence[str]) -> Source:
    """Command-line sources: one path as itself, several as a list of part files."""
    return paths[0] if len(paths) == 1 else list(paths)


def source_files(source: Source) -> list[Path]:
    """The files behind a source (a folder's ``*.nc`` files)."""
    return files_of([source] if isinstance(source, str | os.PathLike) else source)


def open_sensitivity(source: Source, chunks: dict | None = None) -> xr.Dataset:
    """``sensitivity.nc``, a list of part files, or a ``parts/`` folder, opened as one dataset, lazily.

    ``chunks`` as for :func:`xarray.open_dataset` (``{}``: dask, the file's chunks; ``None``:
    lazy indexing without dask); parts are always opened with dask, after :func:`check_parts`.
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_dir():
            chunk_cache()
            try:
                return xr.open_dataset(path, chunks=chunks)
            except READ_ERRORS as err:
                if not path.exists():
                    raise
                raise unreadable_error(path, err, "sensitivity file") from err
        files, hint = (
            _part_files(path),
            (f"; {path} holds files of an earlier run: pass the part files of one config, or remove the others"),
        )
    else:
        files, hint = [Path(p) for p in source], ""
    infos = checked_parts(files, hint)
    return combined_parts(open_parts([i.path for i in infos]), infos, f"opened {len(infos)} parts (no merge)")
