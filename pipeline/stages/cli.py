"""The command-line layer of the stages: a Hydra entry point per job, one line per user error."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pipeline.config.screening import apply_screened
from pipeline.config.studies import HYDRA_VERSION_BASE, check_study_file
from pipeline.errors import SensweepError
from pipeline.paths import JOB_CONFIG, conf_dir, searchpath_override


def study_override(argv: list[str]) -> str | None:
    """The study named on a job's command line (``study=<name>``), if any."""
    chosen = [arg.split("=", 1)[1] for arg in argv if arg.startswith("study=")]
    return chosen[-1] if chosen else None


def job_main(job: Callable[[DictConfig, str], object]) -> Callable[[], None]:
    """A Hydra command-line entry point for ``job(cfg, study)`` (``python -m pipeline.stages.compute ...``).

    The study file is checked before Hydra composes it (an empty or malformed file gets one
    message naming it), and configs come from :func:`pipeline.paths.conf_dir`.
    """

    def main() -> None:
        # These jobs hold their arrays in memory (numpy, torch) and never make a dask array, but
        # xarray imports dask (half a second) to ask whether an array is one: they go without it.
        sys.modules.setdefault("dask.array", None)  # type: ignore[assignment]
        conf: list[Path] = []
        run_cli(lambda: conf.append(conf_dir()))
        sys.argv[1:1] = searchpath_override()  # a user's project: its conf/ before the workflow's
        study = study_override(sys.argv[1:])
        if study is not None:
            run_cli(lambda: check_study_file(study, conf[0]))

        @hydra.main(version_base=HYDRA_VERSION_BASE, config_path=str(conf[0]), config_name=JOB_CONFIG)
        def compose_and_run(cfg: DictConfig) -> None:
            run_cli(lambda: job(apply_screened(cfg), HydraConfig.get().runtime.choices.get("study", "")))

        compose_and_run()

    return main


def run_cli(job: Callable[[], object]) -> None:
    """Run a command-line job; a :class:`SensweepError` or ``OSError`` exits 1 with one clear line."""
    try:
        job()
    except (SensweepError, OSError) as err:
        print(f"sensweep: error: {err}", file=sys.stderr)
        sys.exit(1)
