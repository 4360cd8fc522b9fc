"""Workflow overhead: a study through ``snakemake --cores N`` against one ``sensitivity()`` call.

``python -m benchmarks.workflow [--study oscillator_large] [--cores 2]`` runs, one after the
other on the same machine, for each of :data:`STUDIES` (or the one study given):

1. the floor: the whole sweep in this process, one :func:`pipeline.stages.compute.sweep_dataset` call
   (what ``pipeline.sensitivity`` does for the study), no files; then writing it to one NetCDF
   file, timed apart;
2. ``snakemake --cores N`` up to the study's ``sensitivity.nc`` (prepare, compute parts, merge)
   in a scratch outputs folder;
3. the same in the no-merge mode (``merge: false``): up to the part files.

It reports wall times, their ratios to the floor and the per-job breakdown from the rules'
``benchmark:`` files (seconds, peak RSS) in ``workflow.json`` and ``workflow.md``.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from benchmarks import write_report
from pipeline.config.studies import compose_job
from pipeline.stages.compute import sweep_dataset
from pipeline.storage.write import write_netcdf

ROOT = Path(__file__).resolve().parent.parent

STUDIES: dict[str, list[str]] = {
    "oscillator_large": [],
    "example_heat": ["sweep.num=10240", "sweep.parts=4", "model.args.steps=2000"],
}
"""The studies measured, with their overrides: one whose results are large against its compute
(1.5 GB of float32 from 10,000 short integrations), and one whose compute is long against its
results (the user-model example, 10,240 values of C x 2,000 heat steps: a minute in one call)."""


def _snakemake(study: str, overrides: list[str], parts: int, cores: int, outputs: Path, merge: bool) -> float:
    """Wall seconds of ``snakemake`` building the study's merged dataset (or its ``parts`` files)."""
    config = {"studies": [study], "outputs": str(outputs), "merge": merge, "overrides": {study: overrides}}
    outputs.mkdir(parents=True)
    config_file = outputs.parent / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    targets = (
        [str(outputs / study / "sensitivity.nc")]
        if merge
        else [str(outputs / study / "parts" / f"{i}.nc") for i in range(parts)]
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    done = subprocess.run(
        ["snakemake", *targets, "--cores", str(cores), "--configfile", str(config_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench_workflow: snakemake failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return time.perf_counter() - start


def _benchmarks(outputs: Path, study: str) -> list[dict]:
    """The rules' benchmark files: job, seconds, peak RSS (MB)."""
    rows = []
    for tsv in sorted((outputs / "benchmarks" / study).glob("*.tsv")):
        with tsv.open() as f:
            record = next(csv.DictReader(f, delimiter="\t"))
        rss = record.get("max_rss", "-")
        rows.append(
            {
                "job": tsv.stem,
                "seconds": float(record["s"]),
                "max_rss_mb": float(rss) if rss not in ("-", "NA", "") else None,
            }
        )
    return rows


PROBE = """
import os, time

def probe(x, C):
    if not os.path.exists(os.environ["SENSWEEP_PROBE"]):  # the first call of the model
        with open(os.environ["SENSWEEP_PROBE"], "w") as f:
            f.write(repr(time.time()))
    return C * x
"""


def _startup(repeats: int = 5) -> dict[str, float]:
    """Median seconds from a process's start to: the end of ``import torch``; the first model call of
    a compute job (``python -m pipeline.stages.compute``, a probe model); the end of that job (a
    sweep of 4 values, written); and the end of a prepare job."""
    env = {**os.environ, "SENSWEEP_CONF": str(ROOT / "conf")}
    runs: dict[str, list[float]] = {
        "import torch": [],
        "compute: to the first model call": [],
        "compute": [],
        "prepare": [],
    }
    with tempfile.TemporaryDirectory(dir=ROOT / "outputs") as scratch:
        folder = Path(scratch)
        (folder / "startup_probe.py").write_text(PROBE)
        model = [
            "model=custom",
            "model._target_=startup_probe.probe",
            "sweep.num=4",
            "sweep.parts=1",
            "verify.enabled=false",
        ]
        for i in range(repeats):
            probe = folder / f"first-call-{i}"
            env["SENSWEEP_PROBE"] = str(probe)
            for what, command in (
                ("import torch", [sys.executable, "-c", "import torch"]),
                (
                    "compute",
                    [
                        sys.executable,
                        "-m",
                        "pipeline.stages.compute",
                        "study=seed_linear",
                        *model,
                        f"output={folder / f'c{i}.nc'}",
                    ],
                ),
                (
                    "prepare",
                    [
                        sys.executable,
                        "-m",
                        "pipeline.stages.prepare",
                        "study=seed_linear",
                        f"output={folder / f'p{i}.nc'}",
                    ],
                ),
            ):
                start = time.time()
                subprocess.run(command, cwd=folder, env=env, check=True, capture_output=True)
                runs[what].append(time.time() - start)
                if what == "compute":
                    runs["compute: to the first model call"].append(float(probe.read_text()) - start)
    return {what: float(sorted(times)[len(times) // 2]) for what, times in runs.items()}


def _measure(study: str, overrides: list[str], cores: int) -> dict:
    """The floor, the floor's write, and the two workflow runs of one study (module doc)."""
    cfg = compose_job(study, overrides)
    torch.set_num_threads(cores)
    start = time.perf_counter()
    ds = sweep_dataset(cfg, study)
    floor = time.perf_counter() - start
    (ROOT / "outputs").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "outputs") as scratch:
        start = time.perf_counter()
        write_netcdf(ds, Path(scratch) / "direct.nc")
        write = time.perf_counter() - start
        del ds
        runs = {}
        for merge, name in ((True, "merge"), (False, "parts")):
            outputs = Path(scratch) / name / "outputs"
            runs[name] = _snakemake(study, overrides, cfg.sweep.parts, cores, outputs, merge)
            runs[f"jobs_{name}"] = _benchmarks(outputs, study)
    sweep = " x ".join(f"{v.num} {k}" for k, v in [(cfg.sweep.param, cfg.sweep), *cfg.sweep.grid.items()])
    return {
        "study": study,
        "overrides": overrides,
        "sweep": sweep,
        "parts": cfg.sweep.parts,
        "floor_s": floor,
        "write_s": write,
        "snakemake_merge_s": runs["merge"],
        "snakemake_parts_s": runs["parts"],
        "ratio_merge": runs["merge"] / floor,
        "ratio_parts": runs["parts"] / floor,
        "jobs_merge": runs["jobs_merge"],
        "jobs_parts": runs["jobs_parts"],
    }


def _lines(run: dict, cores: int) -> list[str]:
    """One study's tables."""
    floor, merged, parts, write = run["floor_s"], run["snakemake_merge_s"], run["snakemake_parts_s"], run["write_s"]
    changed = f", {' '.join(run['overrides'])}" if run["overrides"] else ""
    return [
        f"## {run['study']} ({run['sweep']}, {run['parts']} parts{changed}), `snakemake --cores {cores}`",
        "",
        "| run | wall [s] | ratio to one call |",
        "| --- | --- | --- |",
        f"| one `sensitivity()` call, in memory (floor) | {floor:.1f} | 1 |",
        f"| the same, then written to one NetCDF file | {floor + write:.1f} | {(floor + write) / floor:.2f} |",
        f"| snakemake to sensitivity.nc (prepare, compute, merge) | {merged:.1f} | {merged / floor:.2f} |",
        f"| snakemake to the parts (no-merge mode) | {parts:.1f} | {parts / floor:.2f} |",
        "",
        "| job (merge run) | wall [s] | peak RSS [MB] |",
        "| --- | --- | --- |",
        *[f"| {j['job']} | {j['seconds']:.1f} | {j['max_rss_mb'] or '-'} |" for j in run["jobs_merge"]],
        "",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workflow", description=__doc__.splitlines()[0])
    parser.add_argument("--study", help="one study, as it is configured (default: every one of STUDIES)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", default="outputs/bench", help="folder for workflow.json and workflow.md")
    args = parser.parse_args(argv)

    studies = {args.study: []} if args.study else STUDIES
    runs = [_measure(study, overrides, args.cores) for study, overrides in studies.items()]
    startup = _startup()
    report = {
        "cores": args.cores,
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "studies": runs,
        "startup_s": startup,
    }
    lines = [
        f"Workflow overhead against one in-memory call, {report['date']}, torch {torch.__version__}.",
        "",
        *[line for run in runs for line in _lines(run, args.cores)],
        "## Job start-up",
        "",
        "Median of 5, seconds from the process's start; a compute job of `seed_linear` with a probe model:",
        "",
        "| from process start to | [s] |",
        "| --- | --- |",
        *[f"| {what} | {seconds:.2f} |" for what, seconds in startup.items()],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_report(args.out, "workflow", text, report)


if __name__ == "__main__":
    main()
