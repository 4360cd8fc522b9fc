"""Benchmarks: every derivative method side by side, as a ratio to the primal floor.

``python -m pipeline.bench [--quick] [--out outputs/bench]`` (``make bench``) times, in one
process and on the same inputs, for each model and number of parameter values N:

- ``primal``: the model evaluated at all N values at once (``vmap``, no derivative), the floor;
- sensweep's ``forward``, ``forward_dual``, ``reverse`` and ``finite_difference``;
- the seed thread's baselines: the per-element ``autograd.grad`` loop (a few elements timed,
  extrapolated: said so in the table) and ``autograd.grad(..., is_grads_batched=True)``;
- ``torch.func.jacfwd`` under ``vmap`` (what a user of torch.func would write).

Each figure is the median of repeats after a warm-up; peak memory is the process's peak RSS
increase (CPU) or ``torch.cuda.max_memory_allocated`` (GPU). Every method's derivative is checked
against ``forward`` (``allclose`` at the dtype's tolerance) inside the harness. Results go to
``bench.json``, ``bench.md`` and ``bench.png`` (time against N, log-log, one line per method).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.func import jacfwd, vmap

from pipeline.derivatives import METHODS
from pipeline.memory import measure_peak_bytes
from pipeline.models import Oscillator
from pipeline.routine import as_routine
from pipeline.storage import write_atomic
from pipeline.structure import check_structure

REVERSE_MAX_OUTPUTS = 1024
"""Reverse mode costs one pass per output element: skipped above this many outputs per point."""


@dataclass
class Case:
    """A benchmark model: a pure ``fn(x, theta)``, its inputs and C values."""

    name: str
    fn: Callable
    x: torch.Tensor
    low: float
    high: float


def _mlp(samples: int, width: int = 256, dtype: torch.dtype = torch.float32) -> Case:
    g = torch.Generator().manual_seed(0)
    w = [torch.randn(a, b, generator=g, dtype=dtype) / a**0.5 for a, b in ((16, width), (width, width), (width, 10))]

    def fn(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(x @ (w[0] * theta[0]))
        return torch.tanh(h @ w[1]) @ w[2]

    return Case("mlp", fn, torch.randn(samples, 16, generator=g, dtype=dtype), 0.5, 1.5)


def _oscillator(samples: int, dtype: torch.dtype = torch.float32) -> Case:
    routine = as_routine(Oscillator(dt=0.05, steps=200), ["C"], bind={"C": "damping"}, dtype=dtype)
    x = torch.rand(samples, 2, generator=torch.Generator().manual_seed(0), dtype=dtype) * 2 - 1
    return Case("oscillator", routine.fn, x, 0.1, 1.9)


def _conv(samples: int, dtype: torch.dtype = torch.float32) -> Case:
    g = torch.Generator().manual_seed(0)
    kernels = [torch.randn(8, 4, 5, generator=g, dtype=dtype) / 4, torch.randn(8, 8, 5, generator=g, dtype=dtype) / 6]

    def fn(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(torch.nn.functional.conv1d(x, kernels[0] * theta[0], padding=2))
        return torch.nn.functional.conv1d(h, kernels[1], padding=2)

    return Case("conv1d", fn, torch.randn(samples, 4, 64, generator=g, dtype=dtype), 0.5, 1.5)


def _seed_linear(samples: int, dtype: torch.dtype = torch.float32) -> Case:
    return Case("seed_linear", lambda x, theta: theta[0] * x, torch.arange(samples, dtype=dtype), -5.0, 5.0)


CASES = {"mlp": _mlp, "oscillator": _oscillator, "conv1d": _conv, "seed_linear": _seed_linear}


def _timed(run: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, int | None, object]:
    """Median seconds over ``repeats`` after one warm-up, peak extra bytes, last result."""
    result = run()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        result = run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    _, peak = measure_peak_bytes(run, device)
    return statistics.median(times), peak, result


def _loop_extrapolated(case: Case, points: torch.Tensor, elements: int = 20) -> tuple[float, torch.Tensor]:
    """Seconds per point of the seed's per-element loop, from ``elements`` timed elements."""
    theta = points[0].clone().requires_grad_(True)
    y = case.fn(case.x, theta).reshape(-1)
    count = min(elements, y.numel())
    start = time.perf_counter()
    grads = [torch.autograd.grad(y[i], theta, retain_graph=True)[0] for i in range(count)]
    per_element = (time.perf_counter() - start) / count
    return per_element * y.numel() * len(points), torch.stack(grads)[:, 0]


