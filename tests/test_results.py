"""NetCDF round trip, atomic writes, merging parts, summary statistics, plots."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from helpers import ROOT, run
from pipeline import sensitivity, summarise
from pipeline.checks import COMPRESSIONS
from pipeline.config.studies import compose_job
from pipeline.errors import UnreadableInputError
from pipeline.models import Composite, seed_linear
from pipeline.paths import PLOTS
from pipeline.stages.compute import compute
from pipeline.stages.merge import merge_parts
from pipeline.stages.plot import most_sensitive_element, plot_study
from pipeline.stages.summarise import summarise_file
from pipeline.storage.parts import open_parts
from pipeline.storage.provenance import fingerprint
from pipeline.storage.write import write_atomic, write_netcdf

pytestmark = pytest.mark.integration  # merges of part files: left out of `make unit`


@pytest.fixture
def composite_ds():
    torch.manual_seed(0)
    return sensitivity(
        Composite(),
        torch.randn(12, 4),
        {"C": np.linspace(-1, 1, 9)},
        bind={"C": "branch_b.0.bias[1]"},
        units={"y": "1", "C": "1"},
        title="composite",
    )


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_netcdf_round_trip_is_identical(tmp_path, composite_ds, compression):
    path = write_netcdf(composite_ds, tmp_path / "s.nc", compression)
    with xr.open_dataset(path) as back:
        xr.testing.assert_identical(back.load(), composite_ds)
        enc = back.dy_dC.encoding
        assert enc["chunksizes"] == (9, 12, 6) and enc["fletcher32"]
        assert [k for k in ("zstd", "zlib") if enc[k]] == ([compression] if compression != "none" else [])


def test_compression_is_the_configs_and_takes_incompressible_data(tmp_path):
    """Random bytes (which the blosc filter refuses to write) round-trip; the config's choice is used."""
    noise = np.random.default_rng(0).integers(0, 2**32, (300, 1000), dtype=np.uint32).view(np.float32)
    ds = xr.Dataset({"y": (("C", "sample"), noise)}, attrs={"config": "compression: zlib\n"})
    with xr.open_dataset(write_netcdf(ds, tmp_path / "z.nc")) as back:
        assert back.y.encoding["zlib"] and np.array_equal(back.y.values.view(np.uint32), noise.view(np.uint32))
    ds.attrs["config"] = "seed: 0\n"  # no choice recorded: the default
    with xr.open_dataset(write_netcdf(ds, tmp_path / "d.nc")) as back:
        assert back.y.encoding[COMPRESSIONS[0]] and np.array_equal(back.y.values.view(np.uint32), noise.view(np.uint32))


def test_compression_leaves_the_fingerprint():
    """Files of one sweep written with different compressions merge: how a file is stored is not what it holds."""
    x = np.arange(6.0)
    assert fingerprint(compose_job("seed_linear", ["compression=zlib"]), x) == fingerprint(
        compose_job("seed_linear"), x
    )
    assert fingerprint(compose_job("seed_linear", ["dtype=float64"]), x) != fingerprint(compose_job("seed_linear"), x)


def test_missing_filter_plugin_falls_back_to_zlib_and_keeps_unreadable_files(tmp_path):
    """Without the zstd plugin a write uses zlib (warning), and a zstd file is named, not moved aside as corrupt."""
    zstd_file = write_netcdf(xr.Dataset({"y": ("C", np.arange(4.0))}), tmp_path / "zstd.nc", "zstd")
    script = f"""
import warnings, numpy as np, xarray as xr
from pipeline.storage.read import reading
from pipeline.storage.write import write_netcdf
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    path = write_netcdf(xr.Dataset({{"y": ("C", np.arange(4.0))}}), {str(tmp_path / "new.nc")!r}, "zstd")
print("WARN", caught[0].message)
with xr.open_dataset(path) as ds:
    print("ZLIB", ds.y.encoding["zlib"], ds.y.values.tolist())
with reading([{str(zstd_file)!r}]), xr.open_dataset({str(zstd_file)!r}) as ds:
    ds.y.load()
"""
    env = {**os.environ, "HDF5_PLUGIN_PATH": str(tmp_path / "no-plugins")}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert "WARN" in done.stdout and "writing it with zlib instead" in done.stdout
    assert "ZLIB True [0.0, 1.0, 2.0, 3.0]" in done.stdout
    assert done.returncode != 0 and "cannot find" in done.stderr and "the file is kept" in done.stderr
    assert zstd_file.is_file() and not zstd_file.with_name("zstd.nc.corrupt").exists()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.nc"
    target.write_text("previous result")

    def crash(tmp):
        tmp.write_text("half written")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, crash)
    assert target.read_text() == "previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.nc"]


