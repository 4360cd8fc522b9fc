"""How a sensitivity run computes: one frozen options object, validated once.

:func:`pipeline.sensitivity` builds it from its keyword arguments and a workflow job from its
config (:meth:`Options.from_config`); :meth:`Options.checked` runs the checks of
:mod:`pipeline.checks` with the keys named as that caller knows them (``order`` or
``method.order``). Needs neither torch nor Hydra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.checks import DTYPES, HIDDEN_POLICIES, NAN_POLICIES, check_choice, check_device, check_method_options


@dataclass(frozen=True)
class Options:
    """The options of :func:`pipeline.sensitivity` that decide how derivatives are computed and checked
    (its docstring says what each does)."""

    method: str = "auto"
    device: str = "auto"
    dtype: str | None = None
    chunk_size: int | None = None
    max_memory_mb: int | None = None
    step: float | None = None
    nan_policy: str = "warn"
    hidden_policy: str = "warn"
    order: int = 1
    compile: bool = False

    @classmethod
    def from_config(cls, cfg: Any, device: str | None = None) -> Options:
        """The options of a composed job config (``method.*``, ``dtype``, ``device``, the policies)."""
        return cls(
            method=cfg.method.name.value,
            device=device or cfg.device,
            dtype=cfg.dtype.value,
            chunk_size=cfg.method.chunk_size,
            max_memory_mb=cfg.method.max_memory_mb,
            step=cfg.method.step,
            nan_policy=cfg.nan_policy.value,
            hidden_policy=cfg.hidden_policy.value,
            order=cfg.method.order,
            compile=cfg.method.compile,
        )

    def checked(self, n_params: int, prefix: str = "") -> Options:
        """``self`` once every option is valid for ``n_params`` swept parameters; else a ConfigError that
        names the key (``prefix`` + name for the method's options: ``method.`` in a config)."""
        check_method_options(
            self.method,
            order=self.order,
            compile=self.compile,
            step=self.step,
            chunk_size=self.chunk_size,
            max_memory_mb=self.max_memory_mb,
            n_params=n_params,
            prefix=prefix,
        )
        check_choice("nan_policy", self.nan_policy, NAN_POLICIES)
        check_choice("hidden_policy", self.hidden_policy, HIDDEN_POLICIES)
        check_device(self.device)
        if self.dtype is not None:
            check_choice("dtype", self.dtype, DTYPES)
        return self
