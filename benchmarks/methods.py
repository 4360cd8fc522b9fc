"""Benchmarks: every derivative method side by side, as a ratio to the primal floor.

``python -m benchmarks.methods [--quick] [--out outputs/bench]`` (``make bench``) times, in one
process and on the same inputs, for each model and number of parameter values N:

- ``primal``: the model evaluated at all N values at once (``vmap``, no derivative), the floor;
- sensweep's ``forward``, ``forward_dual``, ``reverse`` and ``finite_difference``;
- the seed thread's baselines: the per-element ``autograd.grad`` loop (a few elements timed,
  extrapolated: said so in the table) and ``autograd.grad(..., is_grads_batched=True)``;
- ``torch.func.jacfwd`` under ``vmap`` (what a user of torch.func would write);
- ``forward`` with ``compile=True`` (one compiled RK4 step for the oscillator; the whole
  batched jvp otherwise), its compile time in a column of its own;
- the outside peer, JAX ``jit(vmap(jvp))`` of the same model and weights (``lax.scan`` over the
  RK4 steps), where JAX is installed (``pip install .[bench]``; a note otherwise).

A second table (``--chunking``, on by default) runs each model at N=512 with its chunk size chosen
automatically (the Conv1d stack under a 2 GB budget, ``max_memory_mb=2048``) against fixed chunk
sizes: the automatic choice, checks included, against the best fixed one.

Each figure is the median of repeats after a warm-up; peak memory is the process's peak RSS
increase (CPU) or ``torch.cuda.max_memory_allocated`` (GPU). Every method's derivative is checked
against ``forward`` (``allclose`` at the dtype's tolerance) inside the harness. Results go to
``bench.json``, ``bench.md`` and ``bench.png`` (time against N, log-log, one line per method).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.func import jacfwd, vmap

from benchmarks import write_report
from pipeline.derivatives.chunking import ChunkHints
from pipeline.derivatives.compiled import compiled_forward
from pipeline.derivatives.heap import kept_heap, measure_peak_bytes
from pipeline.derivatives.methods import FORWARD_MODE, METHODS, ieee_float32
from pipeline.derivatives.opcost import call_cost, is_op_bound, trivial_call_seconds
from pipeline.derivatives.routine import StepFunctions, as_routine
from pipeline.derivatives.structure import check_structure
from pipeline.derivatives.zerotensor import cheap_zero_tangents
from pipeline.models import Oscillator
from pipeline.storage.write import write_atomic

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
    stepper: StepFunctions | None = None
    jax_fn: Callable | None = None  # (jnp module, x, theta) -> y, the same model in JAX
    compile_note: str = ""  # why compile=true is not timed (empty: it is)


def _mlp(samples: int, width: int = 256, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Case:
    g = torch.Generator().manual_seed(0)
    shapes = ((16, width), (width, width), (width, 10))
    w = [(torch.randn(a, b, generator=g, dtype=dtype) / a**0.5).to(device) for a, b in shapes]

    def fn(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(x @ (w[0] * theta[0]))
        return torch.tanh(h @ w[1]) @ w[2]

    def jax_fn(jnp, x, theta):
        h = jnp.tanh(x @ (w[0].cpu().numpy() * theta[0]))
        return jnp.tanh(h @ w[1].cpu().numpy()) @ w[2].cpu().numpy()

    return Case("mlp", fn, torch.randn(samples, 16, generator=g, dtype=dtype), 0.5, 1.5, jax_fn=jax_fn)


def _oscillator(samples: int, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Case:
    model = Oscillator(dt=0.05, steps=200)
    routine = as_routine(model, ["C"], bind={"C": "damping"}, dtype=dtype, device=torch.device(device))
    x = torch.rand(samples, 2, generator=torch.Generator().manual_seed(0), dtype=dtype) * 2 - 1

    def jax_fn(jnp, x, theta):
        from jax import lax

        h, c = model.dt, theta[0]

        def step(state, _):
            p, v = state

            def rate(p, v):
                return v, -c * v - p

            k1p, k1v = rate(p, v)
            k2p, k2v = rate(p + h / 2 * k1p, v + h / 2 * k1v)
            k3p, k3v = rate(p + h / 2 * k2p, v + h / 2 * k2v)
            k4p, k4v = rate(p + h * k3p, v + h * k3v)
            p = p + h / 6 * (k1p + 2 * k2p + 2 * k3p + k4p)
            v = v + h / 6 * (k1v + 2 * k2v + 2 * k3v + k4v)
            return (p, v), p

        _, path = lax.scan(step, (x[:, 0], x[:, 1]), None, length=model.steps)
        return jnp.concatenate([x[:, :1], path.T], axis=1)

    return Case("oscillator", routine.fn, x, 0.1, 1.9, stepper=routine.stepper, jax_fn=jax_fn)


def _rk4_function(samples: int, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Case:
    """The oscillator as a user writes it without :class:`~pipeline.derivatives.timestepper.TimeStepper`: a plain
    function with its time loop, the same RK4 and inputs."""
    oscillator = _oscillator(samples, dtype, device)
    dt, steps = 0.05, 200

    def fn(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        c = theta[0]
        p, v = x[:, 0], x[:, 1]

        def rate(p, v):
            return v, -c * v - p

        path = [p]
        for _ in range(steps):
            k1p, k1v = rate(p, v)
            k2p, k2v = rate(p + dt / 2 * k1p, v + dt / 2 * k1v)
            k3p, k3v = rate(p + dt / 2 * k2p, v + dt / 2 * k2v)
            k4p, k4v = rate(p + dt * k3p, v + dt * k3v)
            p, v = p + dt / 6 * (k1p + 2 * k2p + 2 * k3p + k4p), v + dt / 6 * (k1v + 2 * k2v + 2 * k3v + k4v)
            path.append(p)
        return torch.stack(path, dim=-1)

    note = (
        "not timed: torch.compile unrolls a plain function's 200 steps (about 3 s a step when nothing is "
        "cached), where a TimeStepper compiles one step"
    )
    return Case("rk4_function", fn, oscillator.x, 0.1, 1.9, jax_fn=oscillator.jax_fn, compile_note=note)


def _conv(samples: int, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Case:
    g = torch.Generator().manual_seed(0)
    kernels = [torch.randn(8, 4, 5, generator=g, dtype=dtype) / 4, torch.randn(8, 8, 5, generator=g, dtype=dtype) / 6]
    kernels = [k.to(device) for k in kernels]

    def fn(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(torch.nn.functional.conv1d(x, kernels[0] * theta[0], padding=2))
        return torch.nn.functional.conv1d(h, kernels[1], padding=2)

    def jax_fn(jnp, x, theta):
        from jax import lax

        def conv(a, k):
            return lax.conv_general_dilated(a, k, (1,), [(2, 2)], dimension_numbers=("NCH", "OIH", "NCH"))

        return conv(jnp.tanh(conv(x, kernels[0].cpu().numpy() * theta[0])), kernels[1].cpu().numpy())

    return Case("conv1d", fn, torch.randn(samples, 4, 64, generator=g, dtype=dtype), 0.5, 1.5, jax_fn=jax_fn)


def _seed_linear(samples: int, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Case:
    return Case(
        "seed_linear",
        lambda x, theta: theta[0] * x,
        torch.arange(samples, dtype=dtype),
        -5.0,
        5.0,
        jax_fn=lambda jnp, x, theta: theta[0] * x,
    )


CASES = {
    "mlp": _mlp,
    "oscillator": _oscillator,
    "rk4_function": _rk4_function,
    "conv1d": _conv,
    "seed_linear": _seed_linear,
}


def _timed(run: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, int | None, object]:
    """Median seconds over ``repeats`` after one warm-up, peak extra bytes, last result.

    Each run is inside its own :func:`~pipeline.derivatives.heap.kept_heap`, as sensweep's sweeps are: the
    floor and the peers get the same memory allocator settings as sensweep's methods.
    """
    run = _in_kept_heap(run)
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


def chunk_hints(case: Case, x: torch.Tensor, points: torch.Tensor) -> ChunkHints:
    """The hints :func:`pipeline.sensitivity` gives the methods: the structure check's memory
    estimate and whether the model is op-bound (its cost per torch call at one point)."""
    with torch.no_grad():
        _, cost = call_cost(lambda: case.fn(x, points[0]))
    with cheap_zero_tangents():  # as sensitivity() runs the check
        _, bytes_per_point = check_structure(case.fn, x, points)
    op_bound = points.device.type == "cpu" and is_op_bound(cost)
    ratio = cost.per_call / trivial_call_seconds()
    print(f"{case.name}: {cost.calls} torch calls at one point, {ratio:.1f} trivial calls each, op-bound: {op_bound}")
    return ChunkHints(bytes_per_point, op_bound=op_bound)


def _in_kept_heap(run: Callable[[], object]) -> Callable[[], object]:
    """``run`` inside its own :func:`~pipeline.derivatives.heap.kept_heap` at each call."""

    def kept() -> object:
        with kept_heap():
            return run()

    return kept


def _loop_extrapolated(case: Case, points: torch.Tensor, elements: int = 20) -> tuple[float, torch.Tensor]:
    """Seconds per point of the seed's per-element loop, from ``elements`` timed elements."""
    theta = points[0].clone().requires_grad_(True)
    y = case.fn(case.x.to(points.device), theta).reshape(-1)
    count = min(elements, y.numel())
    start = time.perf_counter()
    grads = [torch.autograd.grad(y[i], theta, retain_graph=True)[0] for i in range(count)]
    per_element = (time.perf_counter() - start) / count
    return per_element * y.numel() * len(points), torch.stack(grads)[:, 0]


