"""Workflow stage: a study's results must come from its current config before anything reads them.

Snakemake decides what to rerun from its own records (file times, and the params and code it
saw). An outputs folder copied from another config, two workflow copies sharing one, or a run
with ``--rerun-triggers mtime`` after a config change can leave results that Snakemake takes as
up to date although another config computed them. This stage runs whenever a study's config
changes (its output's name holds a hash of the determining config) or its results do: it reads
the results' ``fingerprint`` (:mod:`pipeline.storage.provenance`) and refuses them, naming the keys that
differ, unless they were computed from the config the workflow runs now. Summarise, plot and
verify read the results only after it.

``python -m pipeline.stages.current SENSITIVITY [...] --study NAME [--overrides ...] --marker PATH``
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import xarray as xr
from omegaconf import DictConfig

from pipeline.config.studies import compose_job
from pipeline.errors import VerificationError
from pipeline.inputs import input_arrays
from pipeline.stages.cli import run_cli
from pipeline.storage.parts import one_or_many, open_sensitivity, source_files
from pipeline.storage.provenance import config_differences, fingerprint
from pipeline.storage.read import reading
from pipeline.storage.write import write_atomic

RECOMPUTE = "rerun snakemake to recompute it"


def check_computed_from(ds: xr.Dataset, cfg: DictConfig, advice: str = RECOMPUTE) -> None:
    """Refuse ``ds`` unless its ``fingerprint`` is that of ``cfg`` and its own ``x`` (VerificationError)."""
    stored = ds.attrs.get("fingerprint")
    if stored == fingerprint(cfg, input_arrays(ds)):
        return
    if stored is None:
        raise VerificationError(
            "the sensitivity data has no fingerprint attr (not written by pipeline.stages.compute, or "
            "its attrs were edited): recompute it with this workflow to verify it"
        )
    keys = config_differences(ds.attrs.get("config", ""), cfg)
    raise VerificationError(
        "the sensitivity data was not computed from this study's config: "
        + (
            f"keys that differ (file -> config): {'; '.join(keys)}"
            if keys
            else "its config, inputs x, model source or sensweep version changed after it was computed"
        )
        + f"; {advice}"
    )


def check_current(sources: Sequence[str], study: str, overrides: Sequence[str], marker: str | Path) -> None:
    """Refuse results of another config (module doc); mark them current otherwise."""
    source = one_or_many(sources)
    cfg = compose_job(study, list(overrides))
    advice = (
        f"Snakemake took them as up to date (a copied or shared outputs folder, or --rerun-triggers "
        f"mtime): recompute them with `snakemake --forcerun compute --config studies=[{study}]`"
    )
    with reading(source_files(source), "sensitivity file"), open_sensitivity(source) as ds:
        check_computed_from(ds, cfg, advice)
    write_atomic(marker, lambda tmp: Path(tmp).write_text(f"{ds.attrs.get('fingerprint', '')}\n"))


def study_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a stage that reads a study's results for its config: the results, the study, its overrides."""
    parser.add_argument("sensitivity", nargs="+", help="sensitivity.nc, a study's part files, or its parts/ folder")
    parser.add_argument("--study", required=True, help="the study (conf/study/<name>.yaml) the data was computed for")
    parser.add_argument("--overrides", nargs="*", default=[], help="the study's Hydra overrides, as in the workflow")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.stages.current", description=__doc__.splitlines()[0])
    study_arguments(parser)
    parser.add_argument("--marker", required=True, help="file written once the results are found current")
    args = parser.parse_args(argv)
    run_cli(lambda: check_current(args.sensitivity, args.study, args.overrides, args.marker))


if __name__ == "__main__":
    main()
