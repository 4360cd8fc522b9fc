"""The merge's writer: part files' compressed chunks copied into ``sensitivity.nc`` as stored.

A part's stored chunk of a variable along the swept dim is, byte for byte, a chunk of the merged
file when both lay the variable out alike (chunk shape, type, and the filter pipeline: compression
and Fletcher-32 checksum) and the part starts on a chunk boundary of the merged file. Those chunks
are copied with HDF5's direct chunk I/O (h5py): not decompressed, checksummed and compressed
again, which was most of a merge's time. :func:`pipeline.storage.write.encoding` cuts a leading dim
in rows that divide it, so equal parts align. The other parts of such variables, and the swept
dim's coordinate, are written through netCDF4 (their stored values, decoded from and encoded to
the same layout); what is left (variables along other dims, the connectivity flags) through
xarray, as before: the file is the one a decoding merge writes.

Each copied part is first read through its checksums: a corrupted part fails the merge before
anything is copied (:func:`pipeline.storage.read.reading` then moves it aside). Every part file is
opened once (netCDF4 and h5py), as opening one of a few hundred variables takes a twentieth of a
second.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from pipeline.storage.outputs import output_names
from pipeline.storage.parts import PartInfo, combined_parts, open_parts
from pipeline.storage.write import chunk_cache, chunk_limits, encoding, leading_chunks, usable_compression, write_atomic

Parts = Mapping[Path, Any]
"""The part files, in order, each opened once as a netCDF4.Dataset."""


@dataclass
class Plan:
    """How each variable along the swept ``dim`` is written: ``copied[name]``, the parts whose stored
    chunks are copied, ``decoded[name]``, those written through netCDF4 (file, offset along ``dim``)."""

    dim: str
    copied: dict[str, list[tuple[Path, int]]] = field(default_factory=dict)
    decoded: dict[str, list[tuple[Path, int]]] = field(default_factory=dict)

    @property
    def handled(self) -> list[str]:
        """The variables written here, not by xarray."""
        return list(dict.fromkeys([*self.copied, *self.decoded]))

    def summary(self, variables: int) -> str:
        parts = sum(len(v) for v in self.copied.values())
        every = parts + sum(len(v) for name, v in self.decoded.items() if name != self.dim)
        return f"{len(self.copied)} of {variables} variables copied as stored ({parts} of {every} part-variables)"


def _layout(var) -> tuple:
    """What must match for a stored chunk to be a chunk of the other file (a netCDF4.Variable)."""
    return var.dimensions, var.dtype, var.chunking(), var.filters()


def _rows(var) -> int:
    """Rows of the leading dim per stored chunk (all of them where the variable is contiguous)."""
    chunks = var.chunking()
    return var.shape[0] if chunks == "contiguous" else chunks[0]


def _stored_blocks(var) -> Iterator[tuple[int, np.ndarray]]:
    """A part's variable (netCDF4) as stored (no masking or scaling), a stored chunk's rows at a
    time, each read through its checksum: (first row, values)."""
    var.set_auto_maskandscale(False)
    step = _rows(var)
    for row in range(0, var.shape[0], step):
        yield row, var[row : row + step]


def _chunks_of_parts(name: str, parts: Sequence, limit: tuple[int, ...], want: tuple[int, ...]) -> tuple[int, ...]:
    """The chunks to write variable ``name`` in: those of ``parts`` (all but the last) where they
    share them, each part is whole chunks, and the chunks are within ``limit`` and over half of it
    (:func:`pipeline.storage.write.chunk_limits`); else ``want``, the merged file's own."""
    found = {tuple(part.variables[name].chunking()) for part in parts}
    if len(found) != 1:
        return want
    (shared,) = found
    rows = shared[0]
    whole = all(len(part.variables[name]) % rows == 0 for part in parts)
    return shared if whole and shared[1:] == limit[1:] and limit[0] // 2 < rows <= limit[0] else want


def plan_copy(merged: xr.Dataset, parts: Parts, enc: dict) -> Plan:
    """How the variables of ``merged`` along its swept dim are written from ``parts`` with ``enc``;
    ``enc`` takes the parts' chunks where they are close to its own (:func:`_chunks_of_parts`).
    Variables of another type in some part, or not numeric, are left to xarray (which promotes)."""
    dim = merged[output_names(merged)[0]].dims[0]
    plan, limits, opened = Plan(dim), chunk_limits(merged), list(parts.values())
    sizes = [len(part.dimensions[dim]) for part in opened]
    if sum(sizes) != merged.sizes[dim]:
        return plan
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    for name, variable in merged.variables.items():
        stored = [part.variables.get(name) for part in opened]
        if variable.dims[:1] != (dim,) or None in stored or len({(v.dimensions, v.dtype) for v in stored}) > 1:
            continue
        if not isinstance(stored[0].dtype, np.dtype) or stored[0].dtype.kind not in "fiu":
            continue
        if name == dim:  # the swept dim's coordinate: its values, part after part
            plan.decoded[name] = list(zip(parts, starts, strict=True))
            continue
        want = _chunks_of_parts(name, opened[:-1] or opened, limits[name], enc[name]["chunksizes"])
        enc[name]["chunksizes"] = want
        filters = stored[0].filters()
        for i, (path, var, start, size) in enumerate(zip(parts, stored, starts, sizes, strict=True)):
            aligned = start % want[0] == 0 and (size % want[0] == 0 or i == len(opened) - 1)
            alike = var.dimensions == variable.dims and tuple(var.chunking()) == want and var.filters() == filters
            (plan.copied if aligned and alike else plan.decoded).setdefault(name, []).append((path, start))
    return plan


