"""Workflow stage of a two-stage study (``sweep.screen``): keep the parameters its screening ranked highest.

Reads the screening stage's ``summary.nc`` (a Sobol' design of every parameter, with derivatives),
ranks the parameters by the DGSM upper bound on their total Sobol' index (``by: upper_bound``) or by
their scaled mu* (``by: mu_star``), and writes the file the study's own design applies
(:func:`pipeline.config.screening.apply_screened`): the ``top`` parameters kept, the others held at
their median. With ``upper_bound``, what is left out is bounded: total indices add up to at least
the total index of their group, so the left-out parameters together explain at most the sum of
their upper bounds (of the screening design's variance). A Markdown table of the ranking goes to
the report.

``python -m pipeline.stages.screen SUMMARY --study NAME [--overrides ...] --output screening.yaml --md screening.md``
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml

from pipeline.config.studies import compose_job
from pipeline.design.distributions import parse
from pipeline.errors import ConfigError
from pipeline.stages.cli import run_cli
from pipeline.stages.html import write_markdown
from pipeline.storage.read import reading
from pipeline.storage.write import write_atomic


def _score(summary: xr.Dataset, p: str, by: str) -> tuple[float, float | None]:
    """The ranking statistic of ``p`` and the upper end of its interval (where there is one)."""
    if by == "upper_bound":
        name = f"sobol_total_upper_{p}_aggregated"
        if name in summary:
            high = summary[name].attrs.get("ci_high")
            return float(summary[name]), None if high is None else float(high)
    else:
        name = f"mu_star_scaled_{p}"
        if name in summary:
            return float(summary[name].mean()), None
    raise ConfigError(
        f"the screening summary has no {name}: it was not summarised from a design with derivatives of {p}; "
        "rerun the study's screening stage"
    )


def selection(summary: xr.Dataset, cfg: Any) -> dict[str, Any]:
    """What a screening keeps (``parameters``), holds (``fixed``: the median of each left out), and why."""
    screen, dists = cfg.sweep.screen, {p: parse(t) for p, t in cfg.sweep.parameters.items()}
    by = screen.by.value
    scores = {p: _score(summary, p, by) for p in dists}
    if any(not np.isfinite(score) for score, _ in scores.values()):
        bad = [p for p, (score, _) in scores.items() if not np.isfinite(score)]
        raise ConfigError(
            f"the screening gives no {by} for {', '.join(bad)} (NaN: y did not vary, or failed points); "
            "screening cannot rank the parameters: widen the distributions or check the model"
        )
    order = sorted(dists, key=lambda p: -scores[p][0])  # stable: ties keep the study's order
    kept, left = order[: screen.top], order[screen.top :]
    ranking = {
        p: {by: scores[p][0], **({"interval_high": scores[p][1]} if scores[p][1] is not None else {})} for p in order
    }
    out = {
        "parameters": kept,
        "fixed": {p: float(dists[p].ppf(np.array([0.5]))[0]) for p in left},
        "by": by,
        "screening_points": cfg.sweep.screen.n,
        "ranking": ranking,
    }
    if by == "upper_bound":
        out["left_out_total_at_most"] = float(sum(scores[p][0] for p in left))
    return out


def _markdown(study: str, chosen: dict[str, Any]) -> str:
    by = chosen["by"]
    what = "upper bound on S_T" if by == "upper_bound" else "mu* x standard deviation (mean over outputs)"
    lines = [
        f"# {study}: screening of every parameter",
        "",
        f"Ranked by the {what}; the study's design keeps the top {len(chosen['parameters'])} and holds the "
        "others at their median.",
        "",
        f"| rank | parameter | {what} | 95% interval, upper end | kept / held at |",
        "| ---: | --- | ---: | ---: | --- |",
    ]
    for rank, (p, row) in enumerate(chosen["ranking"].items(), 1):
        high = row.get("interval_high")
        held = "kept" if p in chosen["parameters"] else f"held at {chosen['fixed'][p]:.6g}"
        lines.append(f"| {rank} | {p} | {row[by]:.4g} | {'' if high is None else f'{high:.4g}'} | {held} |")
    if "left_out_total_at_most" in chosen:
        lines += [
            "",
            f"The parameters held fixed explain together at most {chosen['left_out_total_at_most']:.3g} of the "
            "variance of y (the sum of their upper bounds bounds their group's total index).",
        ]
    return "\n".join(lines) + "\n"


def screen(
    summary_file: str, study: str, overrides: Sequence[str], output: str, md: str | None = None, html: str | None = None
) -> None:
    """Write the screening file (and its Markdown table) of ``study`` from its screening summary."""
    cfg = compose_job(study, list(overrides))
    if cfg.sweep.screen.top is None:
        raise ConfigError(f"study {study} has no sweep.screen.top: it is not a two-stage study")
    with reading([summary_file], "screening summary"), xr.open_dataset(summary_file) as summary:
        chosen = selection(summary.load(), cfg)
    header = f"# Written by pipeline.stages.screen from {summary_file}: what study {study}'s design keeps.\n"
    write_atomic(output, lambda tmp: Path(tmp).write_text(header + yaml.safe_dump(chosen, sort_keys=False)))
    if md:
        write_markdown(md, _markdown(study, chosen), html)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.stages.screen", description=__doc__.splitlines()[0])
    parser.add_argument("summary", help="the screening stage's summary.nc")
    parser.add_argument("--study", required=True, help="the two-stage study (conf/study/<name>.yaml)")
    parser.add_argument("--overrides", nargs="*", default=[], help="the study's Hydra overrides, as in the workflow")
    parser.add_argument("--output", required=True, help="the screening file to write (YAML)")
    parser.add_argument("--md", help="the ranking as Markdown")
    parser.add_argument("--html", help="the same as a page for the HTML report")
    args = parser.parse_args(argv)
    run_cli(lambda: screen(args.summary, args.study, args.overrides, args.output, args.md, args.html))


if __name__ == "__main__":
    main()
