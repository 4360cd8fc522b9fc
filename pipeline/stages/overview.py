"""Workflow stage: one page over every study of a run, for the HTML report (``overview.html``).

A table with a row per study (what it computed and how, what the checks and the verify step found,
its most important parameters), then each study's headline numbers, screening and verify tables.

``python -m pipeline.stages.overview STUDY_FOLDER [...] --md overview.md --html overview.html``
(a study folder holds ``summary.nc``, ``headline.md`` and, where they were made, ``verify.nc``,
``verify.md``, ``screening.md``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from pipeline.stages.cli import run_cli
from pipeline.stages.html import body_html, page
from pipeline.storage.read import reading
from pipeline.storage.write import write_atomic
from pipeline.summary import summary_of

TOP = 3
"""Parameters named per study in the overview table."""


def _ranking(summary: xr.Dataset) -> str:
    """The study's most important parameters and the measure that ranks them."""
    params = str(summary.attrs.get("swept_parameters", "")).split()
    if "sobol_total_aggregated" in summary:
        values = dict(zip(params, summary.sobol_total_aggregated.values.tolist(), strict=False))
        what = "S_T"
    elif all(f"sobol_total_upper_{p}_aggregated" in summary for p in params) and params:
        values = {p: float(summary[f"sobol_total_upper_{p}_aggregated"]) for p in params}
        what = "S_T at most"
    elif all(f"mu_star_{p}" in summary for p in params) and params:
        values = {p: float(np.nanmax(summary[f"mu_star_{p}"].values)) for p in params}
        what = "largest mu*"
        if len(params) > 1:  # units differ between parameters: not a ranking
            return "; ".join(f"{p}: {what} {v:.3g}" for p, v in values.items())
    else:
        return ""
    order = sorted(values, key=lambda p: -values[p] if np.isfinite(values[p]) else np.inf)
    return ", ".join(f"{p} ({what} {values[p]:.3g})" for p in order[:TOP]) + (" ..." if len(order) > TOP else "")


def _rankings(summary: xr.Dataset) -> str:
    """:func:`_ranking` of the study, or of each of its named outputs."""
    names = str(summary.attrs.get("output_names", "")).split()
    if not names:
        return _ranking(summary)
    return "; ".join(f"{name}: {_ranking(summary_of(summary, name)) or '-'}" for name in names)


def _consistency(attrs: dict) -> str:
    """Whether the Sobol' indices agree with their bounds (of each named output)."""
    names = str(attrs.get("output_names", "")).split()
    found = (
        {n: attrs.get(f"{n}_sobol_consistent_with_bounds") for n in names}
        if names
        else {"": attrs.get("sobol_consistent_with_bounds")}
    )
    words = {n: "consistent" if c else "CONTRADICTED" for n, c in found.items() if c is not None}
    return "; ".join(f"{n}: {w}" if n else w for n, w in words.items())


def _verified(folder: Path) -> str:
    file = folder / "verify.nc"
    if not file.is_file():
        return "not run"
    with reading([file], "verify file"), xr.open_dataset(file) as report:
        available = report.available.values.astype(bool)
        if not available.any():
            return "no reference method"
        ratio = (report.max_rel_diff.values / report.tolerance.values)[available]
        verdict = "PASS" if report.attrs.get("passed") else "FAIL"
        return f"{verdict} (largest difference {np.nanmax(ratio):.2g} of its tolerance)"


def _row(folder: Path) -> tuple[list[str], str]:
    """The study's row of the table, and its sections below it."""
    with reading([folder / "summary.nc"], "summary file"), xr.open_dataset(folder / "summary.nc") as summary:
        attrs = summary.attrs
        row = [
            f"[{folder.name}](#{folder.name})",
            str(attrs.get("title", "")),
            f"`{attrs.get('method', '?')}` on {attrs.get('device', '?')}, {attrs.get('dtype', '?')}",
            _verified(folder),
            _rankings(summary),
            _consistency(attrs),
        ]
    sections = [folder / name for name in ("screening.md", "headline.md", "verify.md") if (folder / name).is_file()]
    body = "\n\n".join(f.read_text() for f in sections)
    return row, f'<section id="{folder.name}">\n{body_html(body)}\n</section>'


def overview(folders: Sequence[str | Path]) -> tuple[str, str]:
    """The overview's Markdown table and its whole HTML page."""
    header = ["study", "what", "method", "verify", "most important parameters", "Sobol' vs bounds"]
    rows, sections = zip(*(_row(Path(f)) for f in folders), strict=True) if folders else ((), ())
    lines = ["# Overview of the studies", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    markdown = "\n".join(lines) + "\n"
    linked = body_html(markdown)
    for folder in folders:
        name = Path(folder).name
        linked = linked.replace(f"[{name}](#{name})", f'<a href="#{name}">{name}</a>')
    return markdown, page("Overview of the studies", linked + "\n" + "\n".join(sections))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.stages.overview", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", help="the studies' output folders")
    parser.add_argument("--md", required=True, help="overview.md to write")
    parser.add_argument("--html", required=True, help="overview.html to write (a report item)")
    args = parser.parse_args(argv)

    def run() -> None:
        markdown, html = overview(args.folders)
        write_atomic(args.md, lambda tmp: Path(tmp).write_text(markdown))
        write_atomic(args.html, lambda tmp: Path(tmp).write_text(html))

    run_cli(run)


if __name__ == "__main__":
    main()
