"""Study files and composing a job's config from them with Hydra (the Snakefile and every job)."""

from __future__ import annotations

import contextlib
import difflib
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.config import yamltext
from pipeline.config.screening import apply_screened
from pipeline.config.validate import validate
from pipeline.errors import ConfigError
from pipeline.paths import JOB_CONFIG, conf_dir, config_file, search_path, searchpath_override

HYDRA_VERSION_BASE = "1.3"
"""Hydra's behaviour defaults are those of 1.3, whatever Hydra version is installed."""


def study_names(conf: Path | None = None) -> list[str]:
    """Names of the studies in ``conf/study/`` (of :func:`conf_dir` by default) and in the user's
    project's (:func:`pipeline.paths.search_path`)."""
    folders = [*search_path(), conf or conf_dir()]
    return sorted({p.stem for folder in folders for p in (folder / "study").glob("*.yaml")})


def check_study_name(study: str) -> None:
    """A study's name becomes a Hydra override, a Snakemake wildcard and a folder: letters, digits, ``_``, ``-``."""
    if not study or not all(c.isalnum() or c in "_-" for c in study):
        raise ConfigError(
            f"invalid study name {study!r}: a study file's name may hold letters, digits, '_' and '-' only "
            f"(rename conf/study/{study}.yaml, e.g. to {'_'.join(study.split()) or 'my_study'}.yaml)"
        )


def study_title(cfg: DictConfig, study: str, conf: Path | None = None) -> str:
    """The study's ``title``; where its model was swapped (``model=custom`` on the command line for a
    study written for another model), the model's target and the study instead: not a title about
    a model that did not run."""
    file = config_file("study", study, conf)
    try:
        spec = yaml.safe_load(file.read_text()) or {}
    except (OSError, yaml.YAMLError):
        spec = {}
    if cfg.title and cfg.title != spec.get("title"):  # a title given on the command line
        return cfg.title
    own = (spec.get("model") or {}).get("_target_") if isinstance(spec.get("model"), dict) else None
    if own is None:
        chosen = [
            d["override /model"] for d in spec.get("defaults") or [] if isinstance(d, dict) and "override /model" in d
        ]
        if chosen:
            group = config_file("model", chosen[-1], conf)
            with contextlib.suppress(OSError, yaml.YAMLError, AttributeError):
                own = (yaml.safe_load(group.read_text()) or {}).get("_target_")
    if own is not None and own != "???" and own != cfg.model._target_:
        return f"{cfg.model._target_} ({study} sweep)"
    return cfg.title or study


def closest(name: str, valid: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``valid``, or nothing."""
    match = difflib.get_close_matches(name, valid, n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def check_study_file(study: str, conf: Path | None = None, including: list[str] | None = None) -> None:
    """A study must be a file of ``conf/study/`` holding a YAML mapping; say what is wrong otherwise.

    Hydra reports an empty study file as "Key 'study' not in 'JobConfig'" and malformed YAML
    with a long traceback; this check runs first and names the file.
    """
    conf = conf or conf_dir()
    names = study_names(conf)
    check_study_name(study)
    if study not in names:
        raise ConfigError(
            f"unknown study {study!r}{closest(study, names)}: valid studies are {', '.join(names)} "
            f"(files of {', '.join(str(f / 'study') for f in [*search_path(), conf])})"
        )
    path = config_file("study", study, conf)
    content = yamltext.load_file(path, "study file")
    if not isinstance(content, dict) or not content:
        raise ConfigError(
            f"invalid study file {path}: it is empty or not a mapping; a study file sets keys such "
            "as title, model, sweep (see conf/study/seed_linear.yaml)"
        )
    chain = [*(including or []), study]
    for other in _included_studies(content):
        if other in chain:
            cycle = " -> ".join([*chain[chain.index(other) :], other])
            raise ConfigError(f"invalid study file {path}: the studies include each other in a cycle ({cycle})")
        check_study_file(other, conf, including=chain)


def _included_studies(content: dict) -> list[str]:
    """The studies a study file's defaults list includes (``- /study/<name>``, ``- study: <name>``)."""
    found = []
    for entry in content.get("defaults") or []:
        items = entry.items() if isinstance(entry, dict) else [(entry, None)]
        for key, value in items:
            key = str(key).removeprefix("override ").strip().lstrip("/")
            if key.startswith("study/"):
                found.append(key.removeprefix("study/"))
            elif key == "study" and isinstance(value, str):
                found.append(value)
    return found


def compose_job(study: str, overrides: list[str] = (), conf: Path | None = None) -> DictConfig:
    """Compose and validate the config of ``study`` as the compute job would see it.

    Used by the Snakefile (job parameters, rerun on change) and by tests. Hydra and OmegaConf
    errors become :class:`ConfigError` naming the study and the overrides.
    """
    conf = conf or conf_dir()
    check_study_file(study, conf)
    try:
        with initialize_config_dir(config_dir=str(conf), version_base=HYDRA_VERSION_BASE):
            cfg = compose(config_name=JOB_CONFIG, overrides=[*searchpath_override(), f"study={study}", *overrides])
    except (HydraException, OmegaConfBaseException) as err:
        causes = [str(err), *([str(err.__cause__)] if err.__cause__ else [])]
        text = " ".join(" ".join(causes).split())
        raise ConfigError(f"study {study} (overrides {list(overrides)}): {text}") from err
    try:
        validate(apply_screened(cfg))
    except ConfigError as err:
        raise ConfigError(f"study {study}: {err}") from err
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (stored in dataset attrs and used as a rerun trigger)."""
    return OmegaConf.to_yaml(cfg, resolve=True)
