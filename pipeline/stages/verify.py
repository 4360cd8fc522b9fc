"""Workflow stage: check a study's derivatives against independent methods on a sample of points.

On a few values of the swept parameter and a few samples, ``dy/dC`` is recomputed in float64
with other methods (``forward``, ``reverse``, ``finite_difference`` by default) and compared
with the study's result, on the outputs the parameter reaches through the graph. Reverse-mode
references (``reverse``, ``reverse_per_point``, ``loop``), whose cost grows with the number of
outputs, are compared on random projections ``w . dy`` instead (:data:`PROJECTIONS` backward
passes per point). Outputs it does
not reach (``dy_dC_connected == 0``) have ``dy/dC = 0`` by construction; where a reference
(finite differences) still sees their value change, a ``detach()`` hides a real dependence:
counted as ``hidden_dependence`` and noted in the report, not a failure. Tolerances come from
the study's dtype and the finite-difference step (see :func:`tolerance`). With
``verify.compare_along`` set, the first two entries along that output dim are compared with each
other (the seed's slice-before-vs-after question): bitwise equal, ``allclose`` (torch's
defaults), max abs/rel difference and where they differ.

The model and the verify settings come from the study's config as the workflow composes it
(``--study`` and ``--overrides``), never from the file: a file whose ``fingerprint`` does not
match that config (another config, edited attrs) is refused, naming the keys that differ.

``python -m pipeline.stages.verify SENSITIVITY [...] --study NAME [--overrides ...] --nc VERIFY_NC
--md VERIFY_MD [--plot PNG]`` writes the reports (and the method agreement plot) and exits 1
when a comparison fails.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from omegaconf import DictConfig

from pipeline.api import grid_points, sensitivity
from pipeline.config.studies import compose_job
from pipeline.derivatives.methods import METHODS
from pipeline.design.sampling import points as design_points
from pipeline.errors import ConfigError, DerivativeError, VerificationError, clipped
from pipeline.inputs import input_from_dataset
from pipeline.stages.build import build_model, swept_bind
from pipeline.stages.cli import run_cli
from pipeline.stages.current import check_computed_from, study_arguments
from pipeline.stages.html import write_markdown
from pipeline.stages.plot import plot_agreement
from pipeline.storage.names import connected_name, derivative_name, header, optional, sweep_dims, swept_parameters
from pipeline.storage.outputs import flat_outputs, output_names
from pipeline.storage.parts import Source, one_or_many, open_sensitivity, source_files
from pipeline.storage.read import reading
from pipeline.storage.write import write_atomic, write_netcdf

FD_SAFETY = 10
"""Multiple of the differences' estimated error (steps ``h`` and ``h/2``) allowed for ``finite_difference``."""


def tolerance(study_dtype: str, reference_error: float = 0.0) -> float:
    """Relative tolerance (to the largest reference value) of a float64 reference vs the study.

    The study's own round-off allows ``sqrt(eps)`` of its dtype. A finite-difference reference
    adds its own error, estimated from two steps (``reference_error``, relative): central
    differences with steps ``h`` and ``h/2`` differ by 3/4 of the truncation error at ``h``, and
    by the round-off and solver noise of both, so :data:`FD_SAFETY` times that difference bounds
    the error of the reference whatever dominates it (an adaptive ODE solver's step control,
    say), where a fixed ``eps^(2/3)`` does not.
    """
    return max(float(np.sqrt(np.finfo(study_dtype).eps)), FD_SAFETY * reference_error)


