"""The benchmark harness's own correctness checks (no timing assertions)."""

from __future__ import annotations

import torch

from pipeline.bench import CASES, bench_case, markdown


def test_bench_rows_check_every_method_against_forward():
    case = CASES["seed_linear"](10)
    rows = bench_case(case, 4, torch.device("cpu"), repeats=1)
    methods = [r["method"] for r in rows]
    assert methods[0] == "primal (floor)" and rows[0]["ratio"] == 1.0
    for expected in ("forward", "forward_dual", "reverse", "finite_difference", "torch.func jacfwd+vmap",
                     "autograd.grad is_grads_batched", "per-element loop (extrapolated)"):
        assert expected in methods
    assert all(r["check"] in ("ok", "-") for r in rows), rows
    assert all(r["seconds"] > 0 for r in rows)
    table = markdown(rows, {"machine": "m", "date": "d", "torch": "t", "dtype": "float32", "samples": 10,
                            "repeats": 1})
    assert table.count("\n| seed_linear | 4 |") == len(rows)
