"""Structured configs: the schema every Hydra config in ``conf/`` is validated against.

A wrong type or an unknown key fails at composition time, before any compute, and Hydra's
message names the key. Checks that a type cannot express (ranges, consistency between keys)
live in :func:`validate`, which the job calls right after composing.

This module imports no torch, so the Snakefile can compose configs cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
"""The repository's Hydra config directory (``conf/``)."""

JOB_CONFIG = "job"
"""Primary config of a compute job (``conf/job.yaml``)."""


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and the valid choices."""


class SweepKind(StrEnum):
    """How sweep values are generated."""

    linear = "linear"
    log = "log"
    list = "list"


class DType(StrEnum):
    """Floating-point precision of the computation."""

    float32 = "float32"
    float64 = "float64"


NanPolicy = StrEnum("NanPolicy", {"warn": "warn", "raise": "raise"})  # `raise` is a keyword: functional API
NanPolicy.__doc__ = "What a job does with NaN or Inf in y or dy/dC."


class MethodName(StrEnum):
    """Derivative methods (SPEC §5)."""

    forward = "forward"
    forward_dual = "forward_dual"
    reverse = "reverse"
    loop = "loop"
    finite_difference = "finite_difference"


@dataclass
class ModelConfig:
    """The routine ``y = f(x; C)``.

    ``_target_`` is a dotted path to a function ``f(x, C, **args)`` or to an ``nn.Module``
    class built as ``cls(**args)`` and called as ``module(x)``; for a module, ``bind`` maps
    each swept parameter to the dotted path of a module parameter (or one element of one),
    e.g. ``{C: "branch_b.0.bias[1]"}``.
    """

    _target_: str = MISSING
    args: dict[str, Any] = field(default_factory=dict)
    bind: dict[str, str] | None = None
    output_dims: list[str] | None = None
    units: dict[str, str] = field(default_factory=dict)


@dataclass
class InputsConfig:
    """The batch ``x`` (leading dim = samples): ``_target_(**args)`` returns it.

    Built-ins live in :mod:`pipeline.inputs` (``arange``, ``random``, ``from_file``).
    """

    _target_: str = MISSING
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class RangeConfig:
    """Values of one swept parameter: a linear or log range, or an explicit list."""

    kind: SweepKind = SweepKind.linear
    start: float | None = None
    stop: float | None = None
    num: int | None = None
    values: list[float] | None = None


@dataclass
class SweepConfig(RangeConfig):
    """The swept parameter ``param`` (its range inline), further parameters of a grid, and parts.

    ``grid`` adds parameters, each its own dim: ``{k: {kind: log, start: 0.1, stop: 10, num: 5}}``.
    The sweep is split into ``parts`` compute jobs along the first parameter.
    """

    param: str = "C"
    grid: dict[str, RangeConfig] = field(default_factory=dict)
    parts: int = 1


@dataclass
class MethodConfig:
    """How derivatives are computed."""

    name: MethodName = MethodName.forward
    chunk_size: int | None = None
    max_memory_mb: int | None = None
    step: float | None = None
    order: int = 1


@dataclass
class VerifyConfig:
    """The verify step: other methods (float64) on a sample of values and samples."""

    enabled: bool = True
    values: int = 5
    samples: int = 8
    methods: list[MethodName] = field(
        default_factory=lambda: [MethodName.forward, MethodName.reverse, MethodName.finite_difference]
    )
    compare_along: str | None = None


@dataclass
class JobConfig:
    """One compute job: a study (model, inputs, sweep, method) and the run-wide settings."""

    model: ModelConfig = field(default_factory=ModelConfig)
    inputs: InputsConfig = field(default_factory=InputsConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    title: str = ""
    device: str = "auto"
    dtype: DType = DType.float32
    nan_policy: NanPolicy = NanPolicy["warn"]
    seed: int = 0
    threads: int | None = None
    part: int | None = None
    inputs_file: str | None = None
    output: str = "sensitivity.nc"


ConfigStore.instance().store(name="job_schema", node=JobConfig)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:<index>")


def _fail(key: str, value: Any, valid: str) -> None:
    raise ConfigError(f"invalid {key}={value!r}: {valid}")


def _check_range(key: str, spec: DictConfig) -> int:
    """Check one parameter's range; return its number of values."""
    if spec.kind == SweepKind.list:
        values = spec["values"]  # item access: DictConfig.values is a method
        if not values:
            _fail(f"{key}.values", values, "kind=list needs a non-empty list of numbers")
        if not all(math.isfinite(v) for v in values):
            _fail(f"{key}.values", list(values), "every value must be finite")
        return len(values)
    for field_name in ("start", "stop", "num"):
        if spec[field_name] is None:
            _fail(f"{key}.{field_name}", None, f"kind={spec.kind.value} needs start, stop and num")
    for field_name in ("start", "stop"):
        if not math.isfinite(spec[field_name]):
            _fail(f"{key}.{field_name}", spec[field_name], "must be finite")
    if spec.num < 1:
        _fail(f"{key}.num", spec.num, "must be at least 1")
    if spec.num > 1 and spec.stop <= spec.start:
        _fail(f"{key}.stop", spec.stop, f"must be greater than {key}.start={spec.start}")
    if spec.kind == SweepKind.log and spec.start <= 0:
        _fail(f"{key}.start", spec.start, "a log sweep needs start > 0 (and stop > 0)")
    return spec.num