def _jax_jvp(case: Case, points: torch.Tensor) -> tuple[Callable, object] | None:
    """``jit(vmap(jvp))`` of the case in JAX and its points, or ``None`` without JAX."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", case.x.dtype == torch.float64)
    x = jnp.asarray(case.x.cpu().numpy())

    def one(theta):
        return jax.jvp(lambda t: case.jax_fn(jnp, x, t), (theta,), (jnp.ones_like(theta),))

    batched = jax.jit(jax.vmap(one))
    return (lambda pts: jax.block_until_ready(batched(pts))), jnp.asarray(points.cpu().numpy())


PER_POINT = ("forward_per_point", "reverse_per_point", "finite_difference_per_point")
"""The fallbacks of ``method=auto`` (models vmap cannot batch), timed on models where the batched path works."""

PER_POINT_MAX_N = 64
"""Per-point methods cost N separate passes: timed up to this many values."""


def bench_case(
    case: Case,
    n: int,
    device: torch.device,
    repeats: int,
    notes: list[str] | None = None,
) -> list[dict]:
    """Every method on one model and N values; rows with time, ratio to primal, memory, check; what
    was not timed, and why, is added to ``notes`` once."""
    x = case.x.to(device)
    points = torch.linspace(case.low, case.high, n, dtype=x.dtype, device=device)[:, None]
    primal = vmap(lambda t: case.fn(x, t))
    floor, floor_peak, _ = _timed(lambda: primal(points), device, repeats)
    rows = [
        {
            "model": case.name,
            "n": n,
            "method": "primal (floor)",
            "seconds": floor,
            "ratio": 1.0,
            "peak_mb": None if floor_peak is None else floor_peak / 2**20,
            "check": "-",
            "compile_s": None,
        }
    ]
    outputs = primal(points[:1]).numel()
    tol = {torch.float32: 1e-3, torch.float64: 1e-7}[x.dtype]
    reference = None

    def add(
        method: str,
        seconds: float,
        peak: int | None,
        dy: torch.Tensor | None,
        compile_s: float | None = None,
    ) -> None:
        ok = (
            "-"
            if dy is None or reference is None
            else (
                "ok"
                if torch.allclose(dy.cpu(), reference, rtol=tol, atol=tol * float(reference.abs().max()))
                else "FAIL"
            )
        )
        rows.append(
            {
                "model": case.name,
                "n": n,
                "method": method,
                "seconds": seconds,
                "ratio": seconds / floor,
                "peak_mb": None if peak is None else peak / 2**20,
                "check": ok,
                "compile_s": compile_s,
            }
        )

    hints = chunk_hints(case, x, points)  # untimed
    for method in ("forward", "forward_dual", "reverse", "finite_difference", *PER_POINT):
        if method == "reverse" and outputs > REVERSE_MAX_OUTPUTS:
            continue
        if method in PER_POINT and n > PER_POINT_MAX_N:
            continue
        fn = METHODS[method]
        # Chunk sizes as users get them: fitted to the memory budget.
        with cheap_zero_tangents(numbers=method in FORWARD_MODE):
            seconds, peak, result = _timed(lambda fn=fn: fn(case.fn, x, points, hints=hints), device, repeats)
        if reference is None:
            reference = result.dy[..., 0].cpu()
        add(method, seconds, peak, result.dy[..., 0])

    def compiled() -> object:
        return compiled_forward(case.fn, x, points, stepper=case.stepper, hints=hints)

    if case.compile_note:
        note = f"{case.name}: forward compile=true {case.compile_note}"
        if notes is not None and note not in notes:
            notes.append(note)
    else:
        start = time.perf_counter()
        compiled()  # compiles (cached for the timed runs)
        first = time.perf_counter() - start
        seconds, peak, result = _timed(compiled, device, repeats)
        add("forward compile=true", seconds, peak, result.dy[..., 0], compile_s=max(first - seconds, 0.0))
    peer = _jax_jvp(case, points) if case.jax_fn is not None else None
    if peer is not None:
        run, jax_points = peer
        start = time.perf_counter()
        run(jax_points)
        first = time.perf_counter() - start
        seconds, peak, (_, jax_dy) = _timed(lambda: run(jax_points), torch.device("cpu"), repeats)
        add(
            "JAX jit(vmap(jvp))", seconds, peak, torch.from_numpy(np.array(jax_dy)), compile_s=max(first - seconds, 0.0)
        )
    elif notes is not None and (note := "JAX is not installed (pip install .[bench]): no JAX rows") not in notes:
        notes.append(note)
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
    rows.append(
        {
            "model": case.name,
            "n": n,
            "method": "per-element loop (extrapolated)",
            "seconds": seconds,
            "ratio": seconds / floor,
            "peak_mb": None,
            "check": "ok" if loop_ok else "FAIL",
            "compile_s": None,
        }
    )
    return rows


CHUNKING = {
    # model: (budget MB or None, fixed sizes, repeats): the eager RK4s start at chunks of 32 (chunks
    # of 16 take 5-7 s for 512 values), three times each (timed once, they moved by up to 1.7x)
    "conv1d": (2048, (4, 8, 16, 32, 128, 256), 3),
    "mlp": (None, (4, 8, 32, 128, 512), 3),
    "oscillator": (None, (32, 128, 512), 3),
    "rk4_function": (None, (32, 128, 512), 3),
}
"""The chunking table's models, budgets and fixed chunk sizes (N = 512, 1000 samples)."""