def test_merged_parts_equal_one_job(tmp_path):
    x = torch.arange(5.0, dtype=torch.float64)
    values = np.linspace(-2, 2, 10)
    whole = sensitivity(seed_linear, x, {"C": values})
    paths = [
        write_netcdf(sensitivity(seed_linear, x, {"C": part}, attrs={"part": i, "parts": 3}), tmp_path / f"{i}.nc")
        for i, part in enumerate(np.array_split(values, 3))
    ]
    merge_parts(paths[::-1], tmp_path / "merged.nc")
    with xr.open_dataset(tmp_path / "merged.nc") as merged:
        xr.testing.assert_equal(merged[["y", "dy_dC", "x"]], whole[["y", "dy_dC", "x"]])
        assert merged.attrs["parts"] == 3 and "part" not in merged.attrs
    with open_parts(paths) as lazy:  # what users do with the part files
        assert lazy.sizes["C"] == 10


def test_summary_of_linear_model(tmp_path):
    """y = C x: mean dy/dC = mean x, DGSM = x^2, elasticity = 1 wherever y != 0."""
    x = torch.arange(6.0, dtype=torch.float64)
    ds = sensitivity(seed_linear, x, {"C": [-2.0, -1.0, 0.5, 3.0]})
    summary = summarise(ds)
    np.testing.assert_allclose(summary.dy_dC_mean, 2.5)
    np.testing.assert_allclose(summary.dy_dC_std, x.numpy().std())
    np.testing.assert_allclose(summary.dgsm_C, x.numpy() ** 2)
    np.testing.assert_allclose(summary.dgsm_C_mean, (x.numpy() ** 2).mean())
    np.testing.assert_allclose(summary.mu_star_C, 2.5)
    np.testing.assert_allclose(summary.elasticity_C_mean, 1.0)
    assert (summary.elasticity_defined == 5).all()  # x = 0 gives y = 0
    write_netcdf(ds, tmp_path / "s.nc")
    summarise_file(tmp_path / "s.nc", tmp_path / "summary.nc")
    with xr.open_dataset(tmp_path / "summary.nc") as back:
        xr.testing.assert_allclose(back.load(), summary.compute())


def test_plots_are_written(tmp_path, composite_ds):
    summary = summarise(composite_ds)
    assert most_sensitive_element(summary, "C") == {"output": "b1"}
    paths = plot_study(composite_ds, summary, tmp_path / "plots")
    assert sorted(p.name for p in paths) == sorted(PLOTS)
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_the_derivative_along_the_output_dim_is_plotted_for_time_series_and_scalars(tmp_path):
    """dy/dC along t: a heatmap over (C, t) of the sample mean, and lines at a few C values whose
    data are the mean itself; a scalar output gets its mean and spread against C instead."""
    from matplotlib.image import imread

    t = torch.linspace(0, 1, 20, dtype=torch.float64)

    def decay(x, C):
        return x[:, None] * torch.exp(-C * t)

    ds = sensitivity(decay, torch.ones(3, dtype=torch.float64), {"C": torch.linspace(0.1, 2, 9)}, output_dims=["t"])
    ds = ds.assign_coords(t=t.numpy())
    summary = summarise(ds)
    paths = {p.name: p for p in plot_study(ds, summary, tmp_path / "series")}
    image = imread(paths["derivative_along_output.png"])
    assert image.shape[1] > 1.5 * image.shape[0]  # two panels side by side
    scalar = sensitivity(lambda x, C: C * x, torch.arange(3.0), {"C": [1.0, 2.0, 3.0]})
    paths = {p.name: p for p in plot_study(scalar, summarise(scalar), tmp_path / "scalar")}
    assert paths["derivative_along_output.png"].stat().st_size > 10_000