def bench_case(case: Case, n: int, device: torch.device, repeats: int) -> list[dict]:
    """Every method on one model and N values; rows with time, ratio to primal, memory, check."""
    x = case.x.to(device)
    points = torch.linspace(case.low, case.high, n, dtype=x.dtype, device=device)[:, None]
    primal = vmap(lambda t: case.fn(x, t))
    floor, floor_peak, _ = _timed(lambda: primal(points), device, repeats)
    rows = [{"model": case.name, "n": n, "method": "primal (floor)", "seconds": floor, "ratio": 1.0,
             "peak_mb": None if floor_peak is None else floor_peak / 2**20, "check": "-"}]
    outputs = primal(points[:1]).numel()
    tol = {torch.float32: 1e-3, torch.float64: 1e-7}[x.dtype]
    reference = None

    def add(method: str, seconds: float, peak: int | None, dy: torch.Tensor | None, note: str = "") -> None:
        ok = "-" if dy is None or reference is None else \
            ("ok" if torch.allclose(dy.cpu(), reference, rtol=tol, atol=tol * float(reference.abs().max())) else "FAIL")
        rows.append({"model": case.name, "n": n, "method": method + note, "seconds": seconds, "ratio": seconds / floor,
                     "peak_mb": None if peak is None else peak / 2**20, "check": ok})

    _, hint = check_structure(case.fn, x, points)  # as sensitivity() does, untimed
    for method in ("forward", "forward_dual", "reverse", "finite_difference"):
        if method == "reverse" and outputs > REVERSE_MAX_OUTPUTS:
            continue
        fn = METHODS[method]
        # Chunk sizes as users get them: fitted to the memory budget.
        seconds, peak, result = _timed(lambda fn=fn: fn(case.fn, x, points, memory_hint=hint), device, repeats)
        if reference is None:
            reference = result.dy[..., 0].cpu()
        add(method, seconds, peak, result.dy[..., 0])
    jac = vmap(jacfwd(lambda t: case.fn(x, t)))
    seconds, peak, result = _timed(lambda: jac(points), device, repeats)
    add("torch.func jacfwd+vmap", seconds, peak, result[..., 0])
    if outputs <= REVERSE_MAX_OUTPUTS:
        def batched_grads() -> torch.Tensor:
            out = []
            for t in points:
                theta = t.clone().requires_grad_(True)
                y = case.fn(x, theta).reshape(-1)
                eye = torch.eye(y.numel(), dtype=y.dtype, device=device)
                out.append(torch.autograd.grad(y, theta, eye, is_grads_batched=True)[0][:, 0].reshape(y.shape))
            return torch.stack(out)

        seconds, peak, result = _timed(batched_grads, device, 1)
        add("autograd.grad is_grads_batched", seconds, peak, result.reshape(reference.shape))
    seconds, first = _loop_extrapolated(case, points)
    loop_ok = torch.allclose(first.cpu(), reference[0].reshape(-1)[: len(first)], rtol=tol, atol=tol)
    rows.append({"model": case.name, "n": n, "method": "per-element loop (extrapolated)", "seconds": seconds,
                 "ratio": seconds / floor, "peak_mb": None, "check": "ok" if loop_ok else "FAIL"})
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"Benchmarks on {meta['machine']}, {meta['date']}, torch {meta['torch']}, {meta['dtype']}, "
             f"{meta['samples']} samples; median of {meta['repeats']} after a warm-up. Ratio: time / primal floor.", "",
             "| model | N | method | time [s] | ratio | peak [MB] | check |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        peak = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
        lines.append(f"| {r['model']} | {r['n']} | {r['method']} | {r['seconds']:.4g} | {r['ratio']:.3g} | {peak} | "
                     f"{r['check']} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for method in dict.fromkeys(r["method"] for r in rows if r["model"] == model):
            pts = sorted((r["n"], r["seconds"]) for r in rows if r["model"] == model and r["method"] == method)
            ax.plot(*zip(*pts, strict=True), marker="o", lw=2.5 if method == "forward" else 1, label=method)
        ax.set(xscale="log", yscale="log", xlabel="N (parameter values)", ylabel="time [s]", title=model)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: about a minute")
    parser.add_argument("--out", default="outputs/bench", help="folder for bench.json, bench.md, bench.png")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    dtype = getattr(torch, args.dtype)
    samples, sizes, repeats = (200, (8, 64), 3) if args.quick else (1000, (8, 64, 512), 5)
    meta = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {device}",
            "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "dtype": args.dtype, "samples": samples,
            "repeats": repeats}
    rows = []
    for name, make in CASES.items():
        case = make(samples, dtype=dtype)
        for n in sizes:
            rows += bench_case(case, n, device, repeats)
            print(markdown([r for r in rows if r["model"] == name and r["n"] == n], meta), flush=True)
    out = Path(args.out)
    write_atomic(out / "bench.json", lambda tmp: tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1)))
    write_atomic(out / "bench.md", lambda tmp: tmp.write_text(markdown(rows, meta)))
    plot(rows, out / "bench.png")
    failed = [r for r in rows if r["check"] == "FAIL"]
    if failed:
        raise SystemExit(f"bench: {len(failed)} methods disagree with forward: {failed}")


if __name__ == "__main__":
    main()
