"""Structured configs: the schema every Hydra config in ``conf/`` is validated against.

A wrong type or an unknown key fails at composition time, before any compute, and Hydra's
message names the key. Checks that a type cannot express (ranges, consistency between keys)
live in :func:`validate`, which the job calls right after composing.

This module imports no torch, so the Snakefile can compose configs cheaply.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
from dataclasses import MISSING as MISSING_FIELD
from dataclasses import dataclass, field, fields, is_dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline import yamltext
from pipeline.checks import (
    COMPRESSIONS,
    DTYPES,
    HIDDEN_POLICIES,
    METHODS,
    NAN_POLICIES,
    check_bind,
    check_device,
    check_method_options,
    check_parameter_name,
    check_parts,
    fail,
)
from pipeline.errors import ConfigError
from pipeline.sizes import check_grid_size

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


HYDRA_VERSION_BASE = "1.3"
"""Hydra's behaviour defaults are those of 1.3, whatever Hydra version is installed."""

JOB_CONFIG = "job"
"""Primary config of a compute job (``conf/job.yaml``)."""


class SweepKind(StrEnum):
    """How sweep values are generated: a range or list (a grid), or a sampled design."""

    linear = "linear"
    log = "log"
    list = "list"
    sobol = "sobol"
    lhs = "lhs"
    random = "random"
    points = "points"


DESIGN_KINDS = (SweepKind.sobol, SweepKind.lhs, SweepKind.random, SweepKind.points)
"""Sweep kinds that are sampled designs: one dim ``point``, parameters in ``sweep.parameters``."""


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
MethodName.__doc__ = "Derivative methods (SPEC §5)."


def _opt(default: Any = MISSING, help: str = "", factory: Any = None) -> Any:
    """A dataclass field with a one-line ``help`` (read by :func:`reference` for docs/config.md)."""
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
    units: dict[str, str] = _opt(factory=dict, help="units of x, y, each swept parameter and dims, e.g. {y: m, C: s-1}")


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
    n: int | None = _opt(None, "points of a sampled design (sobol: a power of two)")
    seed: int = _opt(0, "seed of a sampled design")
    parameters: dict[str, str | None] = _opt(
        factory=dict,
        help="designs: parameter -> distribution, e.g. {C: 'uniform(0.5, 1.5)', K: 'loguniform(0.1, 10)'} "
        "(points: null where no bounds are wanted)",
    )
    path: str | None = _opt(None, "points: an N x P table (.npy, .csv with a header, .nc), relative to the workflow")


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
    values: int = _opt(5, "values of each swept parameter checked")
    samples: int = _opt(8, "samples checked")
    methods: list[MethodName] = _opt(
        factory=lambda: [MethodName.forward, MethodName.reverse, MethodName.finite_difference],
        help="reference methods, run in float64",
    )
    rtol: float | None = _opt(
        None, "least relative tolerance of every comparison, e.g. an adaptive ODE solver's rtol; null: automatic"
    )
    compare_along: str | None = _opt(None, "an output dim whose first two entries are compared (seed 002)")


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
    inputs_file: str | None = _opt(None, "read x from this file (written by pipeline.prepare) instead of inputs")
    output: str = _opt("sensitivity.nc", "NetCDF file the job writes")
    compression: Compression = _opt(
        Compression.zstd,
        "zstd (fast; HDF5 readers other than netCDF4 need its filter plugin) | zlib (any HDF5 reader, smaller, "
        "8x slower to write) | none",
    )


ConfigStore.instance().store(name="job_schema", node=JobConfig)


def _check_range(key: str, spec: DictConfig) -> int:
    """Check one parameter's range; return its number of values."""
    if spec.kind == SweepKind.list:
        values = spec["values"]  # item access: DictConfig.values is a method
        if not values:
            fail(f"{key}.values", values, "kind=list needs a non-empty list of numbers")
        if not all(math.isfinite(v) for v in values):
            fail(f"{key}.values", list(values), "every value must be finite")
        return len(values)
    for field_name in ("start", "stop", "num"):
        if spec[field_name] is None:
            fail(f"{key}.{field_name}", None, f"kind={spec.kind.value} needs start, stop and num")
    for field_name in ("start", "stop"):
        if not math.isfinite(spec[field_name]):
            fail(f"{key}.{field_name}", spec[field_name], "must be finite")
    if spec.num < 1:
        fail(f"{key}.num", spec.num, "must be at least 1")
    if spec.num > 1 and spec.stop <= spec.start:
        fail(f"{key}.stop", spec.stop, f"must be greater than {key}.start={spec.start}")
    if spec.kind == SweepKind.log and spec.start <= 0:
        fail(f"{key}.start", spec.start, "a log sweep needs start > 0 (and stop > 0)")
    return spec.num