def test_merge_ors_connectivity_over_parts(tmp_path):
    """C reaches y only where C > 0: the merged flag says connected if any part was."""

    def gated(x, C):
        return torch.where(C > 0, C * x, x)

    x = torch.arange(3.0)
    negative = sensitivity(gated, x, {"C": [-2.0, -1.0]})
    positive = sensitivity(gated, x, {"C": [1.0, 2.0]})
    assert (negative.dy_dC_connected == 0).all() and (positive.dy_dC_connected == 1).all()
    negative.attrs.update(part=0, parts=2)
    positive.attrs.update(part=1, parts=2)
    paths = [write_netcdf(negative, tmp_path / "0.nc"), write_netcdf(positive, tmp_path / "1.nc")]
    merge_parts(paths, tmp_path / "merged.nc")
    with xr.open_dataset(tmp_path / "merged.nc") as merged:
        assert (merged.dy_dC_connected == 1).all() and merged.attrs["structurally_independent_outputs"] == 0
        assert merged.dy_dC_connected.attrs["flag_meanings"] == "structurally_independent connected"


def _file_contents(path: Path) -> dict:
    """A NetCDF file as netCDF4 sees it: per variable its dims, type, chunks, filters, attrs and
    values; the global attrs but the history (a time stamp)."""
    import netCDF4

    with netCDF4.Dataset(path) as nc:
        found = {k: str(nc.getncattr(k)) for k in nc.ncattrs() if k != "history"}
        for name, var in nc.variables.items():
            var.set_auto_maskandscale(False)
            attrs = {k: str(var.getncattr(k)) for k in var.ncattrs()}
            found[name] = (var.dimensions, var.dtype, var.chunking(), var.filters(), attrs, var[:].tobytes())
    return found


def _decoding_merge(paths: list[Path], output: Path) -> Path:
    """What the merge wrote before it copied chunks: every part decoded, the file encoded anew."""
    from pipeline.storage.parts import checked_parts, combined_parts
    from pipeline.storage.write import leading_chunks

    infos = checked_parts(paths)
    with open_parts(paths) as ds:
        merged = combined_parts(ds, infos, "merged")
        return write_netcdf(merged.chunk(leading_chunks(merged)), output)


def test_a_merge_copies_aligned_chunks_as_stored_and_writes_the_same_file(tmp_path, monkeypatch, capsys):
    """Parts of 64 points of a Sobol' design, in chunks of 16: every chunk of the 7 variables along
    point is copied as stored, and the file is the one the decoding merge writes, in every value,
    chunk and attr."""
    monkeypatch.setattr("pipeline.storage.write.CHUNK_ELEMENTS", 16)
    paths = []
    for part in range(4):
        output = tmp_path / f"{part}.nc"
        args = ["sweep.kind=sobol", "sweep.n=256", "sweep.part_size=64", f"part={part}", f"output='{output}'"]
        compute(compose_job("ishigami", args), "ishigami")
        paths.append(output)
    merge_parts(paths, tmp_path / "merged.nc")
    assert "7 of 13 variables copied as stored (28 of 28 part-variables)" in capsys.readouterr().err
    assert _file_contents(tmp_path / "merged.nc") == _file_contents(_decoding_merge(paths, tmp_path / "decoded.nc"))
    with xr.open_dataset(tmp_path / "merged.nc") as back:
        assert back.dy_dx1.encoding["chunksizes"] == (16, 1) and back.sizes["point"] == 256


