"""Large designs on a bounded memory: time and peak memory of computing and summarising a design
against its number of points, each stage in a process of its own.

Two designs: Sobol's G-function of 100 parameters (one output per point: the derivatives dominate)
and a damped wave of 1,000 values per point and 3 parameters (the outputs dominate). For each
number of points, one process computes the design (``sensitivity``, ``method.max_memory_mb`` 512)
and writes it, another summarises the file (:func:`pipeline.stages.summarise.summarise_file`, which
reads a block of points at a time); each reports its wall time and peak RSS. Points per second and
peak RSS against points show whether a stage streams (flat memory) or holds the design.

``python -m benchmarks.streaming [--quick] [--out outputs/bench]`` writes ``streaming.md`` and
``streaming.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import write_report

ROOT = Path(__file__).resolve().parent.parent

MODELS = '''
import torch

def g_function(x, **p):
    """Sobol's G-function, a_i = i - 1 (x1 the most important)."""
    y = torch.ones_like(x)
    for i, name in enumerate(p):
        y = y * (torch.abs(4 * p[name] - 2) + i) / (1 + i)
    return x + y

def wave(x, freq, decay, offset):
    z = torch.linspace(0.0, 1.0, 1000, dtype=x.dtype)
    return (1 + x[:, None]) * torch.sin(freq * z) * torch.exp(-decay * z) + offset * z

wave.output_dims = ("z",)
'''

COMPUTE = """
import json, resource, sys, time
import torch
sys.path.insert(0, sys.argv[4])
from models import g_function, wave
from pipeline import design, sensitivity
from pipeline.storage.write import write_netcdf
kind, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
start = time.perf_counter()
if kind == "g100":
    d = design.sobol({f"x{i}": design.uniform(0, 1) for i in range(1, 101)}, n, seed=0)
    ds = sensitivity(g_function, [1.0], d, dtype="float64", max_memory_mb=512, hidden_policy="off")
else:
    dists = {"freq": design.uniform(1, 10), "decay": design.loguniform(0.1, 3), "offset": design.normal(0, 1)}
    ds = sensitivity(wave, [0.0], design.sobol(dists, n, seed=0), method="forward", max_memory_mb=512,
                     hidden_policy="off")
write_netcdf(ds, path)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"s": time.perf_counter() - start, "rss_mb": peak}))
"""

SUMMARISE = """
import json, resource, sys, time
from pipeline.stages.summarise import summarise_file
start = time.perf_counter()
summarise_file(sys.argv[1], sys.argv[2])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"s": time.perf_counter() - start, "rss_mb": peak}))
"""

SIZES = {"g100": (2**14, 2**16, 2**18), "wave": (2**12, 2**14, 2**16)}
QUICK_SIZES = {"g100": (2**12, 2**14), "wave": (2**10, 2**12)}
WHAT = {"g100": "G-function, 100 parameters, 1 output", "wave": "damped wave, 3 parameters, 1,000 outputs"}


def _run(script: str, *args: str) -> dict[str, float]:
    """Run ``script`` in a fresh process; its last line is its JSON report."""
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"benchmark process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streaming", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller designs (a minute)")
    parser.add_argument("--out", default="outputs/bench", help="folder for streaming.json and streaming.md")
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    rows = []
    (ROOT / "outputs").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "outputs") as scratch:
        (Path(scratch) / "models.py").write_text(MODELS)
        for kind, counts in sizes.items():
            for n in counts:
                data, summary = Path(scratch) / f"{kind}-{n}.nc", Path(scratch) / f"{kind}-{n}-summary.nc"
                computed = _run(COMPUTE, kind, str(n), str(data), scratch)
                summarised = _run(SUMMARISE, str(data), str(summary))
                rows.append(
                    {
                        "design": kind,
                        "points": n,
                        "file_mb": data.stat().st_size / 2**20,
                        "compute": computed,
                        "summarise": summarised,
                    }
                )
                data.unlink()
    report = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "rows": rows}
    lines = [
        f"Large designs: each stage in a process of its own, {report['date']}, torch {torch.__version__}, "
        "`method.max_memory_mb` 512. Summaries read a block of points at a time: their peak RSS should not "
        "grow with the points.",
        "",
        "| design | points | file [MB] | compute [s] | compute [points/s] | compute peak RSS [MB] "
        "| summarise [s] | summarise [points/s] | summarise peak RSS [MB] |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        c, s = r["compute"], r["summarise"]
        lines.append(
            f"| {WHAT[r['design']]} | {r['points']:,} | {r['file_mb']:.0f} | {c['s']:.1f} "
            f"| {r['points'] / c['s']:,.0f} | {c['rss_mb']:.0f} | {s['s']:.1f} "
            f"| {r['points'] / s['s']:,.0f} | {s['rss_mb']:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    write_report(args.out, "streaming", text, report)


if __name__ == "__main__":
    main()
