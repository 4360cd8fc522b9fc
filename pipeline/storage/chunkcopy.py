"""The merge's writer: part files' compressed chunks copied into ``sensitivity.nc`` as stored.

A part's stored chunk of a variable along the swept dim is, byte for byte, a chunk of the merged
file when both lay the variable out alike (chunk shape, and the filter pipeline: compression and
Fletcher-32 checksum) and the part starts on a chunk boundary of the merged file. Those chunks are
copied with HDF5's direct chunk I/O (h5py): not decompressed, checksummed and compressed again,
which was most of a merge's time. :func:`pipeline.storage.write.encoding` cuts the swept dim in
powers of two, so the parts of a design of 2^k points per part align. Everything else (variables
along other dims, the connectivity flags, parts that do not align) is written through xarray and
netCDF4 as before, so the file is the one a decoding merge writes, chunk for chunk.

Each copied part is first read through its checksums: a corrupted part fails the merge before
anything is copied (:func:`pipeline.storage.read.reading` then moves it aside).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from pipeline.storage.outputs import output_names
from pipeline.storage.parts import PartInfo, combined_parts, open_parts
from pipeline.storage.write import chunk_cache, chunk_limits, encoding, leading_chunks, usable_compression, write_atomic


@dataclass
class Plan:
    """Which parts of which variables are copied as stored: ``copied[name]``, (file, offset) pairs,
    offsets along ``dim``; ``decoded[name]``, those of a copied variable written through netCDF4."""

    dim: str
    copied: dict[str, list[tuple[Path, int]]] = field(default_factory=dict)
    decoded: dict[str, list[tuple[Path, int]]] = field(default_factory=dict)

    def summary(self, variables: int) -> str:
        parts = sum(len(v) for v in self.copied.values())
        every = parts + sum(len(v) for v in self.decoded.values())
        return f"{len(self.copied)} of {variables} variables copied as stored ({parts} of {every} part-variables)"


def _layout(var) -> tuple:
    """What must match for a stored chunk to be a chunk of the other file (a netCDF4.Variable)."""
    return var.dimensions, var.dtype, var.chunking(), var.filters()


def _chunks_of_parts(name: str, parts: Sequence, limit: tuple[int, ...], want: tuple[int, ...]) -> tuple[int, ...]:
    """The chunks to write variable ``name`` in: those of ``parts`` (all but the last) where they
    share them, each part is whole chunks, and the chunks are within ``limit`` and over half of it
    (:func:`pipeline.storage.write.chunk_limits`); else ``want``, the merged file's own."""
    found = {tuple(part.variables[name].chunking()) if name in part.variables else None for part in parts}
    if len(found) != 1 or None in found:
        return want
    (shared,) = found
    rows = shared[0]
    whole = all(len(part.variables[name]) % rows == 0 for part in parts)
    return shared if whole and shared[1:] == limit[1:] and limit[0] // 2 < rows <= limit[0] else want


def plan_copy(merged: xr.Dataset, files: Sequence[Path], enc: dict) -> Plan:
    """Which chunks of ``files`` (the parts, in order) are chunks of ``merged`` written with ``enc``;
    ``enc`` takes the parts' chunks where they are close to its own (:func:`_chunks_of_parts`)."""
    import netCDF4

    dim = merged[output_names(merged)[0]].dims[0]
    names = [
        name
        for name, var in merged.variables.items()
        if name not in merged.dims and var.dims[:1] == (dim,) and "chunksizes" in enc.get(name, {})
    ]
    plan, limits = Plan(dim), chunk_limits(merged)
    chunk_cache(0)
    opened = [netCDF4.Dataset(f) for f in files]
    try:
        sizes = [len(part.dimensions[dim]) for part in opened]
        if sum(sizes) != merged.sizes[dim]:
            return plan
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        for name in names:
            stored = [part.variables.get(name) for part in opened]
            if None in stored or len({(var.dimensions, var.dtype) for var in stored}) > 1:
                continue  # parts that differ in type (or lack it): xarray's merge, which promotes
            want = _chunks_of_parts(name, opened[:-1] or opened, limits[name], enc[name]["chunksizes"])
            enc[name]["chunksizes"] = want
            filters = stored[0].filters()
            for i, (f, var, start, size) in enumerate(zip(files, stored, starts, sizes, strict=True)):
                aligned = start % want[0] == 0 and (size % want[0] == 0 or i == len(opened) - 1)
                alike = (
                    var.dimensions == merged[name].dims and tuple(var.chunking()) == want and var.filters() == filters
                )
                (plan.copied if aligned and alike else plan.decoded).setdefault(name, []).append((Path(f), start))
        for name in [n for n in plan.decoded if n not in plan.copied]:
            del plan.decoded[name]  # written by xarray with the rest
    finally:
        for part in opened:
            part.close()
    return plan


def _by_file(where: dict[str, list[tuple[Path, int]]]) -> dict[Path, list[tuple[str, int]]]:
    """(name, offset) pairs per part file, so that each file is opened once."""
    found: dict[Path, list[tuple[str, int]]] = {}
    for name, places in where.items():
        for path, start in places:
            found.setdefault(path, []).append((name, start))
    return found


