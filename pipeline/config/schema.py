"""Structured configs: the schema every Hydra config in ``conf/`` is validated against.

A wrong type or an unknown key fails at composition time, before any compute, and Hydra's
message names the key. Checks that a type cannot express (ranges, consistency between keys)
live in :func:`validate`, which the job calls right after composing.

This module imports no torch, so the Snakefile can compose configs cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from pipeline.checks import (
    COMPRESSIONS,
    DTYPES,
    HIDDEN_POLICIES,
    METHODS,
    NAN_POLICIES,
)


class SweepKind(StrEnum):
    """How sweep values are generated: a range or list (a grid), or a sampled design."""

    linear = "linear"
    log = "log"
    list = "list"
    sobol = "sobol"
    lhs = "lhs"
    random = "random"
    saltelli = "saltelli"
    points = "points"


DESIGN_KINDS = (SweepKind.sobol, SweepKind.lhs, SweepKind.random, SweepKind.saltelli, SweepKind.points)
"""Sweep kinds that are sampled designs: one dim ``point``, parameters in ``sweep.parameters``."""


class ScreenRanking(StrEnum):
    """What ranks the parameters of a screening stage."""

    upper_bound = "upper_bound"
    mu_star = "mu_star"


# The choices come from pipeline.checks, their one home (the functional API: `raise` is a keyword).
DType = StrEnum("DType", {d: d for d in DTYPES})
DType.__doc__ = "Floating-point precision of the computation."


NanPolicy = StrEnum("NanPolicy", {p: p for p in NAN_POLICIES})
Compression = StrEnum("Compression", {c: c for c in COMPRESSIONS})
Compression.__doc__ = "How the job's NetCDF files are compressed (all carry checksums)."
HiddenPolicy = StrEnum("HiddenPolicy", {p: p for p in HIDDEN_POLICIES})
HiddenPolicy.__doc__ = "What a job does where finite differences see y move but autodiff gives exactly 0."
NanPolicy.__doc__ = "What a job does with NaN or Inf in y or dy/dC."


MethodName = StrEnum("MethodName", {m: m for m in METHODS})
MethodName.__doc__ = "Derivative methods (the method argument of pipeline.sensitivity)."


def _opt(default: Any = MISSING, help: str = "", factory: Any = None) -> Any:
    """A dataclass field with a one-line ``help`` (read by :func:`reference` for docs/reference/config.md)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    """The routine ``y = f(x; C)`` (group ``model``)."""

    _target_: str = _opt(help="dotted path of a function f(x, C, **args) or an nn.Module class built as cls(**args)")
    args: dict[str, Any] = _opt(factory=dict, help="keyword arguments of the function or the class")
    bind: dict[str, str] = _opt(
        factory=dict,
        help="for a module: swept parameter -> parameter path, e.g. "
        "{C: 'a.0.bias[1]'} (on the command line: '+model.bind.C=...')",
    )
    weights: str | None = _opt(
        None,
        "trained weights loaded into the module: a state dict saved with torch.save (.pt/.pth) or a .safetensors "
        "file, relative to the workflow folder; null: the module's seeded initialisation",
    )
    output_dims: list[str] | None = _opt(None, "names of y's dims after sample (default: the model's, else output)")
    units: dict[str, Any] = _opt(
        factory=dict,
        help="units of x, y, each swept parameter and dims, e.g. {y: m, C: s-1}; x of components in different "
        "units: one per coordinate of its last dim, {x: {position: m, velocity: m s-1}}",
    )


@dataclass
class InputsConfig:
    """The batch ``x``, leading dim = samples (group ``inputs``)."""

    _target_: str = _opt(
        help="dotted path of a function returning x (built-ins: pipeline.inputs.arange, random, from_file)"
    )
    args: dict[str, Any] = _opt(factory=dict, help="its keyword arguments")


@dataclass
class RangeConfig:
    """Values of one swept parameter: a linear or log range, or an explicit list."""

    kind: SweepKind = _opt(SweepKind.linear, "linear | log | list; the sweep also: sobol | lhs | random | points")
    start: float | None = _opt(None, "first value (linear, log)")
    stop: float | None = _opt(None, "last value, included (linear, log)")
    num: int | None = _opt(None, "number of values (linear, log)")
    values: list[float] | None = _opt(None, "the values (list; sorted, distinct)")


@dataclass
class ScreenConfig:
    """A two-stage study: every parameter screened by a derivative design first, then the study's
    own design of the ``top`` ranked highest, the others held at their median."""

    top: int | None = _opt(None, "parameters kept for the study's design after screening; null: no screening")
    n: int = _opt(256, "points of the screening design (a Sobol' design of every parameter; a power of two)")
    by: ScreenRanking = _opt(
        ScreenRanking.upper_bound,
        "upper_bound (the DGSM upper bound on the total index: what is left out provably matters less) | mu_star",
    )


