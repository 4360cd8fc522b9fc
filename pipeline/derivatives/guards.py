"""Checks around a derivative pass: of the inputs and the model before it, of the results after it.

Each raises a :class:`~pipeline.errors.ConfigError` or :class:`~pipeline.errors.DerivativeError` that
names what to change, or warns and returns counts for the dataset's attrs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils._pytree import tree_map

from pipeline.derivatives.opcost import CallCost, call_cost
from pipeline.derivatives.routine import Routine
from pipeline.derivatives.structure import check_against_differences, probe_indices
from pipeline.errors import RANDOMNESS, ConfigError, DerivativeError, Kind, clipped
from pipeline.inputs import input_leaves


def check_x(x: torch.Tensor, name: str = "x") -> None:
    """Each input needs a sample dim, no empty dim, and real numbers."""
    if x.dim() == 0:
        raise ConfigError(f"invalid {name}: need a leading sample dim, got a scalar")
    if 0 in x.shape:
        dims = ", ".join(f"{'sample' if i == 0 else f'dim {i}'}={n}" for i, n in enumerate(x.shape) if n == 0)
        raise ConfigError(
            f"invalid {name} of shape {tuple(x.shape)}: empty ({dims}); every dim needs at least one entry"
        )
    if x.is_complex():
        raise ConfigError(
            f"invalid {name}: complex inputs ({str(x.dtype).removeprefix('torch.')}) are not supported; "
            "pass the real and imaginary parts as separate features"
        )


def check_samples(leaves: dict[str, torch.Tensor]) -> None:
    """Every input of a dict or tuple has the same number of samples (its leading dim)."""
    counts = {name: leaf.shape[0] for name, leaf in leaves.items()}
    if len(set(counts.values())) > 1:
        found = ", ".join(f"{name}: {n}" for name, n in counts.items())
        raise ConfigError(f"invalid x: the inputs have different numbers of samples (leading dim) ({found})")


def _describe(x: Any) -> str:
    """``x of shape (4, 2) (float32)``, or the shape and dtype of each input of a dict or tuple."""
    parts = [
        f"{name} of shape {tuple(t.shape)} ({str(t.dtype).removeprefix('torch.')})"
        for name, t in input_leaves(x).items()
    ]
    return ", ".join(parts)


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def check_cast(
    leaves: dict[str, torch.Tensor],
    run_leaves: dict[str, torch.Tensor],
    grid: dict[str, np.ndarray],
    dtype: torch.dtype,
    collisions: bool = True,
) -> None:
    """Values the run's dtype cannot hold fail here, named: nothing is computed at an altered value."""
    name = str(dtype).removeprefix("torch.")
    for key, x in leaves.items():
        if not x.is_floating_point():
            continue
        overflow = (torch.isfinite(x) & ~torch.isfinite(run_leaves[key].to(x.device))).cpu().numpy()
        if overflow.any():
            at = _first(overflow)
            raise ConfigError(
                f"invalid {key} for dtype={name}: {int(overflow.sum())} values overflow it, e.g. "
                f"{float(x[at]):.6g} at index {at}; use dtype=float64 or rescale x"
            )
    np_dtype = np.dtype(name)
    for param, values in grid.items():
        with np.errstate(over="ignore"):
            cast = values.astype(np_dtype)
        if not np.isfinite(cast).all():
            bad = values[~np.isfinite(cast)]
            raise ConfigError(
                f"invalid values of {param} for dtype={name}: {bad.size} overflow it, e.g. "
                f"{bad[0]:.6g}; use dtype=float64"
            )
        same = np.flatnonzero(np.diff(np.sort(cast)) == 0) if values.size > 1 and collisions else []
        if len(same):
            ordered = np.sort(values)
            a, b = ordered[same[0]], ordered[same[0] + 1]
            raise ConfigError(
                f"invalid values of {param} for dtype={name}: {len(same)} pairs of distinct values "
                f"become equal, e.g. {float(a)!r} and {float(b)!r}; use dtype=float64 or fewer, "
                "wider-spaced values"
            )


