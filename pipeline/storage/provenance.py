"""What determines a dataset's values, and where it came from.

A part file's ``fingerprint`` attr is a hash of everything that determines its numbers: the
study's resolved config without the keys that only say where or how fast a job runs
(:data:`NOT_DETERMINING`), and the input batch ``x``. Parts merge only when their fingerprints
agree; a file is verified only against the config it was computed from. Comparing configs
never imports or runs anything: stored configs are read as plain YAML.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import subprocess
import sys
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from omegaconf import DictConfig, OmegaConf

from pipeline.config import yamltext
from pipeline.paths import in_workflow, workflow_dir

NOT_DETERMINING = ("part", "output", "inputs_file", "screened", "threads", "verify", "compression")
"""Config keys that do not change a part's values (which part it is, paths, threads, the verify step,
how its file is compressed; what a screening file holds is in ``sweep`` once applied)."""

GROWABLE = ("sobol", "random", "saltelli")
"""Designs whose first n points are the same whatever their size: split by ``sweep.part_size``, a
part's values do not depend on ``sweep.n``, so a design grown to more points keeps its parts."""


def determining_config(cfg: DictConfig | str | dict) -> dict[str, Any]:
    """The config as a plain dict without :data:`NOT_DETERMINING`; a stored YAML string is parsed, not run.

    For a :data:`GROWABLE` design split by ``part_size``, ``sweep.n`` and ``sweep.parts`` only say
    how many parts there are, not what each holds: they are left out too.
    """
    if isinstance(cfg, str):
        plain = yamltext.load(cfg, "config attr") or {}
    elif isinstance(cfg, DictConfig):
        plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    else:
        plain = dict(cfg)
    out = {k: v for k, v in plain.items() if k not in NOT_DETERMINING}
    if isinstance(out.get("sweep"), dict) and grows_by_part_size(out["sweep"]):
        out["sweep"] = {k: v for k, v in out["sweep"].items() if k not in ("n", "parts")}
    return out


def grows_by_part_size(sweep: Mapping[str, Any]) -> bool:
    """A :data:`GROWABLE` design split by ``part_size`` (a sweep config, or its plain dict)."""
    return bool(sweep.get("part_size")) and sweep.get("kind") in GROWABLE


def data_files(cfg: DictConfig, root: str | Path) -> list[Path]:
    """Files whose bytes determine the numbers: trained weights, a design's table (named in the
    config; relative paths are relative to ``root``, the workflow folder), and the source file of
    the model (:func:`source_file`): an edited model reruns every part of its studies."""
    named = [cfg.model.get("weights"), cfg.sweep.get("path") if cfg.sweep.get("kind") == "points" else None]
    files = [in_workflow(f, root) for f in named if f]
    source = source_file(str(cfg.model.get("_target_") or ""), root)
    return [*files, *([source] if source else [])]


def source_file(target: str, root: str | Path) -> Path | None:
    """The ``.py`` file that defines the dotted path ``target`` (``my_models.solve``,
    ``pipeline.models.Oscillator``), found on ``root`` and ``sys.path`` without importing anything
    (the Snakefile asks for it before any job runs); ``None`` where it is not a plain file."""
    parts = target.split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    folders = [Path(root), *(Path(p) for p in sys.path if p)]
    with contextlib.suppress(ImportError, ValueError):  # a package an import hook finds (an editable install)
        spec = importlib.util.find_spec(parts[0])  # finds, does not import, a top-level name
        if spec is not None and spec.submodule_search_locations:
            folders += [Path(p).parent for p in spec.submodule_search_locations]
    for end in range(len(parts) - 1, 0, -1):  # the longest module prefix first: a.b.c, then a.b
        relative = Path(*parts[:end])
        for folder in folders:
            for candidate in (folder / relative.with_suffix(".py"), folder / relative / "__init__.py"):
                if candidate.is_file():
                    return candidate
    return None


def determining_yaml(cfg: DictConfig | str | dict) -> str:
    """:func:`determining_config` as canonical YAML (sorted keys): a rerun trigger and the hashed text."""
    return yaml.safe_dump(determining_config(cfg), sort_keys=True)


def fingerprint(cfg: DictConfig | str | dict, x: np.ndarray | list[np.ndarray]) -> str:
    """SHA-256 of the determining config, of its :func:`data_files` (the model's source among them),
    of ``x`` (dtype, shape, bytes) and of sensweep's version."""
    from pipeline import __version__

    digest = hashlib.sha256(determining_yaml(cfg).encode())
    digest.update(__version__.encode())
    if isinstance(cfg, DictConfig) and "model" in cfg:  # their bytes, not only their paths
        for file in data_files(cfg, workflow_dir()):
            if file.is_file():
                with file.open("rb") as f:
                    digest.update(hashlib.file_digest(f, "sha256").digest())
    for array in x if isinstance(x, list) else [x]:  # each input of a dict or tuple of inputs
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): node}


def config_differences(a: DictConfig | str | dict, b: DictConfig | str | dict) -> list[str]:
    """Dotted keys whose values differ between two configs, as ``key: a -> b`` (determining keys only)."""
    flat_a, flat_b = _flatten(determining_config(a)), _flatten(determining_config(b))
    missing = object()
    return [
        f"{key}: {flat_a.get(key, '(unset)')} -> {flat_b.get(key, '(unset)')}"
        for key in sorted(set(flat_a) | set(flat_b))
        if flat_a.get(key, missing) != flat_b.get(key, missing)
    ]


def provenance() -> dict[str, str]:
    """Versions of snakemake and the workflow's git commit, where available (netCDF-safe strings)."""
    found = {}
    with contextlib.suppress(PackageNotFoundError):
        found["snakemake_version"] = version("snakemake")
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        found["git_commit"] = commit.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return found