def test_a_merge_keeps_the_parts_chunks_and_decodes_a_last_part_laid_out_otherwise(tmp_path, monkeypatch, capsys):
    """A grid of 168 values of C in parts of 64, 64 and 40, at most 20 rows per chunk: the parts of
    64 are chunked in 16 rows (a divisor of 64), the last in 20, the whole sweep would be in 14.
    The merged file keeps the parts' 16 and copies their chunks; the last part is decoded into it.
    Values and attrs are the decoding merge's."""
    monkeypatch.setattr("pipeline.storage.write.CHUNK_ELEMENTS", 1024)
    x = torch.linspace(1, 2, 50, dtype=torch.float64)
    values = np.linspace(-1, 1, 168)
    paths = [
        write_netcdf(sensitivity(seed_linear, x, {"C": c}, attrs={"part": i, "parts": 3}), tmp_path / f"{i}.nc")
        for i, c in enumerate((values[:64], values[64:128], values[128:]))
    ]
    merge_parts(paths, tmp_path / "merged.nc")
    assert "2 of 6 variables copied as stored (4 of 6 part-variables)" in capsys.readouterr().err
    merged = _file_contents(tmp_path / "merged.nc")
    decoded = _file_contents(_decoding_merge(paths, tmp_path / "decoded.nc"))
    assert merged["y"][2] == [16, 50] and decoded["y"][2] == [14, 50]
    for contents in (merged, decoded):  # all but the chunks
        for name in ("y", "dy_dC"):
            contents[name] = contents[name][:2] + contents[name][3:]
    assert merged == decoded
    with xr.open_dataset(tmp_path / "merged.nc") as back:
        np.testing.assert_array_equal(back.y.values, np.outer(values, x.numpy()))


def test_coords_only_copied_variables_use_stay_theirs(tmp_path, monkeypatch):
    """A coord along an output dim that only a copied variable names (``z_label``): xarray, writing
    the rest, would list it in a global ``coordinates`` attr; the merged file is the decoding merge's."""
    from pipeline.storage.chunkcopy import write_merged
    from pipeline.storage.parts import PartInfo, combined_parts
    from pipeline.storage.write import leading_chunks

    monkeypatch.setattr("pipeline.storage.write.CHUNK_ELEMENTS", 64)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        part = xr.Dataset(
            {"y": (("point", "z"), rng.normal(size=(32, 4))), "x": ("sample", [1.0, 2.0])},
            coords={"point": np.arange(32 * i, 32 * i + 32), "z_label": ("z", [1.0, 2.0, 3.0, 4.0])},
        )
        paths.append(write_netcdf(part, tmp_path / f"{i}.nc"))
    infos = [PartInfo(path, i, 2, None, None, "", "", "") for i, path in enumerate(paths)]
    assert write_merged(infos, tmp_path / "merged.nc", "merged").startswith("1 of")
    with open_parts(paths) as merged:
        write_netcdf(combined_parts(merged, infos, "merged").chunk(leading_chunks(merged)), tmp_path / "decoded.nc")
    assert _file_contents(tmp_path / "merged.nc") == _file_contents(tmp_path / "decoded.nc")


@pytest.mark.parametrize(
    ("compressions", "dtypes", "copied"),
    [
        (["zlib", "zlib", "zlib"], [torch.float64] * 3, "(0 of 6 part-variables)"),  # the config's zstd
        (["zstd", "zlib", "zstd"], [torch.float64] * 3, "(4 of 6 part-variables)"),  # a zstd plugin missing once
        (["zstd", "zstd", "zstd"], [torch.float64, torch.float32, torch.float64], "(0 of 0 part-variables)"),
    ],
)
def test_parts_laid_out_otherwise_are_decoded_not_copied(tmp_path, monkeypatch, capsys, compressions, dtypes, copied):
    """Parts whose stored bytes are not those of the merged file are decoded, not copied: another
    filter (zlib data in a zstd variable would not read), or another type (float32 bytes in a
    float64 variable; xarray's merge promotes them). The values are the parts' either way."""
    monkeypatch.setattr("pipeline.storage.write.CHUNK_ELEMENTS", 2**10)
    paths = []
    for i, (compression, dtype) in enumerate(zip(compressions, dtypes, strict=True)):
        x = torch.linspace(1, 2, 100, dtype=dtype)
        part = sensitivity(seed_linear, x, {"C": np.arange(16.0 * i, 16.0 * i + 16)}, attrs={"part": i, "parts": 3})
        paths.append(write_netcdf(part, tmp_path / f"{i}.nc", compression))
    merge_parts(paths, tmp_path / "merged.nc")
    assert copied in capsys.readouterr().err
    with xr.open_dataset(tmp_path / "merged.nc") as merged:
        assert merged.dy_dC.encoding["zstd"] and merged.dy_dC.encoding["chunksizes"] == (8, 100)
        assert merged.dy_dC.dtype == np.float64
        expected = np.concatenate(
            [np.broadcast_to(torch.linspace(1, 2, 100, dtype=d).numpy(), (16, 100)) for d in dtypes]
        )
        np.testing.assert_array_equal(merged.dy_dC.values, expected)


