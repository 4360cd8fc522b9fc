"""The distributions of a design's parameters: uniform, log-uniform, normal, truncated normal, log-normal."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import ConfigError

if TYPE_CHECKING:  # scipy.stats takes 0.3 s to import: only where a design is sampled or bounded
    from scipy import stats


@dataclass(frozen=True)
class Distribution:
    """One parameter's distribution: ``kind`` and its arguments, as written (``uniform(0.5, 1.5)``).

    ``log`` distributions (``loguniform``, ``lognormal``) are those of ``ln p``: their Poincaré
    constant applies to ``p dy/dp`` (the derivative with respect to ``ln p``).
    """

    kind: str
    args: tuple[float, ...]

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(f'{a:g}' for a in self.args)})"

    @property
    def log(self) -> bool:
        return self.kind in ("loguniform", "lognormal")

    def frozen(self) -> stats.rv_continuous:
        """The scipy distribution of ``p``."""
        from scipy import stats

        a = self.args
        if self.kind == "uniform":
            return stats.uniform(a[0], a[1] - a[0])
        if self.kind == "loguniform":
            return stats.loguniform(a[0], a[1])
        if self.kind == "normal":
            return stats.norm(a[0], a[1])
        if self.kind == "truncnormal":
            mean, std, low, high = a
            return stats.truncnorm((low - mean) / std, (high - mean) / std, loc=mean, scale=std)
        return stats.lognorm(a[1], scale=math.exp(a[0]))  # lognormal(mean, std) of ln p

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Quantiles at ``u``: closed forms for the uniform laws (scipy's values, bit for bit, without
        building its objects), scipy for the others."""
        a = self.args
        if self.kind == "uniform":
            return a[0] + (a[1] - a[0]) * u
        if self.kind == "loguniform":
            return np.exp(np.log(a[0]) + u * (np.log(a[1]) - np.log(a[0])))
        return self.frozen().ppf(u)

    def variable(self) -> stats.rv_continuous:
        """The distribution of the variable the bounds use: ``p``, or ``ln p`` for a log distribution."""
        from scipy import stats

        if self.kind == "loguniform":
            return stats.uniform(math.log(self.args[0]), math.log(self.args[1] / self.args[0]))
        if self.kind == "lognormal":
            return stats.norm(self.args[0], self.args[1])
        return self.frozen()

    def support(self) -> tuple[float, float]:
        """Where the variable of :meth:`variable` lives (closed forms: no scipy object is built)."""
        a = self.args
        if self.kind == "uniform":
            return a[0], a[1]
        if self.kind == "loguniform":
            return math.log(a[0]), math.log(a[1])
        if self.kind == "truncnormal":
            return a[2], a[3]
        return -math.inf, math.inf

    def variance(self) -> float:
        """The variance of the variable of :meth:`variable` (closed forms but for the truncated normal)."""
        if self.kind in ("uniform", "loguniform"):
            low, high = self.support()
            return (high - low) ** 2 / 12
        if self.kind in ("normal", "lognormal"):
            return self.args[1] ** 2
        return float(self.frozen().var())

    def poincare_constant(self) -> float:
        """C with ``Var g <= C E[g'^2]`` for the variable of :meth:`variable` (Lamboni et al. 2013).

        Uniform on [a, b]: ``(b - a)^2 / pi^2``; normal: ``sigma^2``; a normal truncated to [a, b]
        is log-concave on a convex set: ``min(sigma^2, (b - a)^2 / pi^2)`` (Brascamp-Lieb, and the
        interval's own constant); log distributions: the constant of ``ln p``.
        """
        low, high = self.support()
        interval = (high - low) ** 2 / math.pi**2  # infinite for an unbounded variable
        if self.kind in ("normal", "lognormal"):
            return self.args[1] ** 2
        if self.kind == "truncnormal":
            return min(self.args[1] ** 2, interval)
        return interval


def _distribution(kind: str, *args: float) -> Distribution:
    values = tuple(float(a) for a in args)
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"invalid {kind}{values}: arguments must be finite numbers")
    return Distribution(kind, values)


def uniform(low: float, high: float) -> Distribution:
    if not low < high:
        raise ConfigError(f"invalid uniform({low}, {high}): need low < high")
    return _distribution("uniform", low, high)


def loguniform(low: float, high: float) -> Distribution:
    if not 0 < low < high:
        raise ConfigError(f"invalid loguniform({low}, {high}): need 0 < low < high")
    return _distribution("loguniform", low, high)


def normal(mean: float, std: float) -> Distribution:
    if not std > 0:
        raise ConfigError(f"invalid normal({mean}, {std}): need std > 0")
    return _distribution("normal", mean, std)


def truncnormal(mean: float, std: float, low: float, high: float) -> Distribution:
    if not (std > 0 and low < high):
        raise ConfigError(f"invalid truncnormal({mean}, {std}, {low}, {high}): need std > 0 and low < high")
    return _distribution("truncnormal", mean, std, low, high)


def lognormal(mean: float, std: float) -> Distribution:
    """``ln p ~ normal(mean, std)``."""
    if not std > 0:
        raise ConfigError(f"invalid lognormal({mean}, {std}): need std > 0 (of ln p)")
    return _distribution("lognormal", mean, std)


DISTRIBUTIONS = {
    "uniform": uniform,
    "loguniform": loguniform,
    "normal": normal,
    "truncnormal": truncnormal,
    "lognormal": lognormal,
}


def parse(text: str, key: str = "distribution") -> Distribution:
    """``"uniform(0.5, 1.5)"`` (a config value or a dataset attr) as a :class:`Distribution`."""
    kind, open_, rest = str(text).strip().partition("(")
    kind = kind.strip()
    if kind not in DISTRIBUTIONS or not open_ or not rest.endswith(")"):
        raise ConfigError(
            f"invalid {key}={text!r}: write one of {', '.join(f'{k}(...)' for k in DISTRIBUTIONS)}, "
            "e.g. 'uniform(0.5, 1.5)', 'loguniform(0.1, 10)', 'normal(0, 1)', 'truncnormal(0, 1, -2, 2)'"
        )
    try:
        args = [float(a) for a in rest[:-1].split(",")]
    except ValueError as err:
        raise ConfigError(f"invalid {key}={text!r}: the arguments must be numbers") from err
    try:
        return DISTRIBUTIONS[kind](*args)
    except TypeError as err:
        raise ConfigError(
            f"invalid {key}={text!r}: {kind} takes {DISTRIBUTIONS[kind].__code__.co_argcount} numbers"
        ) from err
