"""Workflow stage 5: the plots of one study (PNG).

For the first swept parameter ``C`` and the output element with the largest DGSM of ``C``
(further grid parameters at their middle value): ``dy/dC`` against
``C`` for a few samples with the mean and a one-standard-deviation band, a heatmap of
``dy/dC`` over ``(C, sample)``, and ``y`` against ``C`` likewise.

``python -m pipeline.stages.plot SENSITIVITY [SENSITIVITY ...] --summary SUMMARY --outdir OUTDIR``
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from pipeline.errors import clipped
from pipeline.paths import DESIGN_PLOTS, PLOTS
from pipeline.stages.cli import run_cli
from pipeline.storage.names import derivative_name, optional, second_derivative_name, swept_parameters
from pipeline.storage.outputs import output_names, select_output
from pipeline.storage.parts import Source, one_or_many, open_sensitivity, source_files
from pipeline.storage.read import reading
from pipeline.storage.write import write_atomic
from pipeline.summary import summary_of

POINTS_SHOWN = 4000
"""Most points drawn in a design's scatter plots."""

SAMPLES_SHOWN = 5
HEATMAP_CELLS = (2000, 500)
"""Most values of the swept parameter and samples drawn in the heatmap."""


def _study_name(ds: xr.Dataset) -> str:
    """The study, or the dataset's title cut at a word: a title over many parameters fits a plot; and
    the output shown, for a model of several named outputs."""
    study = ds.attrs.get("study") or clipped(ds.attrs.get("title", ""), 60)
    return f"{study}, output {ds.attrs['output_name']}" if ds.attrs.get("output_name") else study


def _figure(size: tuple[float, float]) -> tuple[Figure, object]:
    """A figure and its axes, without pyplot: no global backend or figure registry is touched."""
    fig = Figure(figsize=size)
    return fig, fig.subplots()


def _label(da: xr.DataArray, name: str) -> str:
    units = da.attrs.get("units")
    return f"{name} [{units}]" if units else name


def most_sensitive_element(summary: xr.Dataset, param: str) -> dict[str, object]:
    """Output coordinates of the element with the largest DGSM of ``param`` (empty for scalar outputs)."""
    dgsm = summary[f"dgsm_{param}_mean"]
    if dgsm.ndim == 0:
        return {}
    flat = int(np.nanargmax(dgsm.values)) if np.isfinite(dgsm.values).any() else 0
    index = np.unravel_index(flat, dgsm.shape)
    return {dim: dgsm[dim].values[i].item() for dim, i in zip(dgsm.dims, index, strict=True)}


def _element_text(element: dict[str, object]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in element.items())


def _lines_with_band(ax, da: xr.DataArray, mean: xr.DataArray, std: xr.DataArray, param: str) -> None:
    c = da[param].values
    shown = np.unique(np.linspace(0, da.sizes["sample"] - 1, min(SAMPLES_SHOWN, da.sizes["sample"])).round())
    for s in shown.astype(int):
        ax.plot(c, da.isel(sample=s).values, lw=0.9, alpha=0.7, label=f"sample {s}")
    ax.fill_between(c, (mean - std).values, (mean + std).values, color="0.5", alpha=0.25, label="mean ± 1 std")
    ax.plot(c, mean.values, color="k", lw=2, label="mean over samples")


def _save(figures: dict[str, Figure], outdir: str | os.PathLike, log_x: bool = False) -> list[Path]:
    written = []
    for filename, fig in figures.items():
        for ax in fig.axes[:1]:
            if log_x:
                ax.set_xscale("log")
            if ax.get_legend() is None and ax.get_legend_handles_labels()[0]:  # a placed legend stays
                ax.legend(fontsize=7, loc="best")
        for ax in fig.axes:
            if ax.get_label() != "<colorbar>":
                ax.grid(alpha=0.3)
        fig.tight_layout()
        written.append(
            write_atomic(Path(outdir) / filename, lambda tmp, fig=fig: fig.savefig(tmp, dpi=110, format="png"))
        )
    return written