def _check_readable(plan: Plan) -> None:
    """Read every copied part-variable through its checksums, a stored chunk at a time (a
    corrupted chunk raises here, before it could be copied)."""
    import netCDF4

    for path, names in _by_file(plan.copied).items():
        with netCDF4.Dataset(path) as part:
            for name, _ in names:
                var = part.variables[name]
                var.set_auto_maskandscale(False)
                step = var.chunking()[0]
                for start in range(0, var.shape[0], step):
                    var[start : start + step]


def _define(tmp: Path, merged: xr.Dataset, plan: Plan, enc: dict) -> None:
    """Create ``tmp`` with the copied variables defined as in their first part, and the parts of
    them that cannot be copied written through netCDF4 (raw values: no masking or scaling)."""
    import netCDF4

    files = {path for places in [*plan.copied.values(), *plan.decoded.values()] for path, _ in places}
    parts = {path: netCDF4.Dataset(path) for path in sorted(files)}
    try:
        with netCDF4.Dataset(tmp, "w", format="NETCDF4") as out:
            for dim, size in merged.sizes.items():
                out.createDimension(dim, size)
            for name in [n for n in merged.variables if n in plan.copied]:
                src = parts[plan.copied[name][0][0]].variables[name]
                attrs = {k: src.getncattr(k) for k in src.ncattrs()}
                fill = attrs.pop("_FillValue", None)
                var = out.createVariable(name, src.dtype, src.dimensions, fill_value=fill, **enc[name])
                var.setncatts(attrs)
                if _layout(var) != _layout(src):  # e.g. parts zstd, no zstd filter here: decode them all
                    plan.decoded[name] = plan.decoded.get(name, []) + plan.copied[name]
                    plan.copied[name] = []
                var.set_auto_maskandscale(False)
                for path, start in plan.decoded.get(name, []):
                    src = parts[path].variables[name]
                    src.set_auto_maskandscale(False)
                    step = src.chunking()[0]
                    for row in range(0, src.shape[0], step):
                        block = src[row : row + step]
                        var[start + row : start + row + len(block)] = block
    finally:
        for part in parts.values():
            part.close()
    plan.copied = {name: where for name, where in plan.copied.items() if where}


def _copy_chunks(tmp: Path, plan: Plan) -> None:
    """Copy the planned parts' stored chunks into ``tmp``, shifted by each part's offset along the dim."""
    import h5py

    with h5py.File(tmp, "r+") as out:
        for path, names in _by_file(plan.copied).items():
            with h5py.File(path, "r") as part:
                for name, start in names:
                    source, target = part[name].id, out[name].id
                    for i in range(source.get_num_chunks()):
                        offset = source.get_chunk_info(i).chunk_offset
                        mask, data = source.read_direct_chunk(offset)
                        target.write_direct_chunk((start + offset[0], *offset[1:]), data, mask)


@contextlib.contextmanager
def _layout_of_parts(files: Sequence[Path]) -> Iterator[xr.Dataset]:
    """The merged dataset's variables, dims, shapes and attrs, nothing read: the first part, lazily,
    its swept dim indexed to the length of all parts (:func:`plan_copy` and the file's definition)."""
    import netCDF4

    with xr.open_dataset(files[0]) as first:
        dim = first[output_names(first)[0]].dims[0]
        total = 0
        for path in files:
            with netCDF4.Dataset(path) as part:
                total += len(part.dimensions[dim])
        yield first.isel({dim: np.zeros(total, dtype=int)})


def write_merged(infos: Sequence[PartInfo], path: str | os.PathLike, note: str) -> str:
    """Write the parts ``infos`` (checked, in order) to ``path`` as one dataset, atomically, copying
    their stored chunks where the layouts allow (module doc); only the variables not copied are
    opened with xarray. ``note``: the history line. Returns what was copied, in words."""
    files = [info.path for info in infos]
    chunk_cache(0)  # each stored chunk is read once, and whole chunks are written
    with _layout_of_parts(files) as layout:
        enc = encoding(layout, usable_compression(layout, path))
        plan = plan_copy(layout, files, enc)
        _check_readable(plan)
        with open_parts(files, cache_bytes=0, drop=list(plan.copied)) as ds:
            rest = combined_parts(ds, infos, note)

            def write(tmp: Path) -> None:
                mode = "w"
                if plan.copied:
                    _define(tmp, layout, plan, enc)
                    mode = "a"
                rest.chunk(leading_chunks(rest, enc)).to_netcdf(
                    tmp,
                    mode=mode,
                    engine="netcdf4",
                    format="NETCDF4",
                    encoding={k: enc[k] for k in rest.variables if k in enc},
                )
                if plan.copied:
                    _drop_orphan_coordinates(tmp, layout)
                    _copy_chunks(tmp, plan)

            write_atomic(path, write)
        return plan.summary(len(layout.data_vars) + len(layout.coords))


def _drop_orphan_coordinates(tmp: Path, merged: xr.Dataset) -> None:
    """xarray lists coords that no variable it wrote refers to in a global ``coordinates`` attr;
    the copied variables refer to them, so the attr goes unless the whole dataset has it too."""
    import netCDF4

    _, attrs = xr.conventions.encode_dataset_coordinates(merged)
    with netCDF4.Dataset(tmp, "a") as out:
        if "coordinates" in out.ncattrs() and "coordinates" not in attrs:
            out.delncattr("coordinates")
