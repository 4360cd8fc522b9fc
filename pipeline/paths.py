"""Where sensweep finds and puts things: the config folder, and the file names the workflow writes.

Imports nothing heavy, so the Snakefile loads it without torch, Hydra or matplotlib.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import ConfigError

PACKAGE_CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
"""The ``conf/`` folder beside the package's source tree."""

CONF_ENV = "SENSWEEP_CONF"
"""Environment variable naming the Hydra config folder (the Snakefile sets it to its own ``conf/``)."""


def conf_dir() -> Path:
    """The Hydra config folder every job and the Snakefile compose from.

    ``$SENSWEEP_CONF`` if set, else ``./conf`` when the working folder has one (a copied
    workflow folder uses its own study files), else the package's own ``conf/``.
    """
    if os.environ.get(CONF_ENV):
        found = Path(os.environ[CONF_ENV]).resolve()
        if not (found / f"{JOB_CONFIG}.yaml").is_file():
            raise ConfigError(f"invalid {CONF_ENV}={os.environ[CONF_ENV]!r}: no {JOB_CONFIG}.yaml in that folder")
        return found
    local = Path.cwd() / "conf"
    if (local / f"{JOB_CONFIG}.yaml").is_file():
        return local.resolve()
    return PACKAGE_CONF_DIR


JOB_CONFIG = "job"
"""Primary config of a compute job (``conf/job.yaml``)."""


def workflow_dir(conf: Path | None = None) -> Path:
    """The workflow folder: the one holding ``conf/`` (of :func:`conf_dir` by default)."""
    return (conf or conf_dir()).parent


def in_workflow(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """A file named in a config (weights, data, a design's table): absolute as written, else relative
    to the workflow folder (``root``, or :func:`workflow_dir`), so that ``data/...`` means the same
    file whatever folder a job runs in."""
    path = Path(path)
    return path if path.is_absolute() else Path(root if root is not None else workflow_dir()) / path


# The plots the workflow writes: pipeline.stages.plot writes them and the Snakefile lists them as
# outputs (a caption report/<name>.rst goes with each).
PLOTS = ("derivative_vs_param.png", "derivative_heatmap.png", "output_vs_param.png", "derivative_along_output.png")
"""Written by :func:`pipeline.stages.plot.plot_study` for a grid sweep."""

DESIGN_PLOTS = ("derivatives_at_points.png", "parameter_ranking.png", "output_at_points.png", "bounds_along_output.png")
"""Written by :func:`pipeline.stages.plot.plot_design` for a sampled design (dim ``point``)."""

AGREEMENT_PLOT = "method_agreement.png"
"""Written by :func:`pipeline.stages.plot.plot_agreement` (the verify rule), beside the others."""
