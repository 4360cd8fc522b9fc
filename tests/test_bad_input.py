"""Bad input, case by case: exit 1, one clear message naming the key and what is valid, no output.

Run as a script to print the table of cases and the message each gives (docs/reference/bad-input.md):
``python tests/test_bad_input.py > docs/reference/bad-input.md``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.integration  # every bad input through the job's command line: left out of `make unit`

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.paths import CONF_ENV  # noqa: E402
from pipeline.stages import compute  # noqa: E402

# (what is wrong, overrides; {tmp} is a scratch folder, expected text in the message)
CASES = [
    ("unknown study", ["study=nope"], "unknown study 'nope': valid studies are composite,"),
    ("misspelt study", ["study=oscilator"], "unknown study 'oscilator'; did you mean 'oscillator'?"),
    ("empty study file", ["study=empty"], "study/empty.yaml: it is empty or not a mapping"),
    ("malformed study file", ["study=malformed"], "study/malformed.yaml: malformed YAML at line 4, column 1"),
    ("unknown model", ["model=nope"], "Could not find 'model/nope'"),
    ("unknown method", ["method=backprop"], "Could not find 'method/backprop'"),
    ("unknown config key", ["sweep.nmu=3"], "Key 'nmu' not in 'SweepConfig'"),
    ("unknown top-level key", ["devise=cpu"], "Key 'devise' not in 'JobConfig'"),
    ("unknown key added with +", ["+some_unknown_key=1"], "invalid key: 'some_unknown_key' is not a config key"),
    ("misspelt key added with +", ["+sweep.nmu=3"], "'sweep.nmu' is not a config key (did you mean sweep.num?"),
    ("wrong type", ["sweep.num=many"], "Value 'many' of type 'str' could not be converted to Integer"),
    ("invalid choice", ["dtype=float16"], "expected one of [float32, float64]"),
    ("unknown compression", ["compression=lz4"], "expected one of [zstd, zlib, none]"),
    ("reversed range", ["sweep.start=2", "sweep.stop=1"], "invalid sweep.stop=1.0: must be greater than sweep.start"),
    ("empty range", ["sweep.num=0"], "invalid sweep.num=0: must be at least 1"),
    ("log sweep over non-positive values", ["sweep=log", "sweep.start=-1"], "a log sweep needs start > 0"),
    ("empty list sweep", ["sweep=list", "sweep.values=[]"], "kind=list needs a non-empty list"),
    ("non-finite value in the sweep", ["sweep=list", "sweep.values=[1,nan]"], "every value must be finite"),
    ("repeated value in the sweep", ["sweep=list", "sweep.values=[1,1]"], "values must be distinct"),
    ("more parts than values", ["sweep.parts=1000"], "invalid sweep.parts=1000: must be between 1 and"),
    (
        "sweep too large for memory",
        ["sweep.num=1000000000"],
        "invalid sweep: 1e+09 points (1000000000 values of C) need 59.6 GiB for their coordinates alone",
    ),
    (
        "results too large for memory",
        ["sweep.num=100000", "inputs.args.samples=100000"],
        "the results would need 447.03 GiB (100000 points x 600000 outputs",
    ),
    (
        "sweep values beyond float32",
        ["sweep=list", "sweep.values=[1,1e39]"],
        "invalid values of C for dtype=float32: 1 overflow it, e.g. 1e+39",
    ),
    (
        "sweep values equal in float32",
        ["sweep=list", "sweep.values=[1.0,1.00000001]"],
        "1 pairs of distinct values become equal, e.g. 1.0 and 1.00000001",
    ),
    ("sweep too dense for float32", ["sweep.num=30000000"], "invalid values of C for dtype=float32: 1611392 pairs"),
    ("missing input file", ["study=oscillator", "inputs.args.path={tmp}/missing.npy"], "no such file"),
    ("unreadable input file", ["study=oscillator", "inputs.args.path={tmp}/garbage.npy"], "cannot read it"),
    (
        "input file of an unsupported type",
        ["study=oscillator", "inputs.args.path={tmp}/x.csv"],
        "supported file types are .npy, .nc",
    ),
    ("non-finite input data", ["study=oscillator", "inputs.args.path={tmp}/inf.npy"], "4 non-finite values"),
    ("non-numeric input data", ["study=oscillator", "inputs.args.path={tmp}/text.npy"], "need a numeric array"),
    (
        "input with 0 samples",
        ["study=oscillator", "inputs.args.path={tmp}/empty.npy"],
        "x has shape (0, 2), an empty dim",
    ),
    ("input with 0 samples from a generator", ["inputs.args.samples=0"], "invalid inputs.args samples=0"),
    (
        "empty NetCDF input",
        ["study=oscillator", "inputs.args.path={tmp}/empty.nc"],
        "cannot read it: not a NetCDF file, or a corrupt one ([Errno -51] NetCDF: Unknown file format",
    ),
    (
        "garbage NetCDF input",
        ["study=oscillator", "inputs.args.path={tmp}/garbage.nc"],
        "garbage.nc': cannot read it: not a NetCDF file, or a corrupt one (",
    ),
    (
        "complex input data",
        ["study=oscillator", "inputs.args.path={tmp}/complex.npy"],
        "complex values (complex128) are not supported",
    ),
    (
        "input beyond float32",
        ["study=oscillator", "dtype=float32", "inputs.args.path={tmp}/huge.npy"],
        "invalid x for dtype=float32: 1 values overflow it, e.g. 1e+300 at index (1, 0)",
    ),
    ("input of the wrong shape for the model", ["inputs.args.shape=[3]"], "the model fails on x of shape (64, 3)"),
    (
        "model that calls .item()",
        ["study=seed_linear", "model=custom", "model._target_=tests.bad_models.calls_item"],
        "the model calls .item() or uses a tensor in Python control flow (if/while on a value) at ",
    ),
    (
        "model with an if on a tensor's value",
        ["study=seed_linear", "model=custom", "model._target_=tests.bad_models.branches_on_value"],
        "bad_models.py:13 (branches_on_value)",
    ),
    (
        "model that changes its input in place",
        ["study=seed_linear", "model=custom", "model._target_=tests.bad_models.mutates_input"],
        "the model changes its input x in place",
    ),
    (
        "bind path that is not a parameter",
        ['model.bind.C="branch_b.0.bais[1]"'],
        "did you mean 'branch_b.0.bias'? Its parameters are: encoder.0.weight (8, 4)",
    ),
    ("bind index out of range", ['model.bind.C="branch_b.0.bias[7]"'], "give one in-range index per dim"),
    (
        "bind of one element to a parameter that is not swept",
        ['+model.bind.k="encoder.0.bias[1]"'],
        "invalid model.bind.k='encoder.0.bias[1]': swept parameters are C; a parameter not swept needs a whole tensor",
    ),
    ("device that does not exist", ["device=tpu"], "invalid device='tpu': valid: auto, cpu, cuda, cuda:<index>"),
    (
        "model _target_ that does not import",
        ["model._target_=nowhere.model"],
        "invalid model._target_='nowhere.model': cannot import it",
    ),
    ("model argument the model does not take", ["+model.args.hiden=3"], "invalid model.args.hiden"),
    ("inputs argument the generator does not take", ["+inputs.args.size=3"], "invalid inputs.args.size"),
    ("output folder that cannot be created", ["output={tmp}/a-file/out.nc"], "cannot write"),
    ("finite-difference step with another method", ["method.step=0.1"], "only for method=finite_difference"),
    ("second derivative with reverse mode", ["method=reverse", "method.order=2"], "invalid method.order=2"),
    (
        "compile with a method other than forward",
        ["method=reverse", "method.compile=true"],
        "invalid method.compile=True: only for method=forward",
    ),
    ("zero chunk size", ["method.chunk_size=0"], "invalid method.chunk_size=0"),
    (
        "finite-difference step beyond float32",
        ["method=finite_difference", "method.step=1e39"],
        "invalid step=1e+39: too large for dtype=float32",
    ),
    ("negative design seed", ["study=oscillator_design", "sweep.seed=-1"], "invalid sweep.seed=-1"),
    ("empty output path", ["output=''"], "invalid output='': give the file to write"),
    ("inputs argument of the wrong type", ["inputs.args.samples=many"], "pipeline.inputs.random fails on them"),
    (
        "unreadable points table",
        ["study=oscillator_design", "sweep=points", "sweep.path={tmp}/broken.csv", "+sweep.parameters={{C: null}}"],
        "cannot read it as a table of points",
    ),
    (
        "points table that is not .npy",
        ["study=oscillator_design", "sweep=points", "sweep.path={tmp}/garbage.npy", "+sweep.parameters={{C: null}}"],
        "cannot read it as a table of points",
    ),
    ("study that includes itself", ["study=selfref"], "the studies include each other in a cycle (selfref -> selfref)"),
    ("study file that is not UTF-8", ["study=latin1"], "latin1.yaml: not UTF-8 text (byte 30, line 2)"),
    ("study file with a repeated key", ["study=dupkeys"], "malformed YAML at line 3, column 1 (found duplicate key"),
    ("study file with a space in its name", ["study=with space"], "invalid study name 'with space'"),
    ("study file with an alias bomb", ["study=yaml_bomb"], "its aliases expand to more than 100000 values"),
    (
        "input of the wrong width for the oscillator",
        ["study=oscillator", "inputs.args.path={tmp}/x323.npy"],
        "x of shape (32, 3) does not fit the model: its input dim 'state' has 2 entries",
    ),
    ("unknown NaN policy", ["nan_policy=ignore"], "expected one of [warn, raise]"),
    ("verify with no samples", ["verify.samples=0"], "invalid verify.samples=0: must be >= 1"),
    ("verify of no point", ["verify.max_points=0"], "invalid verify.max_points=0: must be >= 1"),
]
if not torch.cuda.is_available():
    CASES.append(("device=cuda without CUDA", ["device=cuda"], "CUDA is not available on this machine"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback without CUDA")
def test_cuda_fallback_warns_and_runs_on_cpu(tmp_path):
    code, output = run_compute(["device=cuda", "device_fallback=true"], tmp_path)
    assert code == 0 and "CUDA is not available: running on the CPU (device_fallback=true)" in output
    assert (tmp_path / "out.nc").exists()


def make_files(tmp: Path) -> None:
    """The broken input files and study files some cases point at; a copy of conf/ with the bad studies."""
    shutil.copytree(ROOT / "conf", tmp / "conf")
    (tmp / "conf" / "study" / "empty.yaml").write_text("# @package _global_\n")
    (tmp / "conf" / "study" / "malformed.yaml").write_text("# @package _global_\ntitle: a\nsweep: {num: 3\n")
    np.save(tmp / "empty.npy", np.zeros((0, 2)))
    (tmp / "empty.nc").write_bytes(b"")
    (tmp / "garbage.nc").write_bytes(bytes(range(256)) * 4)
    np.save(tmp / "complex.npy", np.ones((4, 2), dtype=complex))
    np.save(tmp / "huge.npy", np.array([[1.0, 0.0], [1e300, 0.0]]))
    (tmp / "garbage.npy").write_bytes(b"\x93NUMPY but not really")
    (tmp / "x.csv").write_text("1,2,3\n")
    np.save(tmp / "inf.npy", np.array([[1.0, 2.0, 3.0, np.inf]] * 4))
    np.save(tmp / "text.npy", np.array([["a", "b", "c", "d"]] * 4))
    (tmp / "a-file").write_text("a file, not a folder")
    study = tmp / "conf" / "study"
    (study / "selfref.yaml").write_text("# @package _global_\ndefaults:\n  - /study/selfref\ntitle: a\n")
    (study / "latin1.yaml").write_bytes("# @package _global_\ntitle: café\n".encode("latin-1"))
    (study / "dupkeys.yaml").write_text("# @package _global_\ntitle: a\ntitle: b\n")
    (study / "with space.yaml").write_text("# @package _global_\ntitle: a\n")
    names = "abcdefghij"  # each list holds nine of the one before: 9^10 values once expanded
    bomb = ["# @package _global_", "a: &a [x, x, x, x, x, x, x, x, x]"]
    bomb += [f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in itertools.pairwise(names)]
    (study / "yaml_bomb.yaml").write_text("\n".join(bomb) + "\n")
    (tmp / "broken.csv").write_text("C,K\n1,2\n3\n")
    np.save(tmp / "x323.npy", np.ones((32, 3)))


def run_compute(overrides: list[str], tmp: Path) -> tuple[int, str]:
    """``python -m pipeline.stages.compute study=composite <overrides>``, in process; exit code and output."""
    study = [] if any(o.startswith("study=") for o in overrides) else ["study=composite"]
    args = [*study, "sweep.num=4", f"output={tmp}/out.nc", *(o.format(tmp=tmp) for o in overrides)]
    out = io.StringIO()
    argv = sys.argv
    sys.argv = ["pipeline.stages.compute", *args]
    conf = tmp / "conf"  # made by make_files; else the repository's
    os.environ[CONF_ENV] = str(conf if conf.exists() else ROOT / "conf")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            compute.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = argv
        del os.environ[CONF_ENV]
    return code, out.getvalue()


@pytest.mark.parametrize("what,overrides,message", CASES, ids=[case[0] for case in CASES])
def test_bad_input_fails_clearly_without_output(tmp_path, what, overrides, message):
    make_files(tmp_path)
    before = set(tmp_path.rglob("*"))
    code, output = run_compute(overrides, tmp_path)
    assert code == 1, output
    assert message in output, output
    assert "Traceback" not in output
    assert set(tmp_path.rglob("*")) == before  # no output, no partial file


def test_unreached_parameter_warns_but_succeeds(tmp_path):
    code, _ = run_compute(["study=composite_detach"], tmp_path)
    assert code == 0
    assert (tmp_path / "out.nc").exists()


def test_the_docs_list_every_case():
    table = (ROOT / "docs" / "reference" / "bad-input.md").read_text()
    for what, _, _ in CASES:
        assert f"| {what} |" in table, what


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        make_files(tmp)
        print("# Bad input: what sensweep says\n")
        print("Each case runs `python -m pipeline.stages.compute study=composite sweep.num=4 <overrides>` (cases that")
        print("name a study run that one); every one exits 1, prints one message and writes no file. Generated")
        print("by `python tests/test_bad_input.py`; `tests/test_bad_input.py` checks each message. A parameter")
        print("that does not reach the output is a warning, not an error")
        print("([the checks](methods.md#the-checks-on-every-result)).")
        print("An unknown study or workflow key in the Snakemake config fails `snakemake -n` the same way")
        print("(`tests/test_workflow.py`). Faults (a killed job, a full disk, corrupt files, mixed configs):")
        print("[faults](../how-to/faults.md).\n")
        print("| case | overrides | message |")
        print("| --- | --- | --- |")
        for what, overrides, _ in CASES:
            code, output = run_compute(overrides, tmp)
            text = " ".join(output.split("Config search path")[0].split("Set the environment")[0].split())
            text = text.replace(str(tmp), "/tmp").replace(str(ROOT) + "/", "")
            shown = " ".join(f"`{o.format(tmp='/tmp')}`" for o in overrides)
            print(f"| {what} | {shown} | {text.strip().replace('|', '/')} (exit {code}) |")