def check_model_runs(
    fn: Callable, x: torch.Tensor, point: torch.Tensor, grid: dict[str, np.ndarray]
) -> tuple[torch.Tensor, CallCost]:
    """Evaluate the model once, before any derivative: bad inputs fail here with their shapes named.

    It runs on a copy of ``x``, which must come back unchanged: a model that changes its inputs in
    place would give every later point different inputs. Returns ``y`` and what that evaluation
    cost (:mod:`pipeline.derivatives.opcost`).
    """
    at = ", ".join(f"{p}={float(v):.6g}" for p, v in zip(grid, point[: len(grid)], strict=True)) or "the model's values"
    copy = tree_map(torch.clone, x)
    samples = next(iter(input_leaves(x).values())).shape[0]
    try:
        with torch.no_grad():
            y, cost = call_cost(lambda: fn(copy, point))
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise ConfigError(
            f"the model fails on {_describe(x)} at {at}: {str(err).splitlines()[0]}; "
            "check that the inputs match the model"
        ) from err
    if not all(_same(a, b) for a, b in zip(input_leaves(copy).values(), input_leaves(x).values(), strict=True)):
        raise ConfigError(
            "the model changes its input x in place (e.g. x.mul_(C) or x[...] = ...): every point "
            "would see different inputs; rewrite it out of place (y = x * C)"
        )
    _check_deterministic(fn, x, point, y, at)
    if not isinstance(y, torch.Tensor) or y.dim() < 1 or y.shape[0] != samples:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ConfigError(
            f"invalid model output: expected a tensor with a leading sample dim of {samples}, "
            f"got {shape} for {_describe(x)}"
        )
    if 0 in y.shape:
        raise ConfigError(
            f"invalid model output of shape {tuple(y.shape)} for {_describe(x)}: "
            "an empty dim; every output dim needs at least one entry"
        )
    if y.is_complex() or not y.is_floating_point():
        raise ConfigError(
            f"invalid model output of dtype {str(y.dtype).removeprefix('torch.')}: derivatives need "
            "real floating-point outputs"
        )
    return y, cost


