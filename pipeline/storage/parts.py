"""Sensitivity data as the stages read it: ``sensitivity.nc``, part files, or a ``parts/`` folder,
checked to form one complete sweep of one config before any data is read.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from pipeline.config import yamltext
from pipeline.design.sampling import points_per_base_point
from pipeline.errors import MergeError
from pipeline.storage.outputs import output_names
from pipeline.storage.provenance import config_differences
from pipeline.storage.read import READ_ERRORS, files_of, unreadable_error
from pipeline.storage.write import CHUNK_CACHE_BYTES, chunk_cache

READ_BYTES = 32 * 2**20
"""About how much a merge or a no-merge reader reads at a time from a part (:func:`read_chunks`)."""


# Readers of sensitivity data: one file, a list of part files, or a parts/ folder.


def read_chunks(path: str | os.PathLike) -> dict[str, int]:
    """Dask chunks to read a part with: whole multiples of its largest variable's chunks along the
    leading dim, about :data:`READ_BYTES` each (fewer, larger reads than the files' own ~1 MiB chunks)."""
    with xr.open_dataset(path) as ds:
        var = max(ds.data_vars.values(), key=lambda v: v.size)
        stored = var.encoding.get("chunksizes")
        if not stored or var.ndim == 0:
            return {}
        block = var.dtype.itemsize * math.prod(stored[:1] + var.shape[1:])
        return {var.dims[0]: stored[0] * max(1, READ_BYTES // block)}


def open_parts(
    paths: Sequence[str | os.PathLike],
    chunks: dict[str, int] | None = None,
    cache_bytes: int = CHUNK_CACHE_BYTES,
    drop: Sequence[str] = (),
) -> xr.Dataset:
    """Open part files as one lazy dataset, concatenated along the swept parameter, in ``chunks``
    (default: :func:`read_chunks`), with a chunk cache of ``cache_bytes`` per variable, without the
    variables ``drop``."""
    if not paths:
        raise MergeError("no part files to merge")
    chunk_cache(cache_bytes)
    files = sorted(map(str, paths))
    return xr.open_mfdataset(
        files,
        combine="by_coords",
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="exact",
        combine_attrs="override",
        chunks=chunks or read_chunks(files[0]),
        drop_variables=list(drop),
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
            missing = {*output_names(part), *(() if has_x else ("x",))} - set(part.data_vars)
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


def check_one_sweep(infos: Sequence[PartInfo], stale_hint: str = "") -> None:
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
            "that pipeline.stages.compute wrote with part=<i>"
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
    by_name: dict[str, list[xr.DataArray]] = {}
    for flag in (flag for info in infos for flag in info.flags):
        by_name.setdefault(str(flag.name), []).append(flag)
    # connected anywhere in the sweep: the OR over parts; assigned at once (each assignment merges)
    ds = ds.assign(
        {name: same[0].copy(data=np.max([f.values for f in same], axis=0)) for name, same in by_name.items()}
    )
    if by_name:
        ds.attrs["structurally_independent_outputs"] = sum(int((ds[name] == 0).sum()) for name in by_name)
    ds.attrs.pop("part", None)
    if ds.attrs.pop("part_size", None) and "config" in ds.attrs:  # a grown design: its size is the parts'
        config = yamltext.load(ds.attrs["config"], "config attr of the parts")
        sweep = config["sweep"]
        sweep["n"] = ds.sizes["point"] // points_per_base_point(sweep)  # Saltelli: n counts base points
        ds.attrs["config"] = yaml.safe_dump(config, sort_keys=False)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    ds.attrs.update(parts=len(infos), history="\n".join([*(i.history for i in infos), f"{now}: {note}"]))
    return ds


def checked_parts(paths: Sequence[str | os.PathLike], stale_hint: str = "") -> list[PartInfo]:
    if not paths:
        raise MergeError("no part files given")
    infos = [read_part_info(path) for path in paths]
    check_one_sweep(infos, stale_hint)
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


def open_sensitivity(source: Source, chunks: dict | None = None, cache_bytes: int = CHUNK_CACHE_BYTES) -> xr.Dataset:
    """``sensitivity.nc``, a list of part files, or a ``parts/`` folder, opened as one dataset, lazily.

    ``chunks`` as for :func:`xarray.open_dataset` (``{}``: dask, the file's chunks; ``None``:
    lazy indexing without dask); parts are always opened with dask (``chunks`` naming dims, else
    :func:`read_chunks`), after :func:`check_one_sweep`. ``cache_bytes``: netCDF's chunk cache per
    variable (0 where every chunk is read once: chunks that are whole stored chunks).
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_dir():
            chunk_cache(cache_bytes)
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
    opened = open_parts([i.path for i in infos], chunks or None, cache_bytes)
    return combined_parts(opened, infos, f"opened {len(infos)} parts (no merge)")
