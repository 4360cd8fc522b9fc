"""A two-stage study in one config (``sweep.screen``): its screening stage and its screened design.

Stage 1 is the study with a Sobol' design of every parameter and derivatives (:func:`stage_overrides`);
:mod:`pipeline.stages.screen` ranks the parameters from its summary and writes the file of what it
kept. Stage 2 is the study's own design over the kept parameters, the others held at their median
(:func:`apply_screened`, given that file as ``screened``). Every job of stage 2 applies the same
file, so its configs, fingerprints and checks agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from pipeline.config import yamltext
from pipeline.config.hydratext import quoted
from pipeline.errors import ConfigError

SCREEN_SUFFIX = ".screen"
"""A study's screening stage is the study ``<name>.screen`` (a dot: no study file has one in its name)."""


def stage_overrides(cfg: DictConfig) -> list[str]:
    """Hydra overrides that turn a screened study into its screening stage: a Sobol' design of every
    parameter (``sweep.screen.n`` points, one part) with derivatives."""
    overrides = [
        f"stage={SCREEN_SUFFIX.lstrip('.')}",
        "sweep.kind=sobol",
        f"sweep.n={cfg.sweep.screen.n}",
        "sweep.screen.top=null",
        "sweep.second_order=false",
        "sweep.part_size=null",
        "sweep.parts=1",
    ]
    title = f"{cfg.title or 'study'}: screening of every parameter"
    overrides.append(f"title={quoted(title)}")
    if cfg.method.name.value == "none":  # the screening needs the derivatives
        overrides.append("method=forward")
    return overrides


def read_screened(path: str | Path) -> dict[str, Any]:
    """The screening file: ``{parameters: [kept, ...], fixed: {name: value}, ...}``."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"invalid screened={str(path)!r}: cannot read it ({err.strerror or err})") from err
    content = yamltext.load(text, f"screening file {path}") or {}
    if not isinstance(content, dict) or not isinstance(content.get("parameters"), list):
        raise ConfigError(
            f"invalid screened={str(path)!r}: not a screening file (written by pipeline.stages.screen, "
            "with a list 'parameters'); rerun the study's screening stage"
        )
    return content


def apply_screened(cfg: DictConfig) -> DictConfig:
    """``cfg`` with ``sweep.parameters`` reduced to those the screening file ``cfg.screened`` kept and
    the others in ``sweep.fixed`` at the values it gives; unchanged where ``screened`` is null."""
    if not cfg.get("screened"):
        return cfg
    content = read_screened(cfg.screened)
    kept, fixed = list(content["parameters"]), dict(content.get("fixed") or {})
    swept = dict(cfg.sweep.parameters)
    unknown = [p for p in [*kept, *fixed] if p not in swept]
    top = cfg.sweep.screen.top
    if unknown or set(kept) & set(fixed) or (top is not None and len(kept) != min(top, len(swept))):
        raise ConfigError(
            f"invalid screened={cfg.screened!r}: it keeps {kept} and fixes {sorted(fixed)}, which do not "
            f"match this study's sweep.parameters ({', '.join(swept)}) and sweep.screen.top={top}; rerun "
            "the screening stage"
        )
    cfg.sweep.parameters = {p: swept[p] for p in kept}
    cfg.sweep.fixed = {**cfg.sweep.fixed, **{p: float(v) for p, v in fixed.items()}}
    cfg.sweep.screen.top = None
    return cfg
