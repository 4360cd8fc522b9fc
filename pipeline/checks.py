"""The checks of a run's options: one home, used by the config (``pipeline.config.validate.validate``) and the API.

Each check raises :class:`~pipeline.errors.ConfigError` as ``invalid <key>=<value>: <what is
valid>``. The config names keys as in the YAML (``method.order``), the API as its arguments
(``order``): callers pass ``prefix``. The derivative methods behind them trust their callers.
This module needs neither torch nor Hydra.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.errors import ConfigError

METHODS = (
    "auto",
    "forward",
    "forward_dual",
    "reverse",
    "loop",
    "finite_difference",
    "forward_per_point",
    "reverse_per_point",
    "finite_difference_per_point",
    "none",
)
"""Derivative methods, by their config name (``auto``: batched forward mode, else a fallback; ``none``:
``y`` only, for variance-based indices)."""

DTYPES = ("float32", "float64")
NAN_POLICIES = ("warn", "raise")
HIDDEN_POLICIES = ("warn", "raise", "off")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:<index>")
COMPRESSIONS = ("zstd", "zlib", "none")
"""How NetCDF variables are compressed (:func:`pipeline.storage.write.encoding`); the first is the default."""


def fail(key: str, value: Any, valid: str) -> None:
    """Raise the one message every check gives."""
    raise ConfigError(f"invalid {key}={value!r}: {valid}")


def check_choice(key: str, value: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if str(getattr(value, "value", value)) not in choices:
        fail(key, value, f"valid: {', '.join(choices)}")


def check_device(device: str, key: str = "device") -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:<index>`` (whether CUDA is there is checked where torch is)."""
    if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
        fail(key, device, f"valid: {', '.join(DEVICE_CHOICES)}")


def check_method_options(
    method: str,
    *,
    order: int = 1,
    compile: bool = False,
    step: float | None = None,
    chunk_size: int | None = None,
    max_memory_mb: int | None = None,
    n_params: int = 1,
    prefix: str = "",
) -> None:
    """The derivative method and the options that go with it."""
    method = str(getattr(method, "value", method))
    check_choice(f"{prefix}name" if prefix else "method", method, METHODS)
    if chunk_size is not None and not (is_whole(chunk_size) and chunk_size >= 1):
        fail(f"{prefix}chunk_size", chunk_size, "must be null (automatic) or a whole number >= 1")
    if max_memory_mb is not None and not (is_whole(max_memory_mb) and max_memory_mb >= 1):
        fail(f"{prefix}max_memory_mb", max_memory_mb, "must be null (automatic) or a whole number >= 1")
    if step is not None and (not method.startswith("finite_difference") or not (math.isfinite(step) and step > 0)):
        fail(f"{prefix}step", step, "only for method=finite_difference(_per_point), and > 0 (null: automatic)")
    if order not in (1, 2) or (order == 2 and (method not in ("auto", "forward") or n_params != 1)):
        fail(f"{prefix}order", order, "1, or 2 with method=forward (or auto) and one swept parameter")
    if compile and (method not in ("auto", "forward") or order != 1):
        fail(f"{prefix}compile", True, "only for method=forward (or auto) with order=1")


def is_whole(value: Any) -> bool:
    """An integer, Python's or NumPy's (not a bool, not 2.5)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


RESERVED_ATTRS = (
    "Conventions",
    "title",
    "history",
    "source",
    "swept_parameters",
    "bound_to",
    "structurally_independent_outputs",
    "outputs",
    "input_structure",
    "design",
    "design_seed",
    "design_second_order",
    "failed_points",
    "method",
    "method_requested",
    "fallback_reason",
    "method_choice",
    "compiled",
    "device",
    "dtype",
    "torch_version",
    "sensweep_version",
    "fingerprint",
)
"""Dataset attrs sensweep writes itself (and prefixes of those it writes per parameter, below): a
caller's ``attrs`` may not overwrite them, or the file would misreport how it was computed."""

