"""Workflow stage 3: combine a study's part files into ``sensitivity.nc``.

``python -m pipeline.merge OUTPUT PART [PART ...]``. Parts are opened lazily with
``xr.open_mfdataset`` (combined by the swept parameter's coordinate) and streamed to disk,
so the merged sweep never has to fit in memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections.abc import Sequence

import xarray as xr

from pipeline.storage import write_netcdf


def open_parts(paths: Sequence[str | os.PathLike]) -> xr.Dataset:
    """Open part files as one lazy dataset, concatenated along the swept parameter."""
    if not paths:
        raise ValueError("no part files to merge")
    return xr.open_mfdataset(
        sorted(map(str, paths)), combine="by_coords", data_vars="minimal", coords="minimal",
        compat="override", join="exact", combine_attrs="override",
    )


def merge_parts(paths: Sequence[str | os.PathLike], output: str | os.PathLike) -> None:
    """Write the parts of one study as a single dataset; attrs sum the parts' wall time."""
    times, flags = [], []
    for path in paths:
        with xr.open_dataset(path) as part:
            times.append(float(part.attrs.get("wall_time_s", 0.0)))
            flags += [part[k].load() for k in part.data_vars if k.endswith("_connected")]
    with open_parts(paths) as ds:
        for flag in flags:  # connected anywhere in the sweep: the OR over parts
            ds[flag.name] = xr.concat([f for f in flags if f.name == flag.name], "part").max("part") \
                .assign_attrs(flag.attrs)
        if flags:
            names = {flag.name for flag in flags}
            ds.attrs["structurally_independent_outputs"] = sum(int((ds[name] == 0).sum()) for name in names)
        for key in ("part", "points_per_second"):
            ds.attrs.pop(key, None)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        ds.attrs.update(
            wall_time_s=round(sum(times), 6),
            parts=len(paths),
            history=f"{ds.attrs.get('history', '')}\n{now}: merged {len(paths)} parts (pipeline.merge)".strip(),
        )
        write_netcdf(ds, output)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.merge", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="merged NetCDF file to write")
    parser.add_argument("parts", nargs="+", help="part files written by pipeline.compute")
    args = parser.parse_args(argv)
    merge_parts(args.parts, args.output)


if __name__ == "__main__":
    main()
