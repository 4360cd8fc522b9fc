"""Workflow stage: reduce ``sensitivity.nc`` to ``summary.nc`` (:func:`pipeline.summary.summarise`).

The input is opened lazily (dask), so the sweep need not fit in memory; a design is read in chunks
of the points its summary reads at once.

``python -m pipeline.stages.summarise SENSITIVITY [SENSITIVITY ...] -o SUMMARY`` (``sensitivity.nc``, the
part files, or a ``parts/`` folder).
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Sequence

import xarray as xr

from pipeline.design.bounds import block_points
from pipeline.stages.cli import run_cli
from pipeline.stages.headline import headline
from pipeline.stages.html import write_markdown
from pipeline.storage.names import sweep_dims, swept_parameters
from pipeline.storage.outputs import output_names, select_output
from pipeline.storage.parts import Source, one_or_many, open_sensitivity, source_files
from pipeline.storage.read import reading
from pipeline.storage.write import CHUNK_CACHE_BYTES, write_netcdf
from pipeline.summary import summarise

REDUCE_CHUNK_ELEMENTS = 2**21
"""Elements per dask chunk of the reductions (8 MiB of float32), whatever the file's chunks.

The files' own chunks (about 2^18 elements) make a graph of thousands of tasks on a long sweep,
whose scheduling costs time and memory; larger chunks keep the graph small."""


def summarise_file(
    sensitivity: Source,
    output: str | os.PathLike,
    headline_md: str | os.PathLike | None = None,
    headline_html: str | os.PathLike | None = None,
) -> None:
    """Summarise a sensitivity NetCDF file (or part files, or a ``parts/`` folder) into ``output``, out of core.

    An input that turns out unreadable is moved aside and named (:func:`pipeline.storage.read.reading`).
    """
    with reading(source_files(sensitivity), "sensitivity file"):
        with open_sensitivity(sensitivity) as probe:  # attrs and sizes only
            chunks = _design_chunks(probe) if sweep_dims(probe) == ["point"] else None
        with warnings.catch_warnings():  # a part's blocks need not align with its stored chunks: cached reads
            warnings.filterwarnings("ignore", "The specified chunks separate the stored chunks", UserWarning)
            # a design's chunks are whole stored chunks, each read once: no chunk cache (it kept every
            # chunk read, up to 4 MiB per variable: 800 MB for 201 variables)
            opened = open_sensitivity(sensitivity, chunks=chunks or {}, cache_bytes=0 if chunks else CHUNK_CACHE_BYTES)
        with opened:
            ds = opened
            if chunks is None:
                param = sweep_dims(ds)[0]
                per_value = max(1, sum(ds[n].size for n in output_names(ds)) // ds.sizes[param])
                ds = ds.chunk({param: max(1, REDUCE_CHUNK_ELEMENTS // per_value)})
            summary = summarise(ds)
            write_netcdf(summary, output)
            if headline_md is not None:
                write_markdown(headline_md, headline(ds, summary), headline_html)


def _design_chunks(ds: xr.Dataset) -> dict[str, int]:
    """Dask chunks of a design read by its summary: the points it reads at once
    (:func:`~pipeline.design.bounds.block_points`), so that each block reads its own points and no
    more: a divisor of the files' stored chunks where it is less, else a multiple of them."""
    params = swept_parameters(ds)
    block = min(block_points(select_output(ds, name), params) for name in output_names(ds))
    stored = [v.encoding.get("chunksizes") for v in ds.data_vars.values() if v.dims[:1] == ("point",)]
    largest = max((c[0] for c in stored if c), default=0)
    if block < largest:
        block = largest // -(-largest // block)
    elif largest:  # whole stored chunks, each read once
        block -= block % largest
    return {"point": block}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.stages.summarise", description=__doc__.splitlines()[0])
    parser.add_argument("sensitivity", nargs="+", help="sensitivity.nc, a study's part files, or its parts/ folder")
    parser.add_argument("-o", "--output", required=True, help="summary.nc to write")
    parser.add_argument("--headline", help="the study's headline numbers as Markdown")
    parser.add_argument("--headline-html", help="the same as a page for the HTML report")
    args = parser.parse_args(argv)
    run_cli(lambda: summarise_file(one_or_many(args.sensitivity), args.output, args.headline, args.headline_html))


if __name__ == "__main__":
    main()