def chunking(
    model: str,
    samples: int,
    n: int,
    budget_mb: int | None,
    sizes: tuple[int, ...],
    device: torch.device,
    repeats: int,
) -> list[dict]:
    """Forward mode: automatic chunks (under ``budget_mb``) against fixed chunk sizes.

    The automatic run chooses its chunk size from scratch each time (memory fit, timed chunks),
    as a job does; the checks that supply its hints run once, untimed, as for the fixed sizes
    (every job runs them, whatever the chunking).
    """
    case = CASES[model](samples, device=str(device))
    x = case.x.to(device)
    points = torch.linspace(case.low, case.high, n, dtype=x.dtype, device=device)[:, None]
    rows = []
    hints = chunk_hints(case, x, points)
    with cheap_zero_tangents():  # as sensitivity() runs forward mode
        for size in sizes:
            seconds, peak, _ = _timed(
                lambda size=size: METHODS["forward"](case.fn, x, points, chunk_size=size), device, repeats
            )
            rows.append({"chunk": str(size), "seconds": seconds, "peak_mb": peak / 2**20 if peak else None})

        def automatic() -> object:
            return METHODS["forward"](case.fn, x, points, max_memory_mb=budget_mb, hints=hints)

        seconds, peak, result = _timed(automatic, device, repeats)
    under = f" under {budget_mb} MB" if budget_mb else ""
    rows.append(
        {
            "chunk": f"auto{under}: {result.chunk_size}",
            "seconds": seconds,
            "peak_mb": peak / 2**20 if peak else None,
        }
    )
    best = min(r["seconds"] for r in rows[:-1])
    for r in rows:
        r.update(model=case.name, n=n, samples=samples, slowdown=r["seconds"] / best)
    return rows


