"""Workflow stage 3: combine a study's part files into ``sensitivity.nc``, or open them as one.

``python -m pipeline.stages.merge OUTPUT PART [PART ...]``. The parts' compressed chunks are
copied into the merged file as stored where the layouts allow, after a read through their
checksums; the rest is opened lazily with ``xr.open_mfdataset`` (combined by the swept
parameter's coordinate) and streamed to disk (:mod:`pipeline.storage.chunkcopy`), so the merged
sweep never has to fit in memory. Before anything is read, the parts' attrs must show one
complete sweep of one config: parts ``0 .. parts-1``, each once, with the same ``fingerprint``
(:mod:`pipeline.storage.provenance`). Parts of different configs are refused, naming the files
and the keys that differ.

:func:`pipeline.storage.parts.open_sensitivity` opens ``sensitivity.nc``, a list of part files or a
``parts/`` folder as the same dataset: the workflow's "no merge" mode (``merge: false``)
summarises, plots and verifies the parts directly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pipeline.stages.cli import run_cli
from pipeline.storage.chunkcopy import write_merged
from pipeline.storage.parts import checked_parts
from pipeline.storage.read import reading
from pipeline.storage.write import drop_last_good


def merge_parts(paths: Sequence[str | os.PathLike], output: str | os.PathLike, temporary: bool = False) -> None:
    """Write the parts of one study as a single dataset; its history keeps every part's line.

    Parts are checked by their attrs first (:func:`pipeline.storage.parts.check_one_sweep`), then
    their data through its checksums: a part that fails to read is moved aside and named, and no
    output is written.
    ``temporary``: the parts are deleted once merged (``keep_parts: false``), so their kept
    versions go too, once the merged file is written.
    """
    infos = checked_parts(paths)
    files = [info.path for info in infos]
    with reading(files, "part file"):
        copied = write_merged(infos, output, f"merged {len(files)} parts (pipeline.stages.merge)")
    print(f"{output}: {copied}", file=sys.stderr)
    if temporary:
        drop_last_good(files)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.stages.merge", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="merged NetCDF file to write")
    parser.add_argument("parts", nargs="+", help="part files written by pipeline.stages.compute")
    parser.add_argument("--temporary", action="store_true", help="the parts are deleted once merged")
    args = parser.parse_args(argv)
    run_cli(lambda: merge_parts(args.parts, args.output, args.temporary))


if __name__ == "__main__":
    main()
