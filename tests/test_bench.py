"""The benchmark harness's own correctness checks (no timing assertions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.methods import CASES, bench_case, markdown

pytestmark = pytest.mark.integration  # the bench harness: left out of `make unit`


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


def test_chunking_table_has_every_fixed_size_and_the_automatic_choice():
    from benchmarks.methods import chunking, chunking_markdown

    rows = chunking("mlp", 20, 16, None, (4, 16), torch.device("cpu"), repeats=1)
    assert [r["chunk"] for r in rows][:2] == ["4", "16"] and rows[-1]["chunk"].startswith("auto: ")
    assert min(r["slowdown"] for r in rows[:-1]) == 1.0
    assert chunking_markdown(rows).count("\n| ") == len(rows) + 2  # the header and its rule too


def test_directions_rows_name_the_method_auto_used():
    """One output and two parameters: auto takes reverse mode; both methods' ratios are measured."""
    from benchmarks.directions import _row

    row = _row(2, 1, 16, torch.randn(1, 16, dtype=torch.float64))
    assert row["auto"] == "reverse" and row["forward"] > 0 and row["reverse"] > 0


@pytest.mark.slow
def test_workflow_bench_reports_every_run_and_job(tmp_path):
    """The workflow-overhead harness on a small study: every figure present, the jobs' records read."""
    import json

    from benchmarks import workflow as bench_workflow

    bench_workflow.main(["--study", "seed_linear", "--cores", "2", "--out", str(tmp_path)])
    (report,) = json.loads((tmp_path / "workflow.json").read_text())["studies"]
    assert report["study"] == "seed_linear" and report["overrides"] == []
    assert report["floor_s"] > 0 and report["snakemake_merge_s"] > 0
    assert report["ratio_merge"] == report["snakemake_merge_s"] / report["floor_s"]
    jobs = {j["job"] for j in report["jobs_merge"]}
    assert {"prepare", "compute-0", "compute-1", "merge"} <= jobs  # seed_linear has 2 parts
    assert {j["job"] for j in report["jobs_parts"]} == {"prepare", "compute-0", "compute-1"}  # no merge job
    assert "snakemake to the parts (no-merge mode)" in (tmp_path / "workflow.md").read_text()


def test_plain_function_rk4_case_matches_the_time_stepper_and_notes_its_compile():
    """The plain-function oscillator gives the TimeStepper's derivatives; compile=true is left out, with why."""
    from pipeline.derivatives.methods import forward

    plain, stepper = CASES["rk4_function"](3), CASES["oscillator"](3)
    points = torch.linspace(0.1, 1.9, 3)[:, None]
    a, b = forward(plain.fn, plain.x, points), forward(stepper.fn, stepper.x, points)
    assert torch.allclose(a.dy, b.dy, rtol=1e-5, atol=1e-6) and torch.allclose(a.y, b.y, rtol=1e-5, atol=1e-6)
    notes: list[str] = []
    rows = bench_case(plain, 2, torch.device("cpu"), repeats=1, notes=notes)
    assert "forward compile=true" not in [r["method"] for r in rows]
    assert any("rk4_function: forward compile=true not timed" in note for note in notes)
    assert all(r["check"] in ("ok", "-") for r in rows), rows


def test_design_bench_indices_agree_with_salib_and_the_reference():
    """The Sobol' rows of the design bench measure like with like: sensweep's and SALib's indices of
    the borehole function both approach scipy's estimate from many more base points."""
    from benchmarks.designs import _indices_reference, _indices_salib, _indices_sensweep

    reference = _indices_reference(2**12)
    ours, _ = _indices_sensweep(512, seed=1)
    theirs, _ = _indices_salib(512, seed=1)
    assert np.abs(ours - reference).max() < 0.08 and np.abs(theirs - reference).max() < 0.08


@pytest.mark.slow
def test_streaming_bench_reports_time_and_memory_against_points(tmp_path, monkeypatch):
    """The large-design harness on small designs: a row per design and size, each stage's time and
    peak RSS read from its own process, the figures in the table."""
    import json

    from benchmarks import streaming

    monkeypatch.setattr(streaming, "QUICK_SIZES", {"g100": (256, 512), "wave": (128,)})
    streaming.main(["--quick", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "streaming.json").read_text())
    assert [(r["design"], r["points"]) for r in report["rows"]] == [("g100", 256), ("g100", 512), ("wave", 128)]
    for row in report["rows"]:
        for stage in ("compute", "summarise"):
            assert row[stage]["s"] > 0 and row[stage]["rss_mb"] > 50  # a Python process with torch or xarray
    text = (tmp_path / "streaming.md").read_text()
    assert "| G-function, 100 parameters, 1 output | 512 |" in text and "summarise peak RSS [MB]" in text
