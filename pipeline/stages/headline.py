"""The headline numbers of a study, as a Markdown table for the HTML report: how it was computed,
what the checks found, and per parameter its indices, bounds and screening measures with intervals.

Written by the summarise rule beside ``summary.nc`` (``--headline``); the verify rule's table
(``verify.md``) gives the comparison with other methods.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from pipeline.storage.names import optional, swept_parameters
from pipeline.storage.outputs import output_names, select_output
from pipeline.summary import summary_of


def _value(summary: xr.Dataset, name: str, index: int | None = None) -> str:
    """``0.556 [0.53, 0.58]`` for an aggregated variable and its interval (attrs or ``*_interval``)."""
    if name not in summary:
        return ""
    da = summary[name] if index is None else summary[name][index]
    if da.ndim:  # per output element (a grid's measures): the largest, and where
        flat = int(np.nanargmax(da.values))
        where = {d: da[d].values[i].item() for d, i in zip(da.dims, np.unravel_index(flat, da.shape), strict=True)}
        return f"{float(da.max()):.3g} (largest, at {', '.join(f'{d}={v}' for d, v in where.items())})"
    text = f"{float(da):.3g}"
    interval = optional(summary, f"{name}_interval")
    if interval is not None:
        low, high = (interval[:, index] if index is not None else interval).values
        return f"{text} [{low:.3g}, {high:.3g}]"
    if "ci_low" in da.attrs:
        return f"{text} [{da.attrs['ci_low']:.3g}, {da.attrs['ci_high']:.3g}]"
    return text


def _how(ds: xr.Dataset) -> list[str]:
    attrs = ds.attrs
    method = attrs.get("method", "?")
    requested = attrs.get("method_requested", method)
    lines = [f"- method: `{method}`" + (f" (asked: `{requested}`)" if requested != method else "")]
    for key in ("fallback_reason", "method_choice"):
        if key in attrs:
            lines.append(f"- {key.replace('_', ' ')}: {attrs[key]}")
    lines.append(f"- device `{attrs.get('device', '?')}`, dtype `{attrs.get('dtype', '?')}`")
    if "fixed_parameters" in attrs:
        lines.append(f"- held fixed, not swept: {attrs['fixed_parameters']}")
    counts = {
        k: v for k, v in attrs.items() if k.startswith(("nonfinite_", "derivative_mismatch_", "hidden_dependence_"))
    }
    counts |= {k: attrs[k] for k in ("failed_points", "structurally_independent_outputs") if k in attrs}
    found = ", ".join(f"{k} = {v}" for k, v in counts.items() if v)
    lines.append(f"- checks: {found or 'nothing found (no non-finite values, mismatches or hidden dependences)'}")
    return lines


def headline(ds: xr.Dataset, summary: xr.Dataset) -> str:
    """The headline Markdown of a study (``ds``: its sensitivity data, attrs at least); one section per
    output of a model of several named outputs."""
    names = output_names(ds)
    if names != ["y"]:
        return "\n".join(headline(select_output(ds, n), summary_of(summary, n)) for n in names)
    params = swept_parameters(ds)
    title = ds.attrs.get("study") or ds.attrs.get("title", "")
    if ds.attrs.get("output_name"):
        title = f"{title}, output {ds.attrs['output_name']}"
    lines = [f"# {title}: headline numbers", "", *_how(ds), ""]
    design = "point" in ds.dims
    if design:
        columns = [
            ("Sobol' total", lambda i, p: _value(summary, "sobol_total_aggregated", i)),
            ("Sobol' first", lambda i, p: _value(summary, "sobol_first_aggregated", i)),
            ("upper bound, total", lambda i, p: _value(summary, f"sobol_total_upper_{p}_aggregated")),
            ("lower bound, first", lambda i, p: _value(summary, f"sobol_first_lower_{p}_aggregated")),
            ("activity score", lambda i, p: _value(summary, "activity_scores", i)),
        ]
    else:
        columns = [
            ("DGSM (mean over samples)", lambda i, p: _value(summary, f"dgsm_{p}_mean")),
            ("mu*", lambda i, p: _value(summary, f"mu_star_{p}")),
        ]
    columns = [(name, get) for name, get in columns if any(get(i, p) for i, p in enumerate(params))]
    if columns:
        what = "aggregated over samples and outputs, 95% intervals" if design else "over the sweep"
        lines += [f"Per parameter ({what}):", "", "| parameter | " + " | ".join(n for n, _ in columns) + " |"]
        lines.append("| --- |" + " --- |" * len(columns))
        lines += [f"| {p} | " + " | ".join(get(i, p) for _, get in columns) + " |" for i, p in enumerate(params)]
    if "sobol_consistent_with_bounds" in summary.attrs:
        verdict = "consistent" if summary.attrs["sobol_consistent_with_bounds"] else "CONTRADICTED"
        lines += [
            "",
            f"Sobol' indices against the derivative bounds: {verdict} ({summary.attrs['sobol_contradictions']})",
        ]
    return "\n".join(lines) + "\n"