def _reference(method: str, run: Callable[..., xr.Dataset], step: float) -> tuple[xr.Dataset | None, float, str]:
    """The float64 reference of ``method`` (its ``*_per_point`` form where the model cannot be
    batched), the estimated relative error of a differences reference (steps ``step`` and
    ``step / 2``: two passes, the finer one the reference), and why it is missing."""

    def computed(name: str) -> tuple[xr.Dataset, float]:
        if not name.startswith("finite_difference"):
            return run(name), 0.0
        coarse, fine = run(name, step=step), run(name, step=step / 2)
        errors = [
            float(abs(coarse[v] - fine[v]).max() / max(float(abs(fine[v]).max()), np.finfo(np.float64).tiny))
            for v in fine.data_vars
            if v.startswith("dy_d") and not v.endswith("_connected")
        ]
        return fine, max(errors)

    try:
        try:
            ref, error = computed(method)
        except (DerivativeError, RuntimeError, NotImplementedError):
            if f"{method}_per_point" not in METHODS:
                raise
            ref, error = computed(f"{method}_per_point")
        return ref, error, ""
    except (DerivativeError, RuntimeError, NotImplementedError) as err:
        return None, 0.0, str(err).splitlines()[0]


_MISSING_ROW = {
    "max_abs_diff": np.nan,
    "max_rel_diff": np.nan,
    "tolerance": np.nan,
    "bitwise_equal": 0,
    "passed": 0,
    "hidden_dependence": 0,
    "available": 0,
    "reference_error": np.nan,
}
"""A reference method that cannot differentiate the model (e.g. forward mode through an op without a rule)."""


def _pick(count: int, size: int) -> np.ndarray:
    return np.unique(np.linspace(0, size - 1, min(count, size)).round().astype(int))


VERIFY_CACHE_BYTES = 2**20
"""netCDF's chunk cache per variable while verify reads its points: a run of points, read in order,
lies in one or two stored chunks (the default cache, 4 MiB per variable, held 800 MB for a design
of 100 parameters)."""

RUNS = 5
"""A design's checked points are this many runs of consecutive points, spread over the design: a
run reads one or two stored chunks of each variable, where as many scattered points would read the
whole file (a Sobol' sequence's consecutive points are spread over the parameters; a Saltelli
design's are whole groups of a base point)."""


def _runs(count: int, size: int) -> np.ndarray:
    """``count`` of a design's ``size`` points (all of them if fewer) in :data:`RUNS` runs of
    consecutive points, the runs evenly spaced from the first point to the last (evenly spaced points
    where runs would overlap)."""
    count = min(count, size)
    runs = min(RUNS, count)
    lengths = np.full(runs, count // runs) + (np.arange(runs) < count % runs)
    starts = np.linspace(0, size - lengths[-1], runs).round().astype(int)
    if np.any(starts[:-1] + lengths[:-1] > starts[1:]):  # runs that would overlap: a small design
        return _pick(count, size)
    return np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths, strict=True)])


