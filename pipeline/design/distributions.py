"""The distributions of a design's parameters, one class each: a new distribution is one class.

A distribution knows its quantiles (to place a design's points), the variable the bounds use
(``p``, or ``ln p`` for a log distribution), that variable's support, variance and Poincaré
constant, and the Stein weight of NOTE [Bounds from derivatives] (:mod:`pipeline.design.bounds`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from pipeline.errors import ConfigError

if TYPE_CHECKING:  # scipy.stats is slow to import: only where a design is sampled or bounded
    from scipy import stats


@dataclass(frozen=True)
class Distribution:
    """One parameter's distribution: its arguments as written (``uniform(0.5, 1.5)``).

    ``log`` distributions (``loguniform``, ``lognormal``) are those of ``ln p``: their Poincaré
    constant applies to ``p dy/dp`` (the derivative with respect to ``ln p``).
    """

    args: tuple[float, ...]
    kind: ClassVar[str] = ""
    log: ClassVar[bool] = False
    arguments: ClassVar[tuple[str, ...]] = ()

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(f'{a:g}' for a in self.args)})"

    def frozen(self) -> stats.rv_continuous:
        """The scipy distribution of ``p``."""
        raise NotImplementedError

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Quantiles of ``p`` at ``u``."""
        return self.frozen().ppf(u)

    def variable(self) -> stats.rv_continuous:
        """The distribution of the variable the bounds use: ``p``, or ``ln p`` for a log distribution."""
        return self.frozen()

    def support(self) -> tuple[float, float]:
        """Where the variable of :meth:`variable` lives."""
        return -math.inf, math.inf

    def variance(self) -> float:
        """The variance of the variable of :meth:`variable`."""
        return float(self.variable().var())

    def poincare_constant(self) -> float:
        """C with ``Var g <= C E[g'^2]`` for the variable of :meth:`variable` (Lamboni et al. 2013)."""
        raise NotImplementedError

    def stein_weight(self, v: np.ndarray) -> np.ndarray:
        """``k(v)`` of NOTE [Bounds from derivatives] for the variable of :meth:`variable`."""
        raise NotImplementedError


class _Interval(Distribution):
    """Uniform in the bounds' variable on ``[low, high]``: the Poincaré constant ``(b - a)^2 / pi^2``."""

    def variance(self) -> float:
        low, high = self.support()
        return (high - low) ** 2 / 12

    def poincare_constant(self) -> float:
        low, high = self.support()
        return (high - low) ** 2 / math.pi**2

    def stein_weight(self, v: np.ndarray) -> np.ndarray:
        low, high = self.support()
        return (v - low) * (high - v) / 2


class Uniform(_Interval):
    kind, arguments = "uniform", ("low", "high")

    def frozen(self) -> stats.rv_continuous:
        from scipy import stats

        return stats.uniform(self.args[0], self.args[1] - self.args[0])

    def ppf(self, u: np.ndarray) -> np.ndarray:  # scipy's values, bit for bit, without its objects
        return self.args[0] + (self.args[1] - self.args[0]) * u

    def support(self) -> tuple[float, float]:
        return self.args[0], self.args[1]


class LogUniform(_Interval):
    kind, log, arguments = "loguniform", True, ("low", "high")

    def frozen(self) -> stats.rv_continuous:
        from scipy import stats

        return stats.loguniform(self.args[0], self.args[1])

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return np.exp(np.log(self.args[0]) + u * (np.log(self.args[1]) - np.log(self.args[0])))

    def variable(self) -> stats.rv_continuous:
        from scipy import stats

        return stats.uniform(math.log(self.args[0]), math.log(self.args[1] / self.args[0]))

    def support(self) -> tuple[float, float]:
        return math.log(self.args[0]), math.log(self.args[1])


class Normal(Distribution):
    """Normal in the bounds' variable: Poincaré constant and Stein weight ``sigma^2``."""

    kind, arguments = "normal", ("mean", "std")

    def frozen(self) -> stats.rv_continuous:
        from scipy import stats

        return stats.norm(self.args[0], self.args[1])

    def variance(self) -> float:
        return self.args[1] ** 2

    def poincare_constant(self) -> float:
        return self.args[1] ** 2

    def stein_weight(self, v: np.ndarray) -> np.ndarray:
        return np.full_like(v, self.args[1] ** 2)


class LogNormal(Normal):
    """``ln p ~ normal(mean, std)``."""

    kind, log, arguments = "lognormal", True, ("mean", "std")

    def frozen(self) -> stats.rv_continuous:
        from scipy import stats

        return stats.lognorm(self.args[1], scale=math.exp(self.args[0]))

    def variable(self) -> stats.rv_continuous:
        from scipy import stats

        return stats.norm(self.args[0], self.args[1])


class TruncNormal(Distribution):
    """A normal truncated to ``[low, high]``: log-concave on a convex set, so its Poincaré constant is
    ``min(sigma^2, (b - a)^2 / pi^2)`` (Brascamp-Lieb, and the interval's own constant)."""

    kind, arguments = "truncnormal", ("mean", "std", "low", "high")

    def frozen(self) -> stats.rv_continuous:
        from scipy import stats

        mean, std, low, high = self.args
        return stats.truncnorm((low - mean) / std, (high - mean) / std, loc=mean, scale=std)

    def support(self) -> tuple[float, float]:
        return self.args[2], self.args[3]

    def poincare_constant(self) -> float:
        low, high = self.support()
        return min(self.args[1] ** 2, (high - low) ** 2 / math.pi**2)

    def stein_weight(self, v: np.ndarray) -> np.ndarray:
        mean, std, _, high = self.args  # sigma^2 (rho(v) - rho(b)) + (mu - m)(1 - F(v))
        var = self.variable()
        rho = var.pdf(v)
        tail = std**2 * (rho - var.pdf(high)) + (mean - var.mean()) * var.sf(v)
        return np.where(rho > 0, tail / np.where(rho > 0, rho, 1), 0.0)


def _distribution(cls: type[Distribution], *args: float) -> Distribution:
    values = tuple(float(a) for a in args)
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"invalid {cls.kind}{values}: arguments must be finite numbers")
    return cls(values)


def uniform(low: float, high: float) -> Distribution:
    """``p`` uniform on ``[low, high]``."""
    if not low < high:
        raise ConfigError(f"invalid uniform({low}, {high}): need low < high")
    return _distribution(Uniform, low, high)


def loguniform(low: float, high: float) -> Distribution:
    """``ln p`` uniform on ``[ln low, ln high]`` (``0 < low < high``)."""
    if not 0 < low < high:
        raise ConfigError(f"invalid loguniform({low}, {high}): need 0 < low < high")
    return _distribution(LogUniform, low, high)


def normal(mean: float, std: float) -> Distribution:
    """``p ~ normal(mean, std)``."""
    if not std > 0:
        raise ConfigError(f"invalid normal({mean}, {std}): need std > 0")
    return _distribution(Normal, mean, std)


def truncnormal(mean: float, std: float, low: float, high: float) -> Distribution:
    """``normal(mean, std)`` truncated to ``[low, high]``."""
    if not (std > 0 and low < high):
        raise ConfigError(f"invalid truncnormal({mean}, {std}, {low}, {high}): need std > 0 and low < high")
    return _distribution(TruncNormal, mean, std, low, high)


def lognormal(mean: float, std: float) -> Distribution:
    """``ln p ~ normal(mean, std)``."""
    if not std > 0:
        raise ConfigError(f"invalid lognormal({mean}, {std}): need std > 0 (of ln p)")
    return _distribution(LogNormal, mean, std)


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