@dataclass
class SweepConfig(RangeConfig):
    """The swept parameter, further parameters of a grid, and parts (group ``sweep``)."""

    param: str = _opt("C", "name of the first swept parameter (its range is given inline)")
    grid: dict[str, RangeConfig] = _opt(
        factory=dict, help="further parameters, each its own dim: {k: {kind: log, start: 0.1, stop: 10, num: 5}}"
    )
    parts: int = _opt(1, "compute jobs the sweep is split into, along the first parameter (designs: along point)")
    part_size: int | None = _opt(
        None,
        "designs, instead of parts: points per compute job; a sobol or random design grown to more points "
        "then reuses the parts already computed",
    )
    n: int | None = _opt(
        None, "points of a sampled design (sobol: a power of two); saltelli: base points (a power of two)"
    )
    second_order: bool = _opt(False, "saltelli: also the points of second-order indices (2P + 2 per base point)")
    seed: int = _opt(0, "seed of a sampled design")
    parameters: dict[str, str | None] = _opt(
        factory=dict,
        help="designs: parameter -> distribution, e.g. {C: 'uniform(0.5, 1.5)', K: 'loguniform(0.1, 10)'} "
        "(points: null where no bounds are wanted)",
    )
    path: str | None = _opt(None, "points: an N x P table (.npy, .csv with a header, .nc), relative to the workflow")
    fixed: dict[str, float] = _opt(
        factory=dict,
        help="parameters held at a value, not swept: a function model's keyword argument, or a bound module "
        "element set to it ({K: 1.0}, bound in model.bind)",
    )
    screen: ScreenConfig = _opt(factory=ScreenConfig, help="designs: screen every parameter first (two stages)")


@dataclass
class MethodConfig:
    """How derivatives are computed (group ``method``)."""

    name: MethodName = _opt(
        MethodName.auto,
        "auto (forward, batched, or reverse where parameters outnumber outputs; else per point with a warning) | "
        + " | ".join(m for m in METHODS if m != "auto"),
    )
    chunk_size: int | None = _opt(None, "points per batched pass; null: the largest that fits max_memory_mb")
    max_memory_mb: int | None = _opt(None, "memory budget of one pass; null: a quarter of free RAM / GPU memory")
    step: float | None = _opt(None, "finite_difference(_per_point) step; null: eps^(1/3) * max(|C|, 1)")
    order: int = _opt(1, "2 adds d2y/dC2 (forward, one swept parameter)")
    compile: bool = _opt(
        False, "forward through torch.compile: one step of a TimeStepper model, else the whole batched jvp (order 1)"
    )


@dataclass
class VerifyConfig:
    """The verify step: other methods in float64 on a sample of points."""

    enabled: bool = _opt(True, "run the verify step for this study")
    values: int = _opt(5, "values of each swept parameter checked (a sampled design: values^P of its points)")
    max_points: int = _opt(125, "at most this many points of a sampled design checked (values^P grows fast)")
    samples: int = _opt(8, "samples checked")
    methods: list[MethodName] = _opt(
        factory=lambda: [MethodName.forward, MethodName.reverse, MethodName.finite_difference],
        help="reference methods, run in float64",
    )
    rtol: float | None = _opt(
        None, "least relative tolerance of every comparison, e.g. an adaptive ODE solver's rtol; null: automatic"
    )
    compare_along: str | None = _opt(
        None, "an output dim whose first two entries are compared (e.g. slice: a conv sliced before vs after)"
    )


@dataclass
class JobConfig:
    """One compute job: a study (model, inputs, sweep, method) and the run-wide settings."""

    model: ModelConfig = _opt(factory=ModelConfig, help="group model")
    inputs: InputsConfig = _opt(factory=InputsConfig, help="group inputs")
    sweep: SweepConfig = _opt(factory=SweepConfig, help="group sweep")
    method: MethodConfig = _opt(factory=MethodConfig, help="group method")
    verify: VerifyConfig = _opt(factory=VerifyConfig, help="the verify step")
    title: str = _opt("", "title of the study's datasets and plots")
    device: str = _opt("auto", "auto (CUDA when available) | cpu | cuda | cuda:<index>")
    device_fallback: bool = _opt(False, "device=cuda without CUDA: false fails the job, true warns and runs on the CPU")
    dtype: DType = _opt(DType.float32, "float32 | float64")
    nan_policy: NanPolicy = _opt(NanPolicy["warn"], "NaN/Inf in y or dy/dC: warn (counted in attrs) | raise")
    hidden_policy: HiddenPolicy = _opt(
        HiddenPolicy["warn"],
        "dy/dp disagrees with the model's own differences (0 where y moves, or wrong): warn (auto: differences "
        "instead) | raise | off",
    )
    seed: int = _opt(0, "seeds input generation and model initialisation")
    threads: int | None = _opt(None, "torch CPU threads; null: torch's default")
    part: int | None = _opt(None, "which part of the sweep this job computes; null: all")
    inputs_file: str | None = _opt(None, "read x from this file (written by pipeline.stages.prepare) instead of inputs")
    stage: str = _opt("", "the stage of a two-stage study a job computes (screen: its screening), set by the workflow")
    screened: str | None = _opt(
        None, "the parameters a screening stage kept (a file the workflow writes, pipeline.stages.screen)"
    )
    output: str = _opt("sensitivity.nc", "NetCDF file the job writes")
    compression: Compression = _opt(
        Compression.zstd,
        "zstd (fast; HDF5 readers other than netCDF4 need its filter plugin) | zlib (any HDF5 reader, smaller, "
        "several times slower to write) | none",
    )


ConfigStore.instance().store(name="job_schema", node=JobConfig)