def _by_file(where: dict[str, list[tuple[Path, int]]]) -> dict[Path, list[tuple[str, int]]]:
    """(name, offset) pairs per part file."""
    found: dict[Path, list[tuple[str, int]]] = {}
    for name, places in where.items():
        for path, start in places:
            found.setdefault(path, []).append((name, start))
    return found


def _check_readable(plan: Plan, parts: Parts) -> None:
    """Read every copied part-variable through its checksums, a stored chunk at a time (a
    corrupted chunk raises here, before it could be copied)."""
    for path, names in _by_file(plan.copied).items():
        for name, _ in names:
            for _ in _stored_blocks(parts[path].variables[name]):
                pass  # the read is the check


def _define(tmp: Path, merged: xr.Dataset, plan: Plan, enc: dict, parts: Parts) -> None:
    """Create ``tmp`` with the dims and the variables the plan handles, defined as in their first
    part, and write the parts of them that are not copied (stored values: no masking or scaling)."""
    import netCDF4

    with netCDF4.Dataset(tmp, "w", format="NETCDF4") as out:
        for dim, size in merged.sizes.items():
            out.createDimension(dim, size)
        for name in [n for n in merged.variables if n in plan.handled]:
            first = (plan.copied.get(name) or plan.decoded[name])[0][0]
            src = parts[first].variables[name]
            attrs = {k: src.getncattr(k) for k in src.ncattrs()}
            fill = attrs.pop("_FillValue", None)
            options = {k: v for k, v in enc.get(name, {}).items() if k != "_FillValue"}
            var = out.createVariable(name, src.dtype, src.dimensions, fill_value=fill, **options)
            var.setncatts(attrs)
            if plan.copied.get(name) and _layout(var) != _layout(src):  # e.g. no zstd filter here
                plan.decoded[name] = plan.decoded.get(name, []) + plan.copied.pop(name)
            var.set_auto_maskandscale(False)
            for path, start in plan.decoded.get(name, []):
                for row, block in _stored_blocks(parts[path].variables[name]):
                    var[start + row : start + row + len(block)] = block


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
def _layout_of_parts(parts: Parts) -> Iterator[xr.Dataset]:
    """The merged dataset's variables, dims, shapes and attrs, nothing read: the first part's, its
    variables along the swept dim as long as all parts together, of zeros that take no memory."""
    with xr.open_dataset(next(iter(parts))) as first:
        dim = first[output_names(first)[0]].dims[0]
        total = sum(len(part.dimensions[dim]) for part in parts.values())

        def widened(var: xr.Variable) -> xr.Variable:
            if dim not in var.dims:
                return var
            shape = tuple(total if d == dim else n for d, n in zip(var.dims, var.shape, strict=True))
            return xr.Variable(var.dims, np.broadcast_to(np.zeros((), var.dtype), shape), var.attrs, var.encoding)

        yield xr.Dataset(
            {name: widened(var.variable) for name, var in first.data_vars.items()},
            coords={name: widened(var.variable) for name, var in first.coords.items()},
            attrs=first.attrs,
        )


def write_merged(infos: Sequence[PartInfo], path: str | os.PathLike, note: str) -> str:
    """Write the parts ``infos`` (checked, in order) to ``path`` as one dataset, atomically, copying
    their stored chunks where the layouts allow (module doc). ``note``: the history line. Returns
    what was copied, in words."""
    import netCDF4

    files = [info.path for info in infos]
    chunk_cache(0)  # each stored chunk is read once, and whole chunks are written
    with contextlib.ExitStack() as stack:
        parts = {path: stack.enter_context(netCDF4.Dataset(path)) for path in files}
        layout = stack.enter_context(_layout_of_parts(parts))
        enc = encoding(layout, usable_compression(layout, path))
        plan = plan_copy(layout, parts, enc)
        _check_readable(plan, parts)
        handled = plan.handled
        source = layout
        if any(plan.dim in v.dims and n not in handled for n, v in layout.variables.items()):
            # along the swept dim, not numeric or not of one type: xarray concatenates (and promotes)
            source = stack.enter_context(open_parts(files, cache_bytes=0, drop=[n for n in handled if n != plan.dim]))
        rest = combined_parts(source, infos, note).drop_vars(handled)

        def write(tmp: Path) -> None:
            if handled:
                _define(tmp, layout, plan, enc, parts)
            rest.chunk(leading_chunks(rest, enc)).to_netcdf(
                tmp,
                mode="a" if handled else "w",
                engine="netcdf4",
                format="NETCDF4",
                encoding={k: enc[k] for k in rest.variables if k in enc},
            )
            if handled:
                _drop_orphan_coordinates(tmp, layout)
                _copy_chunks(tmp, plan)

        write_atomic(path, write)
        return plan.summary(len(layout.data_vars) + len(layout.coords))


def _drop_orphan_coordinates(tmp: Path, merged: xr.Dataset) -> None:
    """xarray lists coords that no variable it wrote refers to in a global ``coordinates`` attr;
    the variables written here refer to them, so the attr goes unless the whole dataset has it too."""
    import netCDF4

    _, attrs = xr.conventions.encode_dataset_coordinates(merged)
    with netCDF4.Dataset(tmp, "a") as out:
        if "coordinates" in out.ncattrs() and "coordinates" not in attrs:
            out.delncattr("coordinates")