def plot_design(sensitivity: xr.Dataset, summary: xr.Dataset, outdir: str | os.PathLike) -> list[Path]:
    """A sampled design's plots (:data:`DESIGN_PLOTS`): dy/dp and y against each parameter at the
    design's points (for the output element whose y varies most), and the parameters ranked by
    their bounds on the Sobol' indices (aggregated over outputs, with bootstrap intervals)."""
    params = swept_parameters(sensitivity)
    study = _study_name(sensitivity)
    var = summary["y_var"]
    flat = int(np.nanargmax(var.values)) if var.ndim and np.isfinite(var.values).any() else 0
    element = (
        {d: var[d].values[i].item() for d, i in zip(var.dims, np.unravel_index(flat, var.shape), strict=True)}
        if var.ndim
        else {}
    )
    # A random subset: a stride through a Sobol' sequence would keep half of a dimension's range.
    count = sensitivity.sizes["point"]
    chosen = np.sort(np.random.default_rng(0).choice(count, min(count, POINTS_SHOWN), replace=False))
    shown = sensitivity.isel(point=chosen)
    where = _element_text(element)
    figures = {}
    ranked = _ranked(summary, params)
    drawn = ranked[:MAX_PANELS]  # the most important first; the rest named in the title
    rest = f"; {len(ranked) - len(drawn)} lower-ranked parameters not drawn" if len(ranked) > len(drawn) else ""
    for filename, variable in ((DESIGN_PLOTS[0], "dy"), (DESIGN_PLOTS[2], "y")):
        summary_panel = variable == "y" and "active_eigenvectors" in summary
        fig, axes = _panel_grid(len(drawn) + summary_panel)
        if summary_panel:
            _sufficient_summary(axes[len(drawn)], shown, summary, params, element)
        for ax, p in zip(axes, drawn, strict=False):
            name = "y" if variable == "y" else derivative_name(p)
            if name not in shown:  # method "none": y only
                ax.text(0.5, 0.5, "no derivatives\n(method=none)", ha="center", va="center", transform=ax.transAxes)
                ax.set(xlabel=_label(sensitivity[p], p))
                continue
            ax.scatter(shown[p].values, shown[name].sel(element).values, s=4, alpha=0.5)
            ax.set(
                xlabel=_label(sensitivity[p], p),
                ylabel=_label(sensitivity[name], "y" if variable == "y" else f"dy/d{p}"),
            )
            if str(sensitivity.attrs.get(f"distribution_{p}", "")).startswith(("loguniform", "lognormal")):
                ax.set_xscale("log")
        what = "dy/dp" if variable == "dy" else "y"
        fig.suptitle(f"{study}: {what} at the design's points ({where or 'the output'}{rest})", fontsize=9)
        figures[filename] = fig
    figures[DESIGN_PLOTS[1]] = _ranking(summary, params, ranked, study)
    figures[DESIGN_PLOTS[3]] = _bounds_along_output(summary, ranked[:MAX_LINES], study)
    return _save(figures, outdir)


PANEL_COLUMNS = 5
"""Panels per row: a figure of many parameters wraps instead of growing ever wider."""

MAX_PANELS = 15
"""Parameters drawn one panel each, the highest ranked first (every one is in summary.nc)."""

MAX_RANKED = 30
"""Parameters in the ranking plot, the highest first."""

MAX_LINES = 10
"""Parameters drawn as lines along the output: one colour each, none repeated."""


