"""docs/config.md, generated from the structured configs (``python -m pipeline.config``)."""

from __future__ import annotations

from dataclasses import MISSING as MISSING_FIELD
from dataclasses import fields, is_dataclass
from typing import Any

from omegaconf import MISSING

from pipeline.config.schema import JobConfig


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


def reference_markdown() -> str:
    """docs/config.md: every key of a compute job's config, generated from the structured configs."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the structured configs in `pipeline/config/` by `python -m pipeline.config`;",
        "a test keeps it in sync. Set any key on the command line (`sweep.num=2001`) or in a study file.",
        "",
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| `{k}` | `{t}` | `{d}` | {h.replace('|', '/')} |" for k, t, d, h in reference()]
    return "\n".join(lines) + "\n"