def _parts(tmp_path, x=None):
    x = torch.arange(3.0) if x is None else x
    return [
        write_netcdf(sensitivity(seed_linear, x, {"C": c}, attrs={"part": i, "parts": 2}), tmp_path / f"{i}.nc")
        for i, c in enumerate(([1.0, 2.0], [3.0, 4.0]))
    ]


def test_corrupt_part_is_named_moved_aside_and_never_merged(tmp_path):
    good, bad = _parts(tmp_path)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated, as a disk or copy failure would leave it
    with pytest.raises(
        UnreadableInputError, match=f"part file {bad} is unreadable .*moved it to {bad}.corrupt: rerun snakemake"
    ):
        merge_parts([good, bad], tmp_path / "merged.nc")
    assert not bad.exists() and good.exists() and not (tmp_path / "merged.nc").exists()
    assert (tmp_path / "1.nc.corrupt").read_bytes() == data[: len(data) // 2]  # kept, not deleted


@pytest.mark.parametrize("chunk_elements", [2**18, 2**13])
def test_a_corrupted_chunk_is_caught_while_merging(tmp_path, monkeypatch, chunk_elements):
    """Bytes flipped inside a part's data (not its header): the checksum fails while the merge reads
    it, whether it decodes the part (chunks of 2 rows, the merged file's of 4) or copies its stored
    chunks (chunks of 1 row in both)."""
    monkeypatch.setattr("pipeline.storage.write.CHUNK_ELEMENTS", chunk_elements)
    good, bad = _parts(tmp_path, torch.linspace(1, 2, 5000))
    data = bytearray(bad.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    bad.write_bytes(bytes(data))
    with pytest.raises(UnreadableInputError, match=f"part file {bad} is unreadable"):
        merge_parts([good, bad], tmp_path / "merged.nc")
    assert not (tmp_path / "merged.nc").exists() and (tmp_path / "1.nc.corrupt").exists()


def test_failed_write_keeps_the_previous_result(tmp_path, monkeypatch, composite_ds):
    """A disk-full error while writing: the error names the file, the previous version stays intact."""
    path = write_netcdf(composite_ds, tmp_path / "s.nc")
    before = path.read_bytes()

    def disk_full(self, target, **kwargs):
        Path(target).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", disk_full)
    with pytest.raises(OSError, match=f"cannot write {path}: no space left on device"):
        write_netcdf(composite_ds, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".s.nc.last-good", "s.nc"]


def test_the_kept_version_is_a_copy(tmp_path, composite_ds):
    """A result overwritten in place (its mtime kept) leaves the kept version as it was; a merge of
    temporary parts removes the parts' kept versions."""
    import os

    from pipeline.storage.write import drop_last_good, last_good

    path = write_netcdf(composite_ds, tmp_path / "s.nc")
    kept, before = last_good(path), path.read_bytes()
    assert kept.read_bytes() == before and kept.stat().st_ino != path.stat().st_ino
    stat = path.stat()
    with path.open("r+b") as f:  # in place, as a careless script would
        f.write(b"\0" * 64)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert kept.read_bytes() == before
    drop_last_good([path])
    assert not kept.exists() and path.exists()


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path, composite_ds):
    stale = tmp_path / ".s.nc.12345.tmp.nc"
    stale.write_bytes(b"half a file from a killed job")
    write_netcdf(composite_ds, tmp_path / "s.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".s.nc.last-good", "s.nc"]


def compute_part(tmp_path, name, *overrides, study="seed_linear"):
    out = tmp_path / name
    compute(compose_job(study, ["sweep.num=6", "sweep.parts=2", f"output={out}", *overrides]), study)
    return out


def merge_cli(tmp_path, *parts):
    return run([sys.executable, "-m", "pipeline.stages.merge", str(tmp_path / "merged.nc"), *map(str, parts)], cwd=ROOT)


def test_parts_of_different_configs_or_studies_are_refused_naming_files_and_keys(tmp_path):
    part0 = compute_part(tmp_path, "0.nc", "part=0")
    part1 = compute_part(tmp_path, "1.nc", "part=1")
    other = compute_part(tmp_path, "1-other.nc", "part=1", "sweep.num=8")
    heat = compute_part(
        tmp_path,
        "heat.nc",
        "part=1",
        "model.args.steps=5",
        f"inputs.args.path={ROOT / 'data' / 'heat_initial.npy'}",
        study="example_heat",
    )
    cases = [
        (
            (part0, other),
            f"part files of 2 different configs: {part0} | {other}; config keys that differ: sweep.num: 6 -> 8",
        ),
        ((part0, heat), "config keys that differ: dtype: float32 -> float64"),
        ((part0, part0, part1), f"the same part given more than once: part 0 in {part0}, {part0}"),
        ((part1,), "incomplete sweep: parts [0] of 2 are missing (have [1])"),
    ]
    for parts, message in cases:
        result = merge_cli(tmp_path, *parts)
        assert result.returncode == 1
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and not (tmp_path / "merged.nc").exists()
    assert merge_cli(tmp_path, part1, part0).returncode == 0


def test_same_config_different_inputs_is_refused(tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.arange(4.0)[:, None])
    part0 = compute_part(tmp_path, "0.nc", "part=0", "inputs=file", f"inputs.args.path={x}")
    np.save(x, np.arange(1.0, 5.0)[:, None])  # the data file changes between two parts
    part1 = compute_part(tmp_path, "1.nc", "part=1", "inputs=file", f"inputs.args.path={x}")
    result = merge_cli(tmp_path, part0, part1)
    assert result.returncode == 1
    assert "same config, different inputs x" in result.stderr


@pytest.mark.parametrize("temporary", [False, True])
def test_the_merge_of_temporary_parts_removes_their_kept_versions(tmp_path, temporary):
    """With keep_parts: false Snakemake deletes the parts once merged; their kept copies go too,
    only once the merged file is written."""
    from pipeline.storage.write import last_good

    parts = [compute_part(tmp_path, f"{i}.nc", f"part={i}") for i in range(2)]
    assert all(last_good(p).exists() for p in parts)
    args = ["--temporary"] if temporary else []
    assert merge_cli(tmp_path, *parts, *args).returncode == 0
    assert (tmp_path / "merged.nc").exists() and last_good(tmp_path / "merged.nc").exists()
    assert all(last_good(p).exists() != temporary for p in parts)


def test_the_headline_table_gives_the_numbers_of_a_study(tmp_path):
    """headline.md (a report item): how the study was computed, the checks, and per parameter its
    numbers with intervals, read from the summary (not recomputed)."""
    import math

    from pipeline import design
    from pipeline.stages.headline import headline

    def ishigami(x, x1, x2, x3):
        return (torch.sin(x1) + 7 * torch.sin(x2) ** 2 + 0.1 * x3**4 * torch.sin(x1)) * x

    u = design.uniform(-math.pi, math.pi)
    ds = sensitivity(ishigami, torch.ones(1, dtype=torch.float64), design.saltelli({"x1": u, "x2": u, "x3": u}, 256))
    summary = summarise(ds)
    text = headline(ds, summary)
    total = summary.sobol_total_aggregated.values[0]
    low, high = summary.sobol_total_aggregated_interval.values[:, 0]
    assert f"| x1 | {total:.3g} [{low:.3g}, {high:.3g}] |" in text
    assert "- method: `reverse` (asked: `auto`)" in text and "consistent (none)" in text
    grid = sensitivity(lambda x, C: C * x, torch.arange(3.0), {"C": [1.0, 2.0]})
    assert "| C | " in headline(grid, summarise(grid)) and "mu*" in headline(grid, summarise(grid))


@pytest.mark.parametrize(("parameters", "output_dims"), [(1, 0), (3, 1), (30, 2)])
def test_every_design_plot_is_drawn_and_stays_readable(tmp_path, parameters, output_dims):
    """Designs of 1, 3 and 30 parameters with a scalar, 1-D and 2-D output: every plot is written,
    none grows wider than about 1,900 px (panels wrap, the ranking keeps its top 30), and the
    bounds' lines never repeat a colour (at most 10 drawn)."""
    from matplotlib.image import imread

    from pipeline import design
    from pipeline.paths import DESIGN_PLOTS

    names = [f"p{i}" for i in range(parameters)]
    weights = torch.linspace(1.0, 0.1, parameters, dtype=torch.float64)
    shape = [(), (4,), (2, 3)][output_dims]

    def model(x, **p):
        value = sum(w * v for w, v in zip(weights, p.values(), strict=True))
        return (x * value).reshape(-1, *([1] * len(shape))).expand(-1, *shape) if shape else x * value

    d = design.sobol({n: design.uniform(0, 1) for n in names}, 64, seed=1)
    ds = sensitivity(model, torch.ones(2, dtype=torch.float64), d)
    paths = plot_study(ds, summarise(ds), tmp_path)
    assert sorted(p.name for p in paths) == sorted(DESIGN_PLOTS)
    for path in paths:
        assert imread(path).shape[1] <= 1900, (path.name, imread(path).shape)


def test_report_pages_render_the_stages_markdown_and_escape_the_rest():
    """headline/verify/screening tables as HTML for the report: tables, lists and code kept; a
    study title or model message holding markup is shown as text, never run."""
    from pipeline.stages.html import body_html, markdown_page

    text = "# study <script>x</script>\n\n- method: `forward`\n\n"
    text += "| parameter | S |\n| --- | --- |\n| x1 | 0.5 [0.4, 0.6] |\n"
    body = body_html(text)
    assert "<script>" not in body and "&lt;script&gt;" in body
    assert "<li>method: <code>forward</code></li>" in body
    assert "<tr><th>parameter</th><th>S</th></tr>" in body and "<td class=num>0.5 [0.4, 0.6]</td>" in body
    assert markdown_page(text, "t").startswith("<!DOCTYPE html>")


def test_second_derivatives_are_summarised_and_drawn_beside_the_first(tmp_path):
    """method order 2: d2y/dC2's mean and spread over samples in the summary (exact for y = C^3 x),
    and a second panel in derivative_vs_param.png."""
    import matplotlib.image as mpimg

    from pipeline.paths import PLOTS
    from pipeline.stages.plot import plot_study

    x = torch.arange(1.0, 5.0, dtype=torch.float64)
    ds = sensitivity(lambda x, C: C**3 * x, x, {"C": np.linspace(0.5, 2.0, 7)}, order=2)
    s = summarise(ds)
    np.testing.assert_allclose(s.d2y_dC2_mean.values, 6 * ds.C.values * x.numpy().mean(), rtol=1e-12)
    np.testing.assert_allclose(s.d2y_dC2_std.values, 6 * ds.C.values * x.numpy().std(ddof=0), rtol=1e-12)
    plot_study(ds, s, tmp_path)
    image = mpimg.imread(tmp_path / PLOTS[0])
    assert image.shape[1] > 2.2 * image.shape[0]  # two panels side by side
