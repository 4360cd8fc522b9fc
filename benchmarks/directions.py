"""Forward against reverse mode as the number of swept parameters P and of outputs M per point grow.

``python -m benchmarks.directions [--n 1024] [--out outputs/bench]``: an MLP (16-64-M) whose P
parameters each scale a block of its first layer, at N points, one sample; time of ``forward``
(P tangents, batched) and ``reverse`` (M cotangents, batched) as ratios to the batched primal, and
which one ``method=auto`` picks. Forward mode costs about one pass per parameter, reverse mode one
per output element: reverse wins once P exceeds M, and ``auto`` takes it there. Also: a 2-parameter
grid costs one evaluation per point, like a 1-parameter sweep of as many points. Writes
``directions.md`` and ``directions.json``.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks import write_report
from benchmarks.methods import _timed
from pipeline import design, sensitivity
from pipeline.derivatives.chunking import ChunkHints
from pipeline.derivatives.methods import FORWARD_MODE, METHODS
from pipeline.derivatives.zerotensor import cheap_zero_tangents

PARAMETERS = (1, 2, 4, 8, 16, 32)
OUTPUTS = (1, 8, 64)
REPEATS = 5


def _model(p: int, m: int, width: int = 64):
    """``fn(x, theta)``: theta's P entries scale P blocks of the first layer's columns."""
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(16, width, generator=g, dtype=torch.float64) / 4
    w1 = torch.randn(width, m, generator=g, dtype=torch.float64) / 8
    block = torch.arange(width) * p // width  # which parameter scales each column

    def fn(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ (w0 * theta[block])) @ w1

    return fn


def _median_seconds(run) -> float:
    """Median of :data:`REPEATS` runs after a warm-up (the methods bench's timer, on the CPU)."""
    return _timed(run, torch.device("cpu"), REPEATS)[0]


def _row(p: int, m: int, n: int, x: torch.Tensor) -> dict:
    fn = _model(p, m)
    points = 0.5 + torch.rand(n, p, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    primal = torch.func.vmap(lambda t: fn(x, t))
    floor = _median_seconds(lambda: primal(points))
    times = {}
    for method in ("forward", "reverse"):
        with cheap_zero_tangents(numbers=method in FORWARD_MODE):  # as sensitivity() runs the methods
            times[method] = _median_seconds(lambda method=method: METHODS[method](fn, x, points, hints=ChunkHints(1)))
    names = [f"p{i}" for i in range(p)]

    def model(x: torch.Tensor, **theta: torch.Tensor) -> torch.Tensor:
        return fn(x, torch.stack([theta[name] for name in names]))

    auto = sensitivity(model, x, design.points(points.numpy(), names), hidden_policy="off")
    return {
        "outputs": m,
        "parameters": p,
        "n": n,
        "primal_s": floor,
        "forward": times["forward"] / floor,
        "reverse": times["reverse"] / floor,
        "auto": auto.attrs["method"],
    }


def rows(n: int) -> list[dict]:
    x = torch.randn(1, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return [_row(p, m, n, x) for m in OUTPUTS for p in PARAMETERS]


def grid_rows(n: int) -> list[dict]:
    """A grid of 2 parameters against a sweep of 1 over as many points: one evaluation per point."""
    x = torch.randn(1000, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fn = _model(2, 10, width=256)

    def model(x, C, K):
        return fn(x, torch.stack([C, K]))

    def one(x, C):
        return fn(x, torch.stack([C, C]))

    side = int(n**0.5)
    values = torch.linspace(0.5, 1.5, side, dtype=torch.float64).numpy()
    sweep = torch.linspace(0.5, 1.5, side * side, dtype=torch.float64).numpy()
    kw = {"method": "forward", "hidden_policy": "off"}
    grid = _median_seconds(lambda: sensitivity(model, x, {"C": values, "K": values}, **kw))
    single = _median_seconds(lambda: sensitivity(one, x, {"C": sweep}, **kw))
    return [{"points": side * side, "grid_2_params_s": grid, "sweep_1_param_s": single, "ratio": grid / single}]


def markdown(table: list[dict], grid: list[dict]) -> str:
    lines = [
        f"Forward and reverse mode against P parameters and M outputs per point: an MLP 16-64-M, one sample, "
        f"N = {table[0]['n']} points, float64, torch {torch.__version__}, median of {REPEATS} after a warm-up; "
        "ratio: time / batched primal; `auto`: what method=auto used.",
        "",
        "| M outputs | P parameters | primal [s] | forward | reverse | auto |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r['outputs']} | {r['parameters']} | {r['primal_s']:.2g} | {r['forward']:.1f}x | "
            f"{r['reverse']:.1f}x | {r['auto']} |"
            for r in table
        ),
        "",
        *(
            f"A grid of 2 parameters ({g['points']} points, 1000 samples, MLP 16-256-10): "
            f"{g['grid_2_params_s']:.3f} s; a 1-parameter sweep of as many points: {g['sweep_1_param_s']:.3f} s "
            f"({g['ratio']:.2f}x)."
            for g in grid
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.directions", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024, help="points")
    parser.add_argument("--out", default="outputs/bench")
    args = parser.parse_args(argv)
    table, grid = rows(args.n), grid_rows(args.n)
    text = markdown(table, grid)
    print(text)
    write_report(args.out, "directions", text, {"table": table, "grid": grid})


if __name__ == "__main__":
    main()