def check_inputs_kept(x_run: Any, kept: Any, method: str) -> None:
    """The inputs the model was given must be unchanged after the run: a model that writes into
    its input (``x[x > 3 / C] = 0``) gave each later evaluation other inputs than the caller's."""
    pairs = zip(input_leaves(x_run).items(), input_leaves(kept).values(), strict=True)
    changed = [name for (name, a), b in pairs if not _same(a.detach().cpu(), b)]
    if changed:
        raise ConfigError(
            f"the model changes its input {', '.join(changed)} in place (e.g. x.mul_(C) or x[...] = ...) during "
            f"method={method}: later evaluations saw other inputs than the ones given, so no result is returned; "
            "rewrite it out of place (y = x * C, torch.where(mask, 0, x))"
        )


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN where NaN."""
    return torch.equal(a, b) or torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)


def _check_deterministic(fn: Callable, x: Any, point: torch.Tensor, y: Any, at: str) -> None:
    """A second evaluation at the same point must give the same ``y`` (up to a GPU's reduction order):
    a model drawing random numbers would give every derivative method noise, not derivatives."""
    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        return
    with torch.no_grad():
        again = fn(tree_map(torch.clone, x), point)
    if not isinstance(again, torch.Tensor) or again.shape != y.shape:
        raise DerivativeError(
            f"the model gives different outputs on two evaluations at {at}; {RANDOMNESS}", Kind.RANDOMNESS
        )
    eps = torch.finfo(y.dtype).eps
    differs = (again - y).abs() > eps**0.5 * float(torch.nan_to_num(y).abs().max()) + 64 * eps * y.abs()
    differs &= ~(y.isnan() & again.isnan())
    if differs.any():
        raise DerivativeError(
            f"the model gives different outputs on two evaluations at {at} ({int(differs.sum())} of {y.numel()} "
            f"values differ): it draws random numbers (e.g. dropout in training mode, torch.rand); {RANDOMNESS}",
            Kind.RANDOMNESS,
        )


LIKELY_CAUSES = (
    "part of the model computed outside torch (numpy, .item(), float() of a tensor used as a value), "
    "a custom autograd.Function with a wrong jvp or backward, a buffer bound as the parameter, a detach()"
)
"""What makes autodiff disagree with the model's own differences (NOTE [Checked against the model itself])."""


def _point_text(points: torch.Tensor, k: int, grid: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{p}={float(v):.6g}" for p, v in zip(grid, points[k, : len(grid)], strict=True))


OWN_VALUES = "the model's own values"


def _checked_directions(
    routine: Routine, points: torch.Tensor, dy: torch.Tensor, grid: dict[str, np.ndarray]
) -> tuple[list[str], list[str], torch.Tensor, torch.Tensor]:
    """What the difference check compares: each swept parameter's axis, and for each bound tensor one
    seeded random direction over its elements (one check for all of them). Returns the names, how
    messages call them, the directions ``(D, P)`` and the derivatives along them at the probe points."""
    at = dy[probe_indices(len(points))]  # (probes, *y, P): dy is on the CPU
    names, labels = list(grid), list(grid)
    directions = list(torch.eye(len(grid), points.shape[1], dtype=points.dtype))
    derivatives = [at[..., i] for i in range(len(grid))]
    start, generator = len(grid), torch.Generator().manual_seed(0)
    for tensor in routine.tensors:
        count = tensor.values.numel()
        v = torch.randn(count, generator=generator, dtype=at.dtype)
        v /= v.abs().max()
        direction = torch.zeros(points.shape[1], dtype=points.dtype)
        direction[start : start + count] = v.to(points.dtype)
        directions.append(direction)
        derivatives.append((at[..., start : start + count] * v).sum(-1))
        names.append(tensor.name)
        labels.append(f"{tensor.name} (along a random direction of its {count} elements)")
        start += count
    return names, labels, torch.stack(directions).to(points.device), torch.stack(derivatives, dim=-1)


def check_derivatives(
    routine: Routine,
    x: Any,
    points: torch.Tensor,
    dy: torch.Tensor,
    grid: dict[str, np.ndarray],
    policy: str,
) -> tuple[dict[str, int], str]:
    """The derivatives against the model's own differences at the structure check's points (NOTE
    [Checked against the model itself]). Hidden dependences (exact zeros where the value moves) are
    counted in attrs ``hidden_dependence_dy_d<p>`` and warned about; other disagreements in
    ``derivative_mismatch_dy_d<p>``, returned as a message (empty if none) for the caller to act on.
    ``hidden_policy="raise"`` makes either an error."""
    if policy == "off":
        return {}, ""
    names, labels, directions, derivatives = _checked_directions(routine, points, dy, grid)
    try:
        check = check_against_differences(routine.fn, x, points, derivatives, directions)
    except (RuntimeError, NotImplementedError):  # a model vmap cannot batch: nothing to compare here
        return {}, ""
    except (ValueError, ArithmeticError, AssertionError, IndexError) as err:  # raised at a probe point
        warnings.warn(
            f"the derivatives were not checked against the model's own differences: the model raised near a "
            f"probe point ({clipped(f'{type(err).__name__}: {err}', 120)})",
            RuntimeWarning,
            stacklevel=3,
        )
        return {}, ""
    counts = {f"hidden_dependence_dy_d{p}": int(check.hidden[..., i].sum()) for i, p in enumerate(names)}
    counts.update({f"derivative_mismatch_dy_d{p}": int(check.mismatch[..., i].sum()) for i, p in enumerate(names)})
    problems = [
        f"{counts[f'hidden_dependence_dy_d{p}']} outputs move with {label} (finite differences see |dy/d{p}| up "
        f"to {float(check.largest_hidden[i]):.3g}) where autodiff gives exactly 0"
        for i, (p, label) in enumerate(zip(names, labels, strict=True))
        if counts[f"hidden_dependence_dy_d{p}"]
    ]
    if problems:
        text = (
            f"{'; '.join(problems)}: an op ignores the parameter's tangent (a buffer such as BatchNorm's "
            "running_mean bound as the parameter, a detach(), a write through .data, arithmetic outside torch), "
            "so those derivatives are wrong, unless the cut is meant (a detach() to stop the derivative); "
            "method=finite_difference sees the dependence"
        )
        if policy == "raise":
            raise DerivativeError(f"{text} (hidden_policy=raise)", Kind.POLICY)
        warnings.warn(text, RuntimeWarning, stacklevel=3)
    mismatches = [
        f"dy/d{label} disagrees with the model's own differences at {counts[f'derivative_mismatch_dy_d{p}']} "
        f"outputs, e.g. at {_point_text(points, m.point, grid) or OWN_VALUES}, output {m.output}: "
        f"{m.derivative:.6g} where the differences give {m.low:.6g}"
        + (f" to {m.high:.6g}" if f"{m.high:.6g}" != f"{m.low:.6g}" else "")
        for p, label, m in zip(names, labels, check.first, strict=True)
        if m is not None
    ]
    if not mismatches:
        return counts, ""
    text = f"{'; '.join(mismatches)}; likely causes: {LIKELY_CAUSES}"
    if policy == "raise":
        raise DerivativeError(f"{text} (hidden_policy=raise)", Kind.POLICY)
    return counts, text


def check_failed(
    failed: list[tuple[int, str]], points: torch.Tensor, grid: dict[str, np.ndarray], policy: str
) -> dict[str, int]:
    """Points where the model raised (their results are NaN): counted in attr ``failed_points``, warned
    about with the first one's point and message, or raised under ``nan_policy="raise"``."""
    if not failed:
        return {"failed_points": 0}
    at, message = failed[0]
    where = _point_text(points, at, grid) or OWN_VALUES
    text = (
        f"the model raised at {len(failed)} of {len(points)} points, whose results are NaN; first at point {at} "
        f"({where}): {message}"
    )
    if policy == "raise":
        raise DerivativeError(f"{text} (nan_policy=raise)", Kind.POLICY)
    warnings.warn(text, RuntimeWarning, stacklevel=3)
    return {"failed_points": len(failed)}


def _finite(values: torch.Tensor, dim: int | None = None) -> bool:
    """No NaN or Inf in ``values``, read from their min and max (along ``dim``: for each index left)."""
    if values.numel() == 0:
        return True
    low, high = torch.aminmax(values) if dim is None else torch.aminmax(values, dim=dim)
    return bool(torch.isfinite(low).all() and torch.isfinite(high).all())


def check_finite(
    y: torch.Tensor, dy: torch.Tensor, grid: dict[str, np.ndarray], policy: str, design: bool = False
) -> dict[str, int]:
    """Count NaN/Inf in ``y`` and each ``dy/dp``; warn, or raise naming the first bad point and sample.

    A NaN or Inf shows in the min or max (both propagate NaN): one pass without temporaries, far
    cheaper than ``isfinite`` masks over all results, which are built only where one is found.
    """
    if _finite(y) and (dy.shape[-1] == 0 or _finite(dy.reshape(-1, dy.shape[-1]), dim=0)):
        return {"nonfinite_y": 0, **{f"nonfinite_dy_d{p}": 0 for p in grid}}
    bad_y, bad_dy = ~torch.isfinite(y), ~torch.isfinite(dy)
    counts = {"nonfinite_y": int(bad_y.sum())}
    columns = list(grid)[: dy.shape[-1]]  # none with method "none"
    counts.update({f"nonfinite_dy_d{p}": int(bad_dy[..., i].sum()) for i, p in enumerate(columns)})
    if not any(counts.values()):
        return counts
    bad = (bad_y | bad_dy.any(-1)).reshape(y.shape[0], y.shape[1], -1).any(-1).nonzero()
    first_point, first_sample = (int(i) for i in bad[0])
    if design:
        where = f"point {first_point} (" + ", ".join(f"{p}={grid[p][first_point]:.6g}" for p in grid) + ")"
    else:
        index = np.unravel_index(first_point, [len(v) for v in grid.values()])
        where = ", ".join(f"{p}={grid[p][i]:.6g} (index {i})" for p, i in zip(grid, index, strict=True))
    found = ", ".join(f"{n} in {k.removeprefix('nonfinite_').replace('_d', '/d', 1)}" for k, n in counts.items())
    text = f"non-finite results: {found}; first at {where}, sample {first_sample}"
    if policy == "raise":
        raise DerivativeError(f"{text} (nan_policy=raise)", Kind.POLICY)
    warnings.warn(text, RuntimeWarning, stacklevel=3)
    return counts