def chunking_markdown(rows: list[dict]) -> str:
    """One table per model: time and slowdown (time / best fixed chunk size) of each chunking."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        lines += [
            f"Chunking: {model}, N = {mine[0]['n']}, {mine[0]['samples']} samples, forward; slowdown: time / best "
            "fixed chunk size.",
            "",
            "| chunk size | time [s] | slowdown | peak [MB] |",
            "| --- | --- | --- | --- |",
        ]
        for r in mine:
            peak = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
            lines.append(f"| {r['chunk']} | {r['seconds']:.3g} | {r['slowdown']:.2f} | {peak} |")
        lines.append("")
    return "\n".join(lines)


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"Benchmarks on {meta['machine']}, {meta['date']}, torch {meta['torch']}, JAX {meta.get('jax', '-')}, "
        f"{meta['dtype']}, "
        f"{meta['samples']} samples; median of {meta['repeats']} after a warm-up. Ratio: time / primal floor.",
        "",
        "| model | N | method | time [s] | ratio | peak [MB] | compile [s] | check |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        peak = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
        compile_s = "-" if r.get("compile_s") is None else f"{r['compile_s']:.1f}"
        lines.append(
            f"| {r['model']} | {r['n']} | {r['method']} | {r['seconds']:.4g} | {r['ratio']:.3g} | {peak} | "
            f"{compile_s} | {r['check']} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))  # one colour per method in every panel
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4.6), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for i, method in enumerate(methods):
            pts = sorted((r["n"], r["seconds"]) for r in rows if r["model"] == model and r["method"] == method)
            if pts:
                ax.plot(
                    *zip(*pts, strict=True),
                    marker="o",
                    color=f"C{i % 10}",
                    lw=2.5 if method == "forward" else 1,
                    label=method,
                )
        ax.set(xscale="log", yscale="log", xlabel="N (parameter values)", ylabel="time [s]", title=model)
        ax.grid(alpha=0.3)
    handles = [
        plt.Line2D([], [], color=f"C{i % 10}", marker="o", lw=2.5 if m == "forward" else 1)
        for i, m in enumerate(methods)
    ]
    fig.legend(handles, methods, loc="lower center", ncol=min(len(methods), 5), fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.methods", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: about a minute")
    parser.add_argument("--out", default="outputs/bench", help="folder for bench.json, bench.md, bench.png")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--models", default="", help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--sizes", default="", help="comma-separated numbers of C values (default 8,64,512)")
    parser.add_argument("--samples", type=int, default=0, help="samples B (default 1000; --quick: 200)")
    parser.add_argument("--no-chunking", dest="chunking", action="store_false", help="skip the chunking table")
    args = parser.parse_args(argv)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    dtype = getattr(torch, args.dtype)
    samples, sizes, repeats = (200, (8, 64), 3) if args.quick else (1000, (8, 64, 512), 3)
    if args.sizes:
        sizes = tuple(int(n) for n in args.sizes.split(","))
    samples = args.samples or samples
    try:
        import jax

        jax_version = jax.__version__
    except ImportError:
        jax_version = "not installed"
    meta = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {device}",
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "jax": jax_version,
        "dtype": args.dtype,
        "samples": samples,
        "repeats": repeats,
    }
    rows: list[dict] = []
    notes: list[str] = []
    models = args.models.split(",") if args.models else list(CASES)
    for name in models:
        case = CASES[name](samples, dtype=dtype, device=str(device))
        for n in sizes:
            with ieee_float32(device):  # as sensitivity() runs: no TF32 on a GPU
                rows += bench_case(case, n, device, repeats, notes)
            print(markdown([r for r in rows if r["model"] == name and r["n"] == n], meta), flush=True)
    chunk_rows = []
    if args.chunking:
        chunk_rows = (
            chunking("conv1d", 200, 64, 16, (4, 16, 64), device, repeats)
            if args.quick
            else [
                row
                for model, (budget, fixed, times) in CHUNKING.items()
                for row in chunking(model, 1000, 512, budget, fixed, device, times)
            ]
        )
        print(chunking_markdown(chunk_rows), flush=True)
    out = Path(args.out)
    report = {"meta": meta, "rows": rows, "chunking": chunk_rows, "notes": notes}
    text = markdown(rows, meta) + "".join(f"\n{note}\n" for note in notes)
    text += ("\n" + chunking_markdown(chunk_rows)) if chunk_rows else ""
    write_report(out, "bench", text, report)
    plot(rows, out / "bench.png")
    failed = [r for r in rows if r["check"] == "FAIL"]
    if failed:
        raise SystemExit(f"bench: {len(failed)} methods disagree with forward: {failed}")


if __name__ == "__main__":
    main()