def _panel_grid(count: int) -> tuple[Figure, list]:
    """A figure of ``count`` panels, at most :data:`PANEL_COLUMNS` per row; unused panels hidden."""
    columns = min(max(count, 1), PANEL_COLUMNS)
    rows = -(-max(count, 1) // columns)
    fig = Figure(figsize=(3.4 * columns, 3.2 * rows + 0.4))
    axes = list(fig.subplots(rows, columns, squeeze=False).flat)
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes


def _ranked(summary: xr.Dataset, params: list[str]) -> list[str]:
    """Parameters by their aggregated upper bound, else their total index, else as given."""
    if all(f"sobol_total_upper_{p}_aggregated" in summary for p in params):
        return sorted(params, key=lambda p: -float(summary[f"sobol_total_upper_{p}_aggregated"]))
    if "sobol_total_aggregated" in summary:
        return sorted(params, key=lambda p: -float(summary["sobol_total_aggregated"][params.index(p)]))
    return list(params)


def _sufficient_summary(ax: object, shown: xr.Dataset, summary: xr.Dataset, params: list[str], element: dict) -> None:
    """y against the first active variable ``w_1 . (v - E v)`` (``v``: each parameter's variable, ``ln p``
    for a log distribution): a thin curve means one direction of parameter space explains y."""
    from pipeline.design.distributions import parse

    w = summary["active_eigenvectors"].isel(direction=0).sel(parameter=params).values
    z = np.zeros(shown.sizes["point"])
    for weight, p in zip(w, params, strict=True):
        dist = parse(shown.attrs[f"distribution_{p}"])
        v = np.log(shown[p].values) if dist.log else shown[p].values
        z += weight * (v - dist.variable().mean())
    ax.scatter(z, shown["y"].sel(element).values, s=4, alpha=0.5, color="C3")
    ax.set(xlabel="first active variable w1 . v", ylabel="y", title="sufficient summary")


def _ranking(summary: xr.Dataset, params: list[str], ranked: list[str], study: str) -> Figure:
    """The parameters in ``ranked`` order (:func:`_ranked`), with their bounds and, for a Saltelli
    design, the Sobol' indices themselves beside them, and how the indices converge with N."""
    indices = "sobol_total_aggregated" in summary
    shown = ranked[:MAX_RANKED]
    rest = len(params) - len(shown)
    height = max(3.6, 2.0 + 0.4 * len(shown))
    fig = Figure(figsize=(11 if indices else 6, height))
    axes = fig.subplots(1, 2 if indices else 1, squeeze=False)[0]
    ax = axes[0]
    for row, p in enumerate(shown):
        upper = optional(summary, f"sobol_total_upper_{p}_aggregated")
        marks = (
            (
                (upper, "s", "C0", "upper bound, total index"),
                (summary[f"sobol_first_lower_{p}_aggregated"], "o", "C1", "lower bound, first-order index"),
            )
            if upper is not None  # none without derivatives (method "none")
            else ()
        )
        for bound, marker, colour, label in marks:
            kw = {"fmt": marker, "color": colour, "label": label if row == 0 else None}
            ax.errorbar(float(bound), row, xerr=_spread(bound), **kw)
        if indices:
            i = params.index(p)
            for kind, marker, colour, offset in (("total", "^", "C2", 0.2), ("first", "D", "C3", 0.35)):
                value = float(summary[f"sobol_{kind}_aggregated"][i])
                low, high = summary[f"sobol_{kind}_aggregated_interval"].values[:, i]
                label = f"Sobol' {kind} index" if row == 0 else None
                xerr = _bars(value, low, high)
                ax.errorbar(value, row + offset, xerr=xerr, fmt=marker, color=colour, label=label)
    ax.set_yticks(range(len(shown)), shown)
    ax.invert_yaxis()
    ax.axvline(1.0, color="0.6", lw=0.8)
    below = 0.55 / (height - 1.3)  # the legend half an inch under the axes, however many rows
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -below), ncol=2)
    ax.set(
        xlabel="Sobol' index or bound (aggregated over outputs; 95% interval)",
        title=f"{study}: parameters ranked" + (f" (top {len(shown)}; {rest} more in summary.nc)" if rest else ""),
    )
    if indices:
        _convergence(axes[1], summary, params)
    fig.tight_layout()
    return fig


def _convergence(ax: object, summary: xr.Dataset, params: list[str]) -> None:
    """The aggregated indices from the first N/8, N/4, N/2 and N base points, with their intervals."""
    n = summary["base_points"].values
    for i, p in enumerate(params):
        for kind, style in (("total", "-"), ("first", "--")):
            values = summary[f"sobol_{kind}_convergence"].values[:, i]
            low, high = summary[f"sobol_{kind}_convergence_interval"].values[:, :, i]
            ax.plot(n, values, style, marker="o", color=f"C{i}", label=f"{p}: {kind}")
            ax.fill_between(n, low, high, color=f"C{i}", alpha=0.12, lw=0)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="base points", ylabel="Sobol' index (95% band)", title="convergence (total: solid, first: dashed)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=4)


def _bars(value: float, low: float, high: float) -> list[list[float]]:
    """Error bar lengths of an interval around ``value``; a percentile interval need not contain the
    estimate: the bars stop at it."""
    return [[max(value - low, 0.0)], [max(high - value, 0.0)]]


def _spread(bound: xr.DataArray) -> list[list[float]]:
    """:func:`_bars` of an aggregated bound's interval (``ci_low``, ``ci_high`` attrs)."""
    return _bars(float(bound), bound.attrs["ci_low"], bound.attrs["ci_high"])