RESERVED_ATTR_PREFIXES = ("nonfinite_", "hidden_dependence_", "derivative_mismatch_", "distribution_")


def check_attrs(attrs: Mapping[str, Any] | None, key: str = "attrs") -> None:
    """Extra dataset attrs: string names, none of the ones sensweep writes."""
    for name in attrs or {}:
        if not isinstance(name, str) or name in RESERVED_ATTRS or name.startswith(RESERVED_ATTR_PREFIXES):
            fail(
                key,
                name,
                "sensweep writes this attr itself (how the result was computed); use another name, "
                f"not one of {', '.join(RESERVED_ATTRS)} nor starting with {', '.join(RESERVED_ATTR_PREFIXES)}",
            )


def is_tensor_path(path: str) -> bool:
    """A bind path without an index (``"0.bias"``) or with a slice (``"0.bias[0:8]"``) names a whole
    tensor (or part of one): derivatives at the model's own values, not a swept parameter."""
    return "[" not in path or ":" in path


def check_bind(bind: Mapping[str, str] | None, swept: Iterable[str], key: str = "bind") -> None:
    """Every bound name is a swept parameter (one element), or a whole tensor or slice (not swept)."""
    swept = list(swept)
    for name in bind or {}:
        check_parameter_name(name, key)
        if name not in swept and not is_tensor_path(str(bind[name])):
            fail(
                f"{key}.{name}",
                bind[name],
                f"swept parameters are {', '.join(swept)}; a parameter not swept needs a whole tensor "
                "('0.bias') or a slice ('0.bias[0:8]')",
            )
        if name in swept and ":" in str(bind[name]):
            fail(
                f"{key}.{name}",
                bind[name],
                f"{name} is swept, so it needs one element, e.g. '{str(bind[name]).split('[')[0]}[0]'; "
                "derivatives with respect to a slice take a name that is not swept",
            )


def check_parts(parts: int, count: int, part: int | None, param: str, prefix: str = "") -> None:
    """``parts`` between 1 and the number of values of the first parameter; ``part`` one of them."""
    if not 1 <= parts <= count:
        fail(f"{prefix}parts", parts, f"must be between 1 and the number of values of {param} ({count})")
    if part is not None and not 0 <= part < parts:
        fail("part", part, f"must be between 0 and sweep.parts-1 ({parts - 1})")


def check_dataset_names(
    params: Iterable[str],
    *,
    output_dims: Iterable[str],
    inputs: Iterable[str],
    input_dims: Iterable[str] = (),
    design: bool = False,
    key: str = "params",
) -> None:
    """The names a sensitivity dataset will hold, checked before anything is computed: a parameter
    or an output dim named like another variable, dim or coordinate would overwrite it (a swept
    coordinate lost, a file the later stages cannot read)."""
    from pipeline.storage.names import connected_name, derivative_name, second_derivative_name

    params, output_dims = list(params), list(output_dims)
    made = {"y", "sample", *(["point"] if design else [])}
    for p in params:
        made |= {derivative_name(p), connected_name(p), second_derivative_name(p)}
    inputs = set(inputs)
    for p in params:
        if p in made | inputs | set(output_dims) | set(input_dims):
            what = "an output dim" if p in output_dims else "an input" if p in inputs | set(input_dims) else "a name"
            fail(
                key,
                p,
                f"{p!r} is {what} the dataset uses; name the parameter otherwise (reserved: y, sample, point, "
                "dy_d<p>, d2y_d<p>2, dy_d<p>_connected, the inputs' and output dims' names)",
            )
    for dim in output_dims:
        if dim in made | set(params) | inputs:
            fail("output_dims", output_dims, f"{dim!r} is already a parameter, input or variable of the dataset")
    if len(set(output_dims)) != len(output_dims):
        fail("output_dims", output_dims, "each output dim needs its own name")


def check_parameter_name(name: str, key: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        fail(key, name, "parameter names must be Python identifiers such as C")