def _differences(actual: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    abs_diff = float(np.max(np.abs(actual - reference))) if actual.size else 0.0
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    return abs_diff, abs_diff / scale if scale > 0 else abs_diff


PROJECTED = frozenset({"reverse", "reverse_per_point", "loop"})
"""Reference methods whose cost grows with the outputs (one backward pass per output element, its
graph kept for each): checked on :data:`PROJECTIONS` random combinations of the outputs instead."""

PROJECTIONS = 4
"""Random cotangents ``w`` per checked point: reverse mode's ``J^T w`` against the study's ``w . dy``."""


def _projected_reverse(
    model: object, cfg: DictConfig, sub: xr.Dataset, params: list[str], sweep: list[str], out_dims: list[str]
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """Per parameter, the study's ``w . dy`` and reverse mode's ``(J^T w)`` (float64) at every checked
    point for :data:`PROJECTIONS` fixed random ``w``: one backward pass each, where the full Jacobian
    by reverse mode takes one per output element (on a field of many outputs, orders of magnitude
    dearer than the study's forward mode). Also why it is not available (empty if it is)."""
    from pipeline.derivatives.routine import as_routine
    from pipeline.inputs import to_run

    bind = swept_bind(cfg)
    cpu = torch.device("cpu")
    try:
        routine = as_routine(model, params, bind=bind, device=cpu, dtype=torch.float64, output_dims=out_dims)
        x = to_run(input_from_dataset(sub), cpu, torch.float64)
        columns = [sub[p].values for p in params]
        table = np.column_stack(columns) if sweep == ["point"] else grid_points(dict(zip(params, columns, strict=True)))
        own = [t.values.reshape(-1).to(cpu, torch.float64) for t in routine.tensors]
        generator = torch.Generator().manual_seed(0)
        study = {p: sub[derivative_name(p)].values.astype(np.float64).reshape(len(table), -1) for p in params}
        out = {p: (np.zeros((len(table), PROJECTIONS)), np.zeros((len(table), PROJECTIONS))) for p in params}
        for n, row in enumerate(table):
            theta = torch.cat([torch.as_tensor(row, dtype=torch.float64), *own]).requires_grad_(True)
            with torch.enable_grad():
                y = routine.fn(x, theta)
                for k in range(PROJECTIONS):
                    w = torch.randn(y.shape, generator=generator, dtype=y.dtype)
                    grad = None
                    if y.requires_grad:  # else no path from theta to y: J^T w = 0
                        (grad,) = torch.autograd.grad(y, theta, w, retain_graph=True, allow_unused=True)
                    grad = torch.zeros_like(theta) if grad is None else grad
                    flat = w.reshape(-1).numpy()
                    for i, p in enumerate(params):
                        out[p][0][n, k] = flat @ study[p][n]
                        out[p][1][n, k] = float(grad[i])
        return out, ""
    except (DerivativeError, RuntimeError, NotImplementedError) as err:
        return {}, str(err).splitlines()[0] if str(err) else type(err).__name__


def _compared(
    sub: xr.Dataset, ref: xr.Dataset, params: list[str], attrs: dict, reference_error: float, rtol: float
) -> list[dict]:
    """One row per parameter: the study's derivatives at the checked points against the reference's."""
    rows = []
    for p in params:
        name = derivative_name(p)
        study, expected = sub[name].values.astype(np.float64), ref[name].values
        # Outputs the graph does not connect to p have dy/dp = 0 by construction; compare the
        # others. Finite differences still see a dependence a detach() hides: count it.
        flag = optional(sub, connected_name(p))
        keep = (
            np.ones(study.shape, bool)
            if flag is None
            else (flag == 1).broadcast_like(sub[name]).transpose(*sub[name].dims).values
        )
        tol = max(tolerance(attrs["dtype"], reference_error), rtol)
        scale = float(np.max(np.abs(expected))) if expected.size else 0.0
        hidden = int(np.sum(~keep & (np.abs(expected) > tol * max(scale, np.finfo(np.float64).tiny))))
        label = f"{attrs['method']} ({attrs['dtype']}) vs {ref.attrs['method']} (float64)"
        row = _row(label if len(params) == 1 else f"{name}: {label}", study, expected, tol, keep)
        rows.append({**row, "hidden_dependence": hidden, "reference_error": reference_error})
    return rows


LONG_NAMES = {
    "max_abs_diff": "max |study - reference|",
    "max_rel_diff": "max |study - reference| / max |reference|",
    "tolerance": "relative tolerance: the study's dtype, and the reference's estimated error for differences",
    "bitwise_equal": "1 if the study's values equal the reference bit for bit",
    "passed": "1 if max_rel_diff <= tolerance",
    "available": "1 if the reference method could differentiate the model (0: the row is not counted)",
    "reference_error": "estimated relative error of a finite-difference reference (steps h and h/2)",
    "hidden_dependence": "outputs not connected to the parameter in the graph whose value still changes with it "
    "(seen by the reference method; a detach() hides this dependence from autodiff)",
}
"""The columns of verify.nc's table (dim ``comparison``)."""


def _table(rows: list[dict]) -> xr.Dataset:
    out = xr.Dataset(
        {key: ("comparison", [row[key] for row in rows]) for key in rows[0] if key != "comparison"},
        coords={"comparison": [row["comparison"] for row in rows]},
    )
    for key, long_name in LONG_NAMES.items():
        out[key].attrs["long_name"] = long_name
    return out


def verify(ds: xr.Dataset, cfg: DictConfig) -> xr.Dataset:
    """Comparisons of ``ds`` with other methods, rebuilding the model from ``cfg`` (not from ``ds``).

    ``cfg`` is the study's composed config; ``ds`` must have been computed from it
    (:func:`check_computed_from`), so no attribute of a data file chooses code to run.
    """
    check_computed_from(ds, cfg)
    params = swept_parameters(ds)
    opts = cfg.verify
    sweep = sweep_dims(ds)
    if opts.compare_along:  # before any reference is computed
        _check_variant_dim(ds, opts.compare_along, [*sweep, "sample"])
    picks = {
        d: _runs(min(opts["values"] ** len(params), opts.max_points), ds.sizes[d])
        if d == "point"
        else _pick(opts["values"], ds.sizes[d])
        for d in sweep
    }
    named = output_names(ds) != ["y"]  # compared as the one flat output the engine computes
    sub = flat_outputs(ds.isel({**picks, "sample": _pick(opts.samples, ds.sizes["sample"])}), sweep, params)
    model = build_model(cfg)
    x = input_from_dataset(sub)
    out_dims = None if named else list(sub["y"].dims[len(sweep) + 1 :])
    values = (
        design_points(np.column_stack([sub[p].values for p in params]), params)
        if sweep == ["point"]
        else {p: sub[p].values for p in params}
    )
    rows = []

    def run(method: str, step: float | None = None) -> xr.Dataset:
        return flat_outputs(_reference_run(method, step), sweep, params)

    def _reference_run(method: str, step: float | None = None) -> xr.Dataset:
        return sensitivity(
            model,
            x,
            values,
            method=method,
            step=step,
            dtype="float64",
            device="cpu",
            bind=swept_bind(cfg),
            output_dims=out_dims,
            hidden_policy="off",  # the study's own job reported it; the table's hidden_dependence counts it here
        )

    # One step for every checked point: eps^(1/3) at the largest parameter value (fd_step's rule).
    step = float(np.finfo(np.float64).eps ** (1 / 3)) * max(1.0, *(float(abs(sub[p]).max()) for p in params))
    # The study's own method in the study's own dtype would compare a computation with itself.
    same = (ds.attrs.get("method"), "float64") if ds.attrs.get("dtype") == "float64" else None
    methods = [m for m in map(str, opts.methods) if (m, "float64") != same] or list(map(str, opts.methods))
    for method in methods:
        if method in PROJECTED:
            rows += _projected_rows(model, cfg, sub, params, sweep, out_dims, ds.attrs, method)
            continue
        ref, reference_error, missing = _reference(method, run, step)
        if ref is None:
            rows.append({**_MISSING_ROW, "comparison": f"{method} (float64): not available ({clipped(missing, 200)})"})
            continue
        rows += _compared(sub, ref, params, ds.attrs, reference_error, opts.get("rtol") or 0.0)
    if named:  # the rows compare every named output at once
        every = f"d({', '.join(output_names(ds))})_d"
        rows = [{**row, "comparison": row["comparison"].replace("dy_d", every, 1)} for row in rows]
    out = _table(rows)
    if opts.compare_along:
        out = out.merge(compare_variants(sub, opts.compare_along, [*map(derivative_name, params), "y"]))
    out.attrs = {
        **header(
            f"Verification of {ds.attrs.get('study', '')}".strip(),
            "verification (pipeline.stages.verify)",
            ds.attrs.get("source", "sensweep"),
        ),
        "study": ds.attrs.get("study", ""),
        "checked_points": int(np.prod([sub.sizes[d] for d in sweep])),
        "checked_samples": sub.sizes["sample"],
        "passed": int(all(row["passed"] for row in rows if row["available"]) and any(r["available"] for r in rows)),
    }
    return out


def _projected_rows(
    model: object,
    cfg: DictConfig,
    sub: xr.Dataset,
    params: list[str],
    sweep: list[str],
    out_dims: list[str],
    attrs: dict,
    method: str,
) -> list[dict]:
    """Rows of the table for a reverse-mode reference, compared on random projections (:func:`_projected_reverse`)."""
    projected, missing = _projected_reverse(model, cfg, sub, params, sweep, out_dims)
    label = f"{attrs['method']} ({attrs['dtype']}) vs {method} (float64, {PROJECTIONS} random projections)"
    if not projected:
        return [{**_MISSING_ROW, "comparison": f"{method} (float64): not available ({clipped(missing, 200)})"}]
    rows = []
    tol = max(tolerance(attrs["dtype"]), cfg.verify.get("rtol") or 0.0)
    for p in params:
        study, reference = projected[p]
        rows.append(_row(label if len(params) == 1 else f"{derivative_name(p)}: {label}", study, reference, tol))
    return rows


def _row(comparison: str, study: np.ndarray, reference: np.ndarray, tol: float, keep: np.ndarray | None = None) -> dict:
    """One row of the table: ``study`` against ``reference`` (where ``keep``) within ``tol``."""
    abs_diff, rel_diff = (
        _differences(study[keep], reference[keep]) if keep is not None else _differences(study, reference)
    )
    return {
        "comparison": comparison,
        "max_abs_diff": abs_diff,
        "max_rel_diff": rel_diff,
        "tolerance": tol,
        "bitwise_equal": int(np.array_equal(study, reference)),
        "passed": int(rel_diff <= tol),
        "hidden_dependence": 0,
        "available": 1,
        "reference_error": 0.0,
    }


def _check_variant_dim(ds: xr.Dataset, dim: str, not_output: Sequence[str] = ()) -> None:
    outputs = [d for d in ds["y"].dims if d not in not_output] if "y" in ds else list(ds.dims)
    if dim not in outputs or ds.sizes[dim] < 2:
        raise ConfigError(
            f"invalid verify.compare_along={dim!r}: need an output dim with two entries, valid: {outputs}"
        )


def compare_variants(ds: xr.Dataset, dim: str, variables: list[str]) -> xr.Dataset:
    """The first two entries along ``dim`` against each other, for each variable."""
    _check_variant_dim(ds, dim)
    first, second = (str(v) for v in ds[dim].values[:2])
    long_names = {
        "variant_equal": f"1 if {dim}={first} and {dim}={second} are equal bit for bit",
        "variant_allclose": "1 if torch.allclose (rtol 1e-5, atol 1e-8)",
        "variant_max_abs_diff": "max absolute difference between the variants",
        "variant_max_rel_diff": "max absolute difference / max |second variant|",
        "variant_differs_at": "positions along the last output dim where the variants are not close",
    }
    result = {k: [] for k in long_names}
    for var in variables:
        a, b = ds[var].isel({dim: 0}), ds[var].isel({dim: 1})
        ta, tb = torch.from_numpy(a.values), torch.from_numpy(b.values)
        abs_diff, rel_diff = _differences(a.values, b.values)
        result["variant_equal"].append(int(torch.equal(ta, tb)))
        result["variant_allclose"].append(int(torch.allclose(ta, tb)))
        result["variant_max_abs_diff"].append(abs_diff)
        result["variant_max_rel_diff"].append(rel_diff)
        far = ~xr.DataArray(np.isclose(a.values, b.values, rtol=1e-5, atol=1e-8), dims=a.dims)
        where = far.any([d for d in a.dims if d not in ds[var].dims[-1:]])
        last = a.dims[-1]
        result["variant_differs_at"].append(
            ", ".join(f"{last}={ds[last].values[i]}" for i in np.flatnonzero(where)) or "nowhere"
        )
    coords = {"variant_check": [f"{var}: {dim}={first} vs {dim}={second}" for var in variables]}
    return xr.Dataset({k: ("variant_check", v, {"long_name": long_names[k]}) for k, v in result.items()}, coords=coords)


def to_markdown(report: xr.Dataset) -> str:
    """The verification tables as Markdown."""
    lines = [
        f"# {report.attrs['title']}",
        "",
        f"{report.attrs['checked_points']} parameter points x {report.attrs['checked_samples']} samples; "
        f"overall: {'PASS' if report.attrs['passed'] else 'FAIL'}",
        "",
        "| comparison | max abs diff | max rel diff | tolerance | bitwise equal | result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in report.comparison.values:
        row = report.sel(comparison=c)
        if "available" in row and not row.available:
            lines.append(f"| {c} | | | | | not counted |")
            continue
        lines.append(
            f"| {c} | {float(row.max_abs_diff):.3e} | {float(row.max_rel_diff):.3e} | "
            f"{float(row.tolerance):.1e} | {'yes' if row.bitwise_equal else 'no'} | "
            f"{'pass' if row.passed else 'FAIL'} |"
        )
    hidden = {str(c): int(report.sel(comparison=c).hidden_dependence) for c in report.comparison.values}
    for comparison, count in hidden.items():
        if count:
            lines += [
                "",
                f"Note ({comparison}): at {count} outputs that the computation graph does not connect to "
                "the parameter (`dy_d*_connected == 0`, so autodiff gives exactly 0), the reference still "
                "sees the value change: a `detach()` or similar hides a real dependence from autodiff.",
            ]
    if "variant_check" in report.dims:
        lines += [
            "",
            "| variants | bitwise equal | allclose | max abs diff | max rel diff | differ at |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for c in report.variant_check.values:
            row = report.sel(variant_check=c)
            lines.append(
                f"| {c} | {'yes' if row.variant_equal else 'no'} | {'yes' if row.variant_allclose else 'no'}"
                f" | {float(row.variant_max_abs_diff):.3e} | {float(row.variant_max_rel_diff):.3e} | "
                f"{row.variant_differs_at.item()} |"
            )
    return "\n".join(lines) + "\n"


def verify_file(
    sensitivity: Source,
    cfg: DictConfig,
    output_nc: str | os.PathLike,
    output_md: str | os.PathLike,
    output_png: str | os.PathLike | None = None,
    output_html: str | os.PathLike | None = None,
) -> xr.Dataset:
    """Verify sensitivity data against ``cfg``; write the NetCDF and Markdown (and HTML) reports, and the
    agreement plot."""
    # lazy: verify() reads only the points it checks
    with (
        reading(source_files(sensitivity), "sensitivity file"),
        open_sensitivity(sensitivity, cache_bytes=VERIFY_CACHE_BYTES) as ds,
    ):
        report = verify(ds, cfg)
    write_netcdf(report, output_nc)
    write_markdown(output_md, to_markdown(report), output_html)
    if output_png is not None:
        plot_agreement(report, output_png)
    return report


def failed_report(md: str | os.PathLike) -> Path:
    """Where a failed verification's table is kept: Snakemake deletes a failed job's outputs
    (``verify.md`` among them), so the table the message points at is written beside them."""
    md = Path(md)
    return md.with_name(f"{md.stem}.failed{md.suffix}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.stages.verify", description=__doc__.splitlines()[0])
    study_arguments(parser)
    parser.add_argument("--nc", required=True, help="verify.nc to write")
    parser.add_argument("--md", required=True, help="verify.md to write")
    parser.add_argument("--plot", help="method agreement plot (PNG) to write")
    parser.add_argument("--html", help="verify.md as a page for the HTML report")
    args = parser.parse_args(argv)

    def run() -> None:
        source = one_or_many(args.sensitivity)
        cfg = compose_job(args.study, args.overrides)
        report = verify_file(source, cfg, args.nc, args.md, args.plot, args.html)
        print(to_markdown(report))
        kept = failed_report(args.md)
        if report.attrs["passed"]:
            kept.unlink(missing_ok=True)  # a failure of an earlier run, fixed since
            return
        failed = [
            c
            for c in report.comparison.values
            if report.sel(comparison=c).available and not report.sel(comparison=c).passed
        ] or ["no reference method could differentiate the model"]
        write_atomic(kept, lambda tmp: Path(tmp).write_text(to_markdown(report)))
        raise VerificationError(
            f"verification failed for {source}: {'; '.join(failed)} exceed their tolerance (the table: {kept})"
        )

    run_cli(run)


if __name__ == "__main__":
    main()