def _bounds_along_output(summary: xr.Dataset, params: list[str], study: str) -> Figure:
    """Each parameter's bounds along the last output dim (e.g. time), aggregated over the other
    element dims with variance weights, with their bootstrap intervals as bands."""
    along = [d for d in summary["y_var"].dims if d != "sample"][-1:]
    fig, ax = _figure((7, 4.5))
    if not any(f"sobol_total_upper_{p}_aggregated" in summary for p in params):
        ax.text(0.5, 0.5, "no derivatives (method=none): no bounds", ha="center", va="center", transform=ax.transAxes)
        return fig
    for i, p in enumerate(params):
        for name, style in ((f"sobol_total_upper_{p}", "-"), (f"sobol_first_lower_{p}", "--")):
            kind = "upper, total" if "upper" in name else "lower, first-order"
            if along:
                bound, interval = summary[f"{name}_per_{along[0]}"], summary[f"{name}_per_{along[0]}_interval"]
                t = bound[along[0]].values
                ax.plot(t, bound.values, style, color=f"C{i}", label=f"{p}: {kind}")
                low, high = interval.sel(interval="low").values, interval.sel(interval="high").values
                ax.fill_between(t, low, high, color=f"C{i}", alpha=0.15, lw=0)
            else:
                bound = summary[f"{name}_aggregated"]
                marker = "s" if style == "-" else "o"
                ax.errorbar([i], [float(bound)], yerr=_spread(bound), fmt=marker, color=f"C{i}", label=f"{p}: {kind}")
        if along and f"sobol_total_per_{along[0]}" in summary:  # a Saltelli design: the index itself
            index = summary[f"sobol_total_per_{along[0]}"].sel(parameter=p)
            ax.plot(index[along[0]].values, index.values, ":", lw=2, color=f"C{i}", label=f"{p}: Sobol' total")
    if not along:  # one output element: a category per parameter, every bound shown, 1 marked
        ax.set_xticks(range(len(params)), params)
        ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
        ax.set(
            ylabel="Sobol' index bound (95% interval)",
            ylim=(0, max(1.05, 1.05 * ax.get_ylim()[1])),
            title=f"{study}: bounds per parameter (an index is at most 1, dotted)",
        )
        return fig
    ax.set(
        xlabel=_label(summary[along[0]], along[0]),
        ylabel="Sobol' index bound (95% bootstrap band)",
        ylim=(0, min(1.05, max(1e-3, *ax.get_ylim()))),
        title=f"{study}: bounds along {along[0]}\n(upper: solid, lower: dashed, Sobol' total: dotted)"
        if f"sobol_total_per_{along[0]}" in summary
        else f"{study}: bounds along {along[0]} (upper: solid, lower: dashed)",
    )
    return fig


def _stacked(files: list[Path], path: Path) -> Path:
    """The images ``files`` one below the other (white where narrower), as one PNG at ``path``."""
    images = [mpimg.imread(f)[..., :3] for f in files]
    width = max(im.shape[1] for im in images)
    padded = [np.pad(im, ((0, 0), (0, width - im.shape[1]), (0, 0)), constant_values=1.0) for im in images]
    return write_atomic(path, lambda tmp: mpimg.imsave(tmp, np.concatenate(padded, axis=0), format="png"))


def _plot_outputs(sensitivity: xr.Dataset, summary: xr.Dataset, outdir: str | os.PathLike) -> list[Path]:
    """Several named outputs: each file holds every output's figure, one below the other."""
    names = output_names(sensitivity)
    with tempfile.TemporaryDirectory(dir=outdir, prefix=".outputs-") as tmp:
        drawn = {n: plot_study(select_output(sensitivity, n), summary_of(summary, n), Path(tmp) / n) for n in names}
        return [
            _stacked([files[i] for files in drawn.values()], Path(outdir) / f.name)
            for i, f in enumerate(drawn[names[0]])
        ]


