"""Several named outputs: a model returning a dict or tuple of tensors, as one flat output.

The engine differentiates one tensor ``(sample, elements)``; a model that returns
``{"temperature": (B, 50), "pressure": (B,)}`` (or a tuple) is called through :meth:`Outputs.flat`,
which concatenates its outputs (each reshaped to ``(B, -1)``) in order and records their names and
per-sample shapes on the first call. Every check, method and fallback then works unchanged; the
dataset splits the flat arrays back into ``<name>`` and ``d<name>_d<param>``
(:mod:`pipeline.storage.dataset`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from pipeline.errors import ConfigError


@dataclass
class Outputs:
    """Names and per-sample shapes of a model's named outputs, in flat order (empty: one tensor).

    ``names`` for a tuple come from the model's ``output_names`` where it has them, else ``y0``,
    ``y1``, ...; ``dims`` are the model's ``output_dims`` per name, where it gives a dict.
    """

    declared_names: list[str] | None = None
    dims: dict[str, list[str]] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    structure: str = ""

    @property
    def named(self) -> bool:
        return bool(self.names)

    @property
    def sizes(self) -> list[int]:
        return [int(torch.Size(s).numel()) for s in self.shapes]

    def _record(self, names: list[str], shapes: list[tuple[int, ...]], structure: str) -> None:
        if not self.names:
            for name in names:
                if not name.isidentifier():
                    raise ConfigError(
                        f"invalid output name {name!r} of the model: each named output becomes a variable "
                        "of the dataset; use letters, digits and '_' (e.g. 'temperature')"
                    )
            self.names, self.shapes, self.structure = names, shapes, structure
        elif (names, shapes) != (self.names, self.shapes):
            raise ConfigError(
                f"the model's outputs changed between calls: {dict(zip(self.names, self.shapes, strict=True))} "
                f"then {dict(zip(names, shapes, strict=True))}; every call must return the same names and shapes"
            )

    def flat(self, out: Any) -> Any:
        """``out`` as one tensor ``(sample, elements)`` where it is a dict or tuple of tensors."""
        if isinstance(out, Tensor) or not isinstance(out, dict | tuple | list):
            if self.names:
                raise ConfigError(
                    f"the model returned one tensor after returning the outputs {self.names}: every call "
                    "must return the same structure"
                )
            return out
        if isinstance(out, dict):
            names, values, structure = [str(k) for k in out], list(out.values()), "dict"
        else:
            values, structure = list(out), "tuple"
            given = self.declared_names
            names = list(given) if given and len(given) == len(values) else [f"y{i}" for i in range(len(values))]
        if not values:
            raise ConfigError("invalid model output: an empty dict or tuple; return at least one tensor")
        bad = [n for n, v in zip(names, values, strict=True) if not isinstance(v, Tensor) or v.dim() < 1]
        samples = {v.shape[0] for v in values if isinstance(v, Tensor) and v.dim()}
        if bad or len(samples) != 1:
            shapes = {
                n: tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
                for n, v in zip(names, values, strict=True)
            }
            raise ConfigError(
                f"invalid model output {shapes}: each named output must be a tensor whose first dim is the "
                "sample dim, the same for all"
            )
        self._record(names, [tuple(v.shape[1:]) for v in values], structure)
        dtype = functools.reduce(torch.promote_types, (v.dtype for v in values))
        return torch.cat([v.reshape(v.shape[0], -1).to(dtype) for v in values], dim=1)

    def wrap(self, fn: Callable[[Tensor, Tensor], Any]) -> Callable[[Tensor, Tensor], Tensor]:
        """``fn`` returning the flat output."""

        def flat_fn(x: Tensor, theta: Tensor) -> Tensor:
            return self.flat(fn(x, theta))

        return flat_fn