def _schema_fields(schema: type) -> dict[str, Any]:
    return {f.name: f.default_factory if f.default_factory is not MISSING_FIELD else None for f in fields(schema)}


def unknown_keys(node: Any, schema: type = JobConfig, prefix: str = "") -> list[tuple[str, list[str]]]:
    """Keys of ``node`` that ``schema`` does not define, with the valid keys at that level.

    Hydra's ``+key=value`` adds a key even to a structured config; free-form dicts (``args``,
    ``units``, ``bind``) take any key, the rest of the schema none.
    """
    if not isinstance(node, DictConfig):
        return []
    known = _schema_fields(schema)
    found = []
    for key in node:
        if key not in known:
            found.append((f"{prefix}{key}", sorted(known)))
        elif isinstance(known[key], type) and is_dataclass(known[key]):
            found += unknown_keys(node[key], known[key], f"{prefix}{key}.")
        elif key == "grid" and isinstance(node[key], DictConfig):
            for name in node[key]:
                found += unknown_keys(node[key][name], RangeConfig, f"{prefix}grid.{name}.")
    return found


def _check_known_keys(cfg: DictConfig | JobConfig) -> None:
    problems = []
    for key, valid in unknown_keys(cfg):
        leaf = key.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(leaf, valid, n=1)
        hint = f"did you mean {key[: len(key) - len(leaf)]}{close[0]}? " if close else ""
        problems.append(f"{key!r} is not a config key ({hint}valid keys there: {', '.join(valid)})")
    if problems:
        raise ConfigError(f"invalid key{'s' if len(problems) > 1 else ''}: {'; '.join(problems)}")


def _check_design(sweep: DictConfig) -> int:
    """Check a sampled design's keys; return its number of points."""
    from pipeline.design import parse

    if not sweep.parameters:
        fail("sweep.parameters", {}, "a design needs its parameters and distributions, e.g. {C: 'uniform(0, 1)'}")
    if sweep.grid:
        fail("sweep.grid", dict(sweep.grid), "a design lists every parameter in sweep.parameters, not sweep.grid")
    for name, text in sweep.parameters.items():
        check_parameter_name(name, f"sweep.parameters.{name}")
        if text is not None or sweep.kind != SweepKind.points:
            parse(text, key=f"sweep.parameters.{name}")
    if sweep.kind == SweepKind.points:
        if not sweep.path:
            fail("sweep.path", None, "kind=points needs the path of an N x P table (.npy, .csv, .nc)")
        if sweep.part_size is not None:
            fail("sweep.part_size", sweep.part_size, "kind=points is split by sweep.parts")
        return -1  # known once the table is read
    if sweep.n is None or sweep.n < 1:
        fail("sweep.n", sweep.n, f"kind={sweep.kind.value} needs the number of points n >= 1")
    if sweep.kind == SweepKind.sobol and sweep.n & (sweep.n - 1):
        fail("sweep.n", sweep.n, f"a Sobol' design needs a power of two, e.g. {1 << int(math.log2(sweep.n))}")
    size = sweep.part_size
    if size is not None:
        if sweep.parts != 1:
            fail("sweep.parts", sweep.parts, f"give sweep.parts or sweep.part_size, not both (part_size={size})")
        if size < 1 or sweep.n % size:
            nearest = next(d for d in range(min(max(size, 1), sweep.n), 0, -1) if sweep.n % d == 0)
            fail("sweep.part_size", size, f"must divide sweep.n={sweep.n} into equal parts, e.g. {nearest}")
    return sweep.n