def _derivative_axes(
    sensitivity: xr.Dataset, summary: xr.Dataset, param: str, others: list[str], element: dict, log_x: bool
) -> tuple[Figure, object, list]:
    """The figure of dy/dC: a panel per grid parameter, or, with second derivatives (order 2, one
    parameter), d2y/dC2 drawn beside dy/dC. Returns the figure, dy/dC's axes and the others'."""
    second = second_derivative_name(param)
    if second not in sensitivity:
        fig, axes = _panel_grid(1 + len(others)) if others else _figure((7, 4.5))
        ax, *more = axes[: 1 + len(others)] if others else [axes]
        return fig, ax, more
    fig = Figure(figsize=(12, 4.8))
    ax, curvature = fig.subplots(1, 2)
    d2y, mean, std = (
        v.sel(element) for v in (sensitivity[second], summary[f"{second}_mean"], summary[f"{second}_std"])
    )
    _lines_with_band(curvature, d2y, mean, std, param)
    curvature.set(
        xlabel=_label(sensitivity[param], param),
        ylabel=_label(sensitivity[second], f"d2y/d{param}2"),
        title=f"d2y/d{param}2 against {param}",
    )
    if log_x:
        curvature.set_xscale("log")
    return fig, ax, []


def plot_study(sensitivity: xr.Dataset, summary: xr.Dataset, outdir: str | os.PathLike) -> list[Path]:
    """Write the study's plots (:data:`PLOTS`; :data:`DESIGN_PLOTS` for a design) into ``outdir``."""
    Path(outdir).mkdir(parents=True, exist_ok=True)
    if output_names(sensitivity) != ["y"]:
        return _plot_outputs(sensitivity, summary, outdir)
    if "point" in sensitivity.dims:
        return plot_design(sensitivity, summary, outdir)
    param, *others = swept_parameters(sensitivity)
    name = derivative_name(param)
    element = most_sensitive_element(summary, param)
    # Further parameters of a grid are held at their middle value.
    fixed = {p: sensitivity[p].values[sensitivity.sizes[p] // 2].item() for p in others}
    element = {**element, **fixed}
    where = _element_text(element)
    study = _study_name(sensitivity)
    log_x = sensitivity.attrs.get("sweep_kind") == "log"
    dy = sensitivity[name].sel(element)
    y = sensitivity["y"].sel(element)
    mean, std = summary[f"{name}_mean"].sel(element), summary[f"{name}_std"].sel(element)
    x_label = _label(sensitivity[param], param)
    suffix = f"\n(most sensitive output of {param}; {where})" if where else ""
    method = sensitivity.attrs.get("method", "")

    figures = {}
    fig, ax, more = _derivative_axes(sensitivity, summary, param, others, element, log_x)
    _lines_with_band(ax, dy, mean, std, param)
    ax.set(
        xlabel=x_label,
        ylabel=_label(sensitivity[name], f"dy/d{param}"),
        title=f"{study}: dy/d{param} against {param} ({method}){suffix}",
    )
    for axis, q in zip(more, others, strict=True):  # every parameter of a grid, the rest at their middle
        held = {p: sensitivity[p].values[sensitivity.sizes[p] // 2].item() for p in (param, *others) if p != q}
        at = {**most_sensitive_element(summary, q), **held}
        dq = derivative_name(q)
        _lines_with_band(axis, sensitivity[dq].sel(at), summary[f"{dq}_mean"].sel(at), summary[f"{dq}_std"].sel(at), q)
        axis.set(
            xlabel=_label(sensitivity[q], q),
            ylabel=_label(sensitivity[dq], f"dy/d{q}"),
            title=f"dy/d{q} against {q}\n({_element_text(at)})",
        )
    figures[PLOTS[0]] = fig

    fig, ax = _figure((7, 4.5))
    # At most HEATMAP_CELLS cells: a large sweep is shown with a stride (said in the title).
    strides = {d: -(-dy.sizes[d] // limit) for d, limit in ((param, HEATMAP_CELLS[0]), ("sample", HEATMAP_CELLS[1]))}
    dy_map = dy.isel({d: slice(None, None, s) for d, s in strides.items()})
    values = dy_map.transpose("sample", param).values
    limit = float(np.nanmax(np.abs(values))) or 1.0
    mesh = ax.pcolormesh(
        dy_map[param].values, dy_map["sample"].values, values, cmap="RdBu_r", vmin=-limit, vmax=limit, shading="nearest"
    )
    fig.colorbar(mesh, ax=ax, label=_label(sensitivity[name], f"dy/d{param}"))
    shown = (
        ""
        if max(strides.values()) == 1
        else f" (1 in {strides[param]} values of {param}, 1 in {strides['sample']} samples)"
    )
    ax.set(xlabel=x_label, ylabel="sample", title=f"{study}: dy/d{param} over ({param}, sample){shown}{suffix}")
    figures[PLOTS[1]] = fig

    fig, ax = _figure((7, 4.5))
    _lines_with_band(ax, y, summary["y_mean"].sel(element), summary["y_std"].sel(element), param)
    ax.set(xlabel=x_label, ylabel=_label(sensitivity["y"], "y"), title=f"{study}: y against {param}{suffix}")
    figures[PLOTS[2]] = fig
    figures[PLOTS[3]] = _along_output(sensitivity, summary, param, fixed, study, log_x)
    return _save(figures, outdir, log_x)


ALONG_VALUES = 5
"""Values of the swept parameter drawn as lines of dy/dC along the output dim."""


def _along_output(
    sensitivity: xr.Dataset, summary: xr.Dataset, param: str, fixed: dict, study: str, log_x: bool
) -> Figure:
    """The sample mean of dy/dC over (C, the last output dim), and as lines along that dim at a few
    values of C: how the sensitivity moves along a time series. For an output without dims, the
    mean with its spread against C."""
    name = derivative_name(param)
    mean, std = summary[f"{name}_mean"], summary[f"{name}_std"]
    out_dims = [d for d in mean.dims if d not in (param, *fixed)]
    if not out_dims:
        fig, ax = _figure((7, 4.5))
        m, s = mean.sel(fixed), std.sel(fixed)
        ax.plot(m[param].values, m.values, color="k", label="mean over samples")
        ax.fill_between(m[param].values, (m - s).values, (m + s).values, color="0.5", alpha=0.25, label="± 1 std")
        ax.set(
            xlabel=_label(sensitivity[param], param),
            ylabel=_label(sensitivity[name], f"dy/d{param}"),
            title=f"{study}: dy/d{param} (the output has no dims to run along)",
        )
        return fig
    along = out_dims[-1]
    held = {d: mean[d].values[int(np.nanargmax(np.abs(mean).max([param, along]).values))] for d in out_dims[:-1]}
    m = mean.sel({**fixed, **held}).transpose(param, along)
    fig = Figure(figsize=(12, 4.5))
    left, right = fig.subplots(1, 2)
    limit = float(np.nanmax(np.abs(m.values))) or 1.0
    mesh = left.pcolormesh(
        m[param].values, m[along].values, m.values.T, cmap="RdBu_r", vmin=-limit, vmax=limit, shading="nearest"
    )
    fig.colorbar(mesh, ax=left, label=_label(sensitivity[name], f"mean dy/d{param}"))
    left.set(xlabel=_label(sensitivity[param], param), ylabel=_label(sensitivity[along], along))
    if log_x:
        left.set_xscale("log")
    picks = np.unique(np.linspace(0, m.sizes[param] - 1, min(ALONG_VALUES, m.sizes[param])).round().astype(int))
    colours = matplotlib_colours(len(picks))
    for colour, i in zip(colours, picks, strict=True):
        value = m[param].values[i]
        right.plot(m[along].values, m.isel({param: i}).values, color=colour, label=f"{param} = {value:.3g}")
    right.axhline(0, color="0.6", lw=0.8)
    right.set(xlabel=_label(sensitivity[along], along), ylabel=_label(sensitivity[name], f"mean dy/d{param}"))
    right.legend(fontsize=7, loc="best")
    where = _element_text(held)
    fig.suptitle(f"{study}: mean over samples of dy/d{param} along {along}" + (f" ({where})" if where else ""))
    return fig


def matplotlib_colours(count: int) -> list:
    """``count`` colours from a sequential map: lines ordered by a parameter's value read as ordered."""
    from matplotlib import colormaps

    return [colormaps["viridis"](v) for v in np.linspace(0.05, 0.9, count)]


AGREEMENT_ROWS = 24
"""At most this many comparisons drawn a row each; more (a study of many parameters) are drawn a
row per reference method, its parameters' values as dots and the worst named."""


@dataclass
class _AgreementRow:
    label: str
    worst: float  # the max relative difference drawn as the bar
    tolerance: float
    passed: bool
    values: np.ndarray  # every comparison's value in the row (one, or one per derivative)
    note: str = ""


def _agreement_rows(report: xr.Dataset) -> list[_AgreementRow]:
    """A row per comparison, or (past :data:`AGREEMENT_ROWS`) per reference method: ``dy_dC: forward
    vs reverse`` and ``dy_dK: forward vs reverse`` go to the row ``forward vs reverse``."""
    labels = [str(c) for c in report.comparison.values]
    raw = report.max_rel_diff.values.astype(float)
    tolerance, passed = report.tolerance.values.astype(float), report.passed.values.astype(bool)
    if len(labels) <= AGREEMENT_ROWS:
        return [
            _AgreementRow(label, value, tol, ok, np.array([value]))
            for label, value, tol, ok in zip(labels, raw, tolerance, passed, strict=True)
        ]
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label.split(": ", 1)[-1], []).append(i)
    rows = []
    for method, members in groups.items():
        values = np.nan_to_num(raw[members], nan=np.inf)
        worst = members[int(np.argmax(values))]
        failed = [labels[i].split(": ", 1)[0] for i in members if not passed[i]]
        note = f"worst {labels[worst].split(': ', 1)[0]}" + (
            f"; FAIL: {', '.join(failed[:3])}{' ...' if len(failed) > 3 else ''}" if failed else ""
        )
        rows.append(_AgreementRow(method, raw[worst], tolerance[worst], not failed, raw[members], note))
    return rows


def plot_agreement(report: xr.Dataset, path: str | os.PathLike) -> Path:
    """Method agreement: each comparison's max relative difference against its tolerance (log scale);
    many comparisons as a row per reference method (:func:`_agreement_rows`)."""
    rows = _agreement_rows(report)
    grouped = len(rows) < report.sizes["comparison"]
    floor = np.finfo(np.float64).eps / 10  # exact agreement is drawn at the floor and labelled 0
    width = 4.5 + 0.055 * max(len(row.label) for row in rows)  # room for the labels at 7 points
    fig, ax = _figure((width, 0.5 * len(rows) + 1.8))
    at = np.arange(len(rows))
    ax.barh(
        at,
        [max(row.worst, floor) for row in rows],
        color=["tab:green" if row.passed else "tab:red" for row in rows],
        label="max relative difference" + (" (the worst of the row)" if grouped else ""),
    )
    if grouped:
        dots = [(max(v, floor), i) for i, row in enumerate(rows) for v in row.values]
        ax.scatter(*zip(*dots, strict=True), s=6, color="k", alpha=0.4, zorder=3, label="each derivative")
    ax.scatter([row.tolerance for row in rows], at, marker="|", s=400, color="k", label="tolerance", zorder=3)
    for i, row in enumerate(rows):
        text = "0 (exact)" if row.worst == 0 else f"{row.worst:.1e}"
        ax.annotate(
            f"{text}  {row.note}".rstrip(),
            (max(row.worst, floor), i),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
        )
    ax.set(
        xscale="log",
        xlim=(floor / 2, 1),
        yticks=at,
        yticklabels=[row.label for row in rows],
        xlabel="max |study - reference| / max |reference|",
    )
    per_row = f"; a row per method over its {report.sizes['comparison'] // len(rows)} derivatives" if grouped else ""
    ax.set_title(
        f"{report.attrs.get('study', '')}: method agreement\n"
        f"({report.attrs['checked_points']} points x {report.attrs['checked_samples']} samples{per_row})",
        fontsize=9,
    )
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(alpha=0.3, axis="x")
    if grouped:  # under the axes: a few rows leave no free corner
        fig.set_layout_engine("constrained")
        fig.legend(fontsize=7, loc="outside lower center", ncols=3, markerscale=0.5)
    else:
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
    written = write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight"))
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.stages.plot", description=__doc__.splitlines()[0])
    parser.add_argument("sensitivity", nargs="+", help="sensitivity.nc, a study's part files, or its parts/ folder")
    parser.add_argument("--summary", required=True, help="summary.nc")
    parser.add_argument("--outdir", required=True, help="folder for the PNG files")
    args = parser.parse_args(argv)
    run_cli(lambda: plot_files(one_or_many(args.sensitivity), args.summary, args.outdir))


def plot_files(sensitivity: Source, summary: str | os.PathLike, outdir: str | os.PathLike) -> list[Path]:
    """:func:`plot_study` of files; an input that turns out unreadable is moved aside and named."""
    with (
        reading([*source_files(sensitivity), summary], "input file"),
        open_sensitivity(sensitivity) as ds,
        xr.open_dataset(summary) as summ,
    ):
        return plot_study(ds, summ, outdir)


if __name__ == "__main__":
    main()
