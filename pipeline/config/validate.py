"""Checks of a composed job config that the schema's types cannot express: ranges, consistency
between keys, unknown keys. Each failure is a :class:`~pipeline.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import MISSING as MISSING_FIELD
from dataclasses import fields, is_dataclass
from typing import Any

from omegaconf import DictConfig

from pipeline.checks import (
    check_bind,
    check_parameter_name,
    check_parts,
    fail,
)
from pipeline.config.schema import DESIGN_KINDS, JobConfig, MethodName, RangeConfig, SweepConfig, SweepKind
from pipeline.config.sizes import check_grid_size
from pipeline.design.sampling import points_per_base_point
from pipeline.errors import ConfigError
from pipeline.options import Options


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
    from pipeline.design.distributions import parse

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
    if sweep.kind in (SweepKind.sobol, SweepKind.saltelli) and sweep.n & (sweep.n - 1):
        example = 1 << int(math.log2(sweep.n))
        name = "Sobol'" if sweep.kind == SweepKind.sobol else "Saltelli"
        fail("sweep.n", sweep.n, f"a {name} design needs a power of two, e.g. {example}")
    total, group = design_points(sweep), points_per_base_point(sweep)
    size = sweep.part_size
    if size is not None:
        if sweep.parts != 1:
            fail("sweep.parts", sweep.parts, f"give sweep.parts or sweep.part_size, not both (part_size={size})")
        if size < 1 or total % size or size % group:
            start = min(max(size, group), total)
            nearest = next(d for d in range(start, 0, -1) if total % d == 0 and d % group == 0)
            what = f"sweep.n={sweep.n}" if group == 1 else f"the design's {total} points"
            whole = f" of whole base points ({group} points each)" if group > 1 else ""
            fail("sweep.part_size", size, f"must divide {what} into equal parts{whole}, e.g. {nearest}")
    return total


def _check_screen(sweep: DictConfig) -> None:
    """A two-stage study (``sweep.screen.top``): a sampled design of more parameters than it keeps."""
    screen = sweep.screen
    if screen.top is None:
        return
    if sweep.kind not in DESIGN_KINDS or sweep.kind == SweepKind.points:
        kinds = ", ".join(k.value for k in DESIGN_KINDS if k != SweepKind.points)
        fail("sweep.screen.top", screen.top, f"screening is for a sampled design (sweep.kind: {kinds})")
    count = len(sweep.parameters)
    if not 1 <= screen.top < count:
        fail(
            "sweep.screen.top",
            screen.top,
            f"must be between 1 and {count - 1}: the design has {count} parameters, and screening keeps fewer",
        )
    if screen.n < 2 or screen.n & (screen.n - 1):
        fail("sweep.screen.n", screen.n, "the screening design is a Sobol' design: a power of two >= 2, e.g. 256")


def _check_fixed(sweep: DictConfig, swept: list[str]) -> None:
    """``sweep.fixed`` names parameters that are not swept, each held at a finite value."""
    for name, value in sweep.fixed.items():
        check_parameter_name(name, f"sweep.fixed.{name}")
        if name in swept:
            fail(f"sweep.fixed.{name}", value, f"{name} is swept; a parameter is swept or fixed, not both")
        if not math.isfinite(value):
            fail(f"sweep.fixed.{name}", value, "a fixed parameter needs a finite value")


def design_points(sweep: SweepConfig) -> int:
    """The points of a design: ``n``, or ``n`` base points times their points for a Saltelli design."""
    return sweep.n * points_per_base_point(sweep)


def part_count(sweep: SweepConfig) -> int:
    """The number of compute jobs: ``sweep.parts``, or ``n / part_size`` for a design split by size."""
    return design_points(sweep) // sweep.part_size if sweep.kind in DESIGN_KINDS and sweep.part_size else sweep.parts


def validate(cfg: DictConfig | JobConfig) -> None:
    """Check what the schema's types cannot: ranges and consistency. Raises ConfigError."""
    _check_known_keys(cfg)
    sweep = cfg.sweep
    if not str(cfg.output).strip() or str(cfg.output).endswith(("/", ".")):
        fail("output", cfg.output, "give the file to write, e.g. output=outputs/my_study/sensitivity.nc")
    _check_screen(sweep)
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
    _check_fixed(sweep, list(counts))
    Options.from_config(cfg).checked(n_params=len(counts), prefix="method.")
    for key in ("values", "samples", "max_points"):
        if cfg.verify[key] < 1:
            fail(f"verify.{key}", cfg.verify[key], "must be >= 1 (verify.enabled=false turns the step off)")
    references = [m.value for m in MethodName if m.value != "none"]
    if not cfg.verify.methods:
        fail("verify.methods", [], f"give at least one of {', '.join(references)}")
    chosen = [str(getattr(m, "value", m)) for m in cfg.verify.methods]
    if "none" in chosen:
        fail("verify.methods", chosen, f"none computes no derivative; valid: {', '.join(references)}")
    if cfg.method.name == "none" and sweep.kind not in DESIGN_KINDS:
        fail("method.name", "none", "y only is for a sampled design's variance-based indices (sweep.kind: saltelli)")
    rtol = cfg.verify.get("rtol")
    if rtol is not None and not (0 < rtol < 1):
        fail("verify.rtol", rtol, "must be null (automatic) or between 0 and 1, e.g. 1e-6")
    if cfg.threads is not None and cfg.threads < 1:
        fail("threads", cfg.threads, "must be null (torch's default) or >= 1")
    check_bind(cfg.model.bind, [*counts, *sweep.fixed], key="model.bind")
