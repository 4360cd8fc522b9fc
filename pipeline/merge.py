"""Workflow stage 3: combine a study's part files into ``sensitivity.nc``, or open them as one.

``python -m pipeline.merge OUTPUT PART [PART ...]``. Parts are opened lazily with
``xr.open_mfdataset`` (combined by the swept parameter's coordinate) and streamed to disk,
so the merged sweep never has to fit in memory. :func:`open_sensitivity` opens either
``sensitivity.nc`` or a study's ``parts/`` folder as the same dataset: the workflow's
"no merge" mode (``merge: false``) summarises, plots and verifies the parts directly.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import xarray as xr

from pipeline.storage import write_netcdf


def open_parts(paths: Sequence[str | os.PathLike]) -> xr.Dataset:
    """Open part files as one lazy dataset, concatenated along the swept parameter."""
    if not paths:
        raise ValueError("no part files to merge")
    return xr.open_mfdataset(
        sorted(map(str, paths)), combine="by_coords", data_vars="minimal", coords="minimal",
        compat="override", join="exact", combine_attrs="override", chunks={},  # the files' own chunks
    )


SLAB = 2**22
"""Elements read at a time when checking a part (16 MiB of float32)."""


class CorruptPartError(RuntimeError):
    """A part file cannot be read; it has been removed so that rerunning the workflow recomputes it."""


def _read_part(path: str | os.PathLike) -> tuple[str, list[xr.DataArray]]:
    """History and connectivity flags of a part; a file that does not read back is removed."""
    try:
        with xr.open_dataset(path) as part:
            missing = {"y", "x"} - set(part.data_vars)
            if missing or "swept_parameters" not in part.attrs:
                raise ValueError(f"not a sensitivity part (missing {sorted(missing) or 'attrs'})")
            for var in part.variables.values():  # read everything, a slab at a time: truncated or
                step = max(1, SLAB // max(1, math.prod(var.shape[1:])))  # corrupt data fails here
                for start in range(0, var.shape[0] if var.ndim else 1, step):
                    var[start : start + step].values if var.ndim else var.values
            flags = [part[k] for k in part.data_vars if k.endswith("_connected")]
            return part.attrs.get("history", ""), flags
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        Path(path).unlink(missing_ok=True)
        raise CorruptPartError(f"part file {path} is unreadable ({str(err).splitlines()[0]}); removed it: "
                               "rerun snakemake to recompute it") from err


def _combined(ds: xr.Dataset, histories: list[str], flags: list[xr.DataArray], note: str) -> xr.Dataset:
    """The parts' dataset with connectivity OR'd over parts and every part's history line."""
    for flag in flags:  # connected anywhere in the sweep: the OR over parts
        ds[flag.name] = xr.concat([f for f in flags if f.name == flag.name], "part").max("part") \
            .assign_attrs(flag.attrs)
    if flags:
        names = {flag.name for flag in flags}
        ds.attrs["structurally_independent_outputs"] = sum(int((ds[name] == 0).sum()) for name in names)
    ds.attrs.pop("part", None)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    ds.attrs.update(parts=len(histories), history="\n".join([*histories, f"{now}: {note}"]))
    return ds


def merge_parts(paths: Sequence[str | os.PathLike], output: str | os.PathLike) -> None:
    """Write the parts of one study as a single dataset; its history keeps every part's line.

    Every part is read in full first; an unreadable one is removed and reported
    (:class:`CorruptPartError`), so nothing corrupt is merged and a rerun recomputes it.
    """
    histories, flags = [], []
    for path in paths:
        history, part_flags = _read_part(path)
        histories.append(history)
        flags += part_flags
    with open_parts(paths) as ds:
        write_netcdf(_combined(ds, histories, flags, f"merged {len(paths)} parts (pipeline.merge)"), output)


def open_sensitivity(path: str | os.PathLike, chunks: dict | None = None) -> xr.Dataset:
    """``sensitivity.nc``, or a study's ``parts/`` folder opened as the same dataset, lazily.

    ``chunks`` as for :func:`xarray.open_dataset` (``{}``: dask, the file's chunks; ``None``:
    lazy indexing without dask); a folder is always opened with dask, after checking that its
    files are one complete sweep (parts ``0 .. parts-1`` of the same ``parts``).
    """
    path = Path(path)
    if not path.is_dir():
        return xr.open_dataset(path, chunks=chunks)
    files = sorted(path.glob("*.nc"), key=lambda f: (len(f.stem), f.stem))
    if not files:
        raise CorruptPartError(f"no part files (*.nc) in {path}")
    counts, histories, flags = {}, [], []
    for f in files:  # attrs and the small connectivity flags only; data stays on disk
        with xr.open_dataset(f) as part:
            counts[f.name] = (part.attrs.get("part"), part.attrs.get("parts"))
            histories.append(part.attrs.get("history", ""))
            flags += [part[k].load() for k in part.data_vars if k.endswith("_connected")]
    totals = {total for _, total in counts.values()}
    found = sorted(i for i, _ in counts.values() if i is not None)
    if len(totals) != 1 or found != list(range(next(iter(totals)) or 0)):
        raise CorruptPartError(f"{path} does not hold one complete sweep (part, parts) per file: {counts}; "
                               "remove stale files and rerun snakemake")
    return _combined(open_parts(files), histories, flags, f"opened {len(files)} parts (no merge)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.merge", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="merged NetCDF file to write")
    parser.add_argument("parts", nargs="+", help="part files written by pipeline.compute")
    args = parser.parse_args(argv)
    try:
        merge_parts(args.parts, args.output)
    except (CorruptPartError, OSError) as err:
        print(f"sensweep: error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