def part_count(sweep: SweepConfig) -> int:
    """The number of compute jobs: ``sweep.parts``, or ``n / part_size`` for a design split by size."""
    return sweep.n // sweep.part_size if sweep.kind in DESIGN_KINDS and sweep.part_size else sweep.parts


def validate(cfg: DictConfig | JobConfig) -> None:
    """Check what the schema's types cannot: ranges and consistency. Raises ConfigError."""
    _check_known_keys(cfg)
    sweep = cfg.sweep
    if not str(cfg.output).strip() or str(cfg.output).endswith(("/", ".")):
        fail("output", cfg.output, "give the file to write, e.g. output=outputs/my_study/sensitivity.nc")
    if sweep.kind in DESIGN_KINDS:
        if sweep.seed < 0:
            fail("sweep.seed", sweep.seed, "a design's seed is a whole number >= 0")
        count = _check_design(sweep)
        counts = dict.fromkeys(sweep.parameters, 1)
        if count > 0:
            check_grid_size({"point": count})
            check_parts(part_count(sweep), count, cfg.part, "point", prefix="sweep.")
    else:
        for name in (sweep.param, *sweep.grid):
            check_parameter_name(name, "sweep.param" if name == sweep.param else f"sweep.grid.{name}")
        if sweep.param in sweep.grid:
            fail(f"sweep.grid.{sweep.param}", "...", f"{sweep.param} is already the first swept parameter")
        count = _check_range("sweep", sweep)
        counts = {sweep.param: count}
        for name, spec in sweep.grid.items():
            counts[name] = _check_range(f"sweep.grid.{name}", spec)
        check_grid_size(counts)
        check_parts(sweep.parts, count, cfg.part, sweep.param, prefix="sweep.")
    method = cfg.method
    check_method_options(
        method.name,
        order=method.order,
        compile=method.compile,
        step=method.step,
        chunk_size=method.chunk_size,
        max_memory_mb=method.max_memory_mb,
        n_params=len(counts),
        prefix="method.",
    )
    for key in ("values", "samples"):
        if cfg.verify[key] < 1:
            fail(f"verify.{key}", cfg.verify[key], "must be >= 1 (verify.enabled=false turns the step off)")
    if not cfg.verify.methods:
        fail("verify.methods", [], f"give at least one of {', '.join(m.value for m in MethodName)}")
    rtol = cfg.verify.get("rtol")
    if rtol is not None and not (0 < rtol < 1):
        fail("verify.rtol", rtol, "must be null (automatic) or between 0 and 1, e.g. 1e-6")
    if cfg.threads is not None and cfg.threads < 1:
        fail("threads", cfg.threads, "must be null (torch's default) or >= 1")
    check_device(cfg.device)
    check_bind(cfg.model.bind, counts, key="model.bind")


def study_names(conf: Path | None = None) -> list[str]:
    """Names of the studies in ``conf/study/`` (of :func:`conf_dir` by default)."""
    return sorted(p.stem for p in ((conf or conf_dir()) / "study").glob("*.yaml"))


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
    file = (conf or conf_dir()) / "study" / f"{study}.yaml"
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
            group = (conf or conf_dir()) / "model" / f"{chosen[-1]}.yaml"
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
            f"(files of {conf / 'study'})"
        )
    path = conf / "study" / f"{study}.yaml"
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
            cfg = compose(config_name=JOB_CONFIG, overrides=[f"study={study}", *overrides])
    except (HydraException, OmegaConfBaseException) as err:
        causes = [str(err), *([str(err.__cause__)] if err.__cause__ else [])]
        text = " ".join(" ".join(causes).split())
        raise ConfigError(f"study {study} (overrides {list(overrides)}): {text}") from err
    try:
        validate(cfg)
    except ConfigError as err:
        raise ConfigError(f"study {study}: {err}") from err
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (stored in dataset attrs and used as a rerun trigger)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


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
        "Generated from the structured configs in `pipeline/config.py` by `python -m pipeline.config`;",
        "a test keeps it in sync. Set any key on the command line (`sweep.num=2001`) or in a study file.",
        "",
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| `{k}` | `{t}` | `{d}` | {h.replace('|', '/')} |" for k, t, d, h in reference()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