def validate(cfg: DictConfig | JobConfig) -> None:
    """Check what the schema's types cannot: ranges and consistency. Raises ConfigError."""
    sweep = cfg.sweep
    for name in (sweep.param, *sweep.grid):
        if not name.isidentifier():
            _fail("sweep.param" if name == sweep.param else f"sweep.grid.{name}", name,
                  "parameter names must be Python identifiers such as C")
    if sweep.param in sweep.grid:
        _fail(f"sweep.grid.{sweep.param}", "...", f"{sweep.param} is already the first swept parameter")
    count = _check_range("sweep", sweep)
    for name, spec in sweep.grid.items():
        _check_range(f"sweep.grid.{name}", spec)
    if not 1 <= sweep.parts <= count:
        _fail("sweep.parts", sweep.parts, f"must be between 1 and the number of values of {sweep.param} ({count})")
    if cfg.part is not None and not 0 <= cfg.part < sweep.parts:
        _fail("part", cfg.part, f"must be between 0 and sweep.parts-1 ({sweep.parts - 1})")
    if cfg.method.chunk_size is not None and cfg.method.chunk_size < 1:
        _fail("method.chunk_size", cfg.method.chunk_size, "must be null (automatic) or >= 1")
    if cfg.method.max_memory_mb is not None and cfg.method.max_memory_mb < 1:
        _fail("method.max_memory_mb", cfg.method.max_memory_mb, "must be null (automatic) or >= 1")
    if cfg.method.step is not None and (cfg.method.name != MethodName.finite_difference or not cfg.method.step > 0):
        _fail("method.step", cfg.method.step, "only for method=finite_difference, and > 0 (null: automatic)")
    for key in ("values", "samples"):
        if cfg.verify[key] < 1:
            _fail(f"verify.{key}", cfg.verify[key], "must be >= 1 (verify.enabled=false turns the step off)")
    if not cfg.verify.methods:
        _fail("verify.methods", [], f"give at least one of {', '.join(m.value for m in MethodName)}")
    if cfg.threads is not None and cfg.threads < 1:
        _fail("threads", cfg.threads, "must be null (torch's default) or >= 1")
    device = cfg.device
    if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
        _fail("device", device, f"valid: {', '.join(DEVICE_CHOICES)}")
    if cfg.model.bind is not None:
        swept = [sweep.param, *sweep.grid]
        for name in cfg.model.bind:
            if name not in swept:
                _fail(f"model.bind.{name}", cfg.model.bind[name], f"swept parameters are {', '.join(swept)}")
    if cfg.method.order not in (1, 2) or (cfg.method.order == 2 and (
            cfg.method.name != MethodName.forward or sweep.grid)):
        _fail("method.order", cfg.method.order, "1, or 2 with method=forward and one swept parameter")


def study_names(conf_dir: Path = CONF_DIR) -> list[str]:
    """Names of the studies in ``conf/study/``."""
    return sorted(p.stem for p in (conf_dir / "study").glob("*.yaml"))


def compose_job(study: str, overrides: list[str] = (), conf_dir: Path = CONF_DIR) -> DictConfig:
    """Compose and validate the config of ``study`` as the compute job would see it.

    Used by the Snakefile (job parameters, rerun on change) and by tests.
    """
    if study not in study_names(conf_dir):
        raise ConfigError(f"unknown study {study!r}: valid studies are {', '.join(study_names(conf_dir))}")
    with initialize_config_dir(config_dir=str(conf_dir), version_base=None):
        cfg = compose(config_name=JOB_CONFIG, overrides=[f"study={study}", *overrides])
    validate(cfg)
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (stored in dataset attrs and used as a rerun trigger)."""
    return OmegaConf.to_yaml(cfg, resolve=True)
