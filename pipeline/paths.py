"""Where sensweep finds and puts things: the config folder, and the file names the workflow writes.

Imports nothing heavy, so the Snakefile loads it without torch, Hydra or matplotlib.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import ConfigError

_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def _workflow_root() -> Path:
    """The workflow's own files (Snakefile, rules/, conf/, config/, report/, envs/): the source tree
    beside the package (a clone, an editable install), else the copy a wheel ships in the package."""
    if (_SOURCE_ROOT / "Snakefile").is_file() and (_SOURCE_ROOT / "conf" / "job.yaml").is_file():
        return _SOURCE_ROOT
    return Path(__file__).resolve().parent / "workflow_files"


WORKFLOW_ROOT = _workflow_root()
"""Where the workflow's own files are (:func:`_workflow_root`)."""

SNAKEFILE = WORKFLOW_ROOT / "Snakefile"
"""The workflow, for ``snakemake --snakefile`` from a project folder (``python -m pipeline.workflow``)."""

PACKAGE_CONF_DIR = WORKFLOW_ROOT / "conf"
"""The workflow's own Hydra config folder (the groups, the built-in studies)."""

CONF_ENV = "SENSWEEP_CONF"
"""Environment variable naming the Hydra config folder (the Snakefile sets it to its own ``conf/``)."""

PROJECT_ENV = "SENSWEEP_PROJECT"
"""Environment variable naming a user's project folder: its ``conf/`` (study files, and groups of
its own) goes on Hydra's search path before the workflow's, and the files its configs name are
relative to it. The Snakefile sets it when it runs in a folder other than its own."""


def project_dir() -> Path | None:
    """The user's project folder (``$SENSWEEP_PROJECT``), or None: the workflow's own folder."""
    found = os.environ.get(PROJECT_ENV)
    return Path(found).resolve() if found else None


def search_path() -> list[Path]:
    """Config folders before the primary one: the project's ``conf/`` where it has one."""
    project = project_dir()
    return [project / "conf"] if project is not None and (project / "conf").is_dir() else []


def searchpath_override() -> list[str]:
    """The Hydra override that puts :func:`search_path` on Hydra's search path (none without a project)."""
    folders = search_path()
    return [f"hydra.searchpath=[{','.join(f'file://{f}' for f in folders)}]"] if folders else []


def config_file(group: str, name: str, conf: Path | None = None) -> Path:
    """``<group>/<name>.yaml`` as Hydra finds it: in the project's ``conf/`` first, else in ``conf``."""
    for folder in [*search_path(), conf or conf_dir()]:
        if (folder / group / f"{name}.yaml").is_file():
            return folder / group / f"{name}.yaml"
    return (conf or conf_dir()) / group / f"{name}.yaml"


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
    """The folder the files of a config are relative to: the user's project (:func:`project_dir`),
    else the workflow folder, the one holding ``conf/`` (of :func:`conf_dir` by default)."""
    project = project_dir()
    return project if project is not None and conf is None else (conf or conf_dir()).parent


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
