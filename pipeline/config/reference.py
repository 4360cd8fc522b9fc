"""docs/reference/config.md, generated from the structured configs (``python -m pipeline.config``)."""

from __future__ import annotations

from dataclasses import MISSING as MISSING_FIELD
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from pipeline.config.schema import JobConfig
from pipeline.paths import PACKAGE_CONF_DIR


def _show(value: Any) -> str:
    if value is MISSING:
        return "(required)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(getattr(value, "value", value))


def reference(node: type = JobConfig, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(key, type, default, help)`` for every key of the schema, nested groups flattened."""
    rows = []
    for f in fields(node):
        key = f"{prefix}{f.name}"
        factory = f.default_factory
        if isinstance(factory, type) and is_dataclass(factory):
            rows += reference(factory, f"{key}.")
            continue
        default = factory() if factory is not MISSING_FIELD else f.default
        rows.append((key, str(f.type).replace(" | ", " or "), _show(default), f.metadata.get("help", "")))
    return rows


GROUPS = {
    "model": "the routine `y = f(x; C)`: `_target_`, `args`, `bind`, `weights`, `units`, `output_dims`",
    "inputs": "the batch `x`: `_target_` and its `args`",
    "sweep": "the parameter values: a range, a list, a grid, or a sampled design",
    "method": "how derivatives are computed",
    "study": "one file per study: picks one option of each group above and sets values",
}
"""Hydra's config groups, in the order a study picks them."""


def groups_markdown(conf: Path = PACKAGE_CONF_DIR) -> list[str]:
    """The config groups and their options: the files of ``conf/<group>/``."""
    lines = ["| group | options | what |", "| --- | --- | --- |"]
    for group, what in GROUPS.items():
        options = ", ".join(f"`{p.stem}`" for p in sorted((conf / group).glob("*.yaml")))
        lines.append(f"| `{group}` | {options} | {what} |")
    return lines


def reference_markdown() -> str:
    """docs/reference/config.md: the config groups and every key of a compute job's config,
    generated from ``conf/`` and the structured configs."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `conf/` and the structured configs in `pipeline/config/` by `python -m pipeline.config`;",
        "a test keeps it in sync. Set any key on the command line (`sweep.num=2001`) or in a study file;",
        "pick a group's option with `group=option` (`method=reverse`). The workflow's own settings (which",
        "studies, where the outputs go, per-study overrides) are in `config/config.yaml`, described by",
        "`config/schema.yaml`.",
        "",
        "## Config groups",
        "",
        *groups_markdown(),
        "",
        "## Keys",
        "",
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| `{k}` | `{t}` | `{d}` | {h.replace('|', '/')} |" for k, t, d, h in reference()]
    return "\n".join(lines) + "\n"
