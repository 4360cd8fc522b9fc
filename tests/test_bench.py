"""The benchmark harness's own correctness checks (no timing assertions)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.methods import CASES, bench_case, markdown


def test_bench_rows_check_every_method_against_forward():
    case = CASES["seed_linear"](10)
    rows = bench_case(case, 4, torch.device("cpu"), repeats=1)
    methods = [r["method"] for r in rows]
    assert methods[0] == "primal (floor)" and rows[0]["ratio"] == 1.0
    for expected in (
        "forward",
        "forward_dual",
        "reverse",
        "finite_difference",
        "torch.func jacfwd+vmap",
        "autograd.grad is_grads_batched",
        "per-element loop (extrapolated)",
    ):
        assert expected in methods
    assert all(r["check"] in ("ok", "-") for r in rows), rows
    assert all(r["seconds"] > 0 for r in rows)
    table = markdown(rows, {"machine": "m", "date": "d", "torch": "t", "dtype": "float32", "samples": 10, "repeats": 1})
    assert table.count("\n| seed_linear | 4 |") == len(rows)


@pytest.mark.slow
def test_workflow_bench_reports_every_run_and_job(tmp_path):
    """The workflow-overhead harness on a small study: every figure present, the jobs' records read."""
    import json

    from benchmarks import workflow as bench_workflow

    bench_workflow.main(["--study", "seed_linear", "--cores", "2", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "workflow.json").read_text())
    assert report["floor_s"] > 0 and report["snakemake_merge_s"] > report["floor_s"]
    assert report["ratio_merge"] == report["snakemake_merge_s"] / report["floor_s"]
    jobs = {j["job"] for j in report["jobs_merge"]}
    assert {"compute-0", "compute-1", "merge"} <= jobs  # seed_linear has 2 parts
    assert {j["job"] for j in report["jobs_parts"]} == {"compute-0", "compute-1"}  # no merge job
    assert "snakemake to the parts (no-merge mode)" in (tmp_path / "workflow.md").read_text()
