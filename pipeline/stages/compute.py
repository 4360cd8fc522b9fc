"""Workflow stage 2: one compute job, i.e. one part of one study's sweep, to one NetCDF file.

``python -m pipeline.stages.compute study=oscillator [part=0] [output=...] [sweep.num=2001 device=cuda ...]``
"""

from __future__ import annotations

import logging

import torch
import xarray as xr
from omegaconf import DictConfig

from pipeline.api import dataset, plan, resolve_device, run
from pipeline.config.studies import study_title, to_yaml
from pipeline.config.validate import part_count, validate
from pipeline.design.sampling import Design
from pipeline.design.sweep import part_sweep
from pipeline.inputs import input_arrays, input_leaves
from pipeline.options import Options
from pipeline.stages.build import build_inputs, build_model, swept_bind
from pipeline.stages.cli import job_main
from pipeline.storage.names import connected_name, swept_parameters
from pipeline.storage.provenance import fingerprint, grows_by_part_size, provenance
from pipeline.storage.write import write_netcdf

log = logging.getLogger("sensweep.compute")


def part_attrs(cfg: DictConfig) -> dict[str, int]:
    """Which part a file holds: ``part`` of ``parts``, or ``part`` of ``part_size`` points for a
    growable design, whose number of parts may grow (:data:`pipeline.storage.provenance.GROWABLE`)."""
    if grows_by_part_size(cfg.sweep):
        return {"part": cfg.part, "part_size": cfg.sweep.part_size}
    return {"part": cfg.part, "parts": part_count(cfg.sweep)}


def sweep_dataset(cfg: DictConfig, study: str = "") -> xr.Dataset:
    """``y`` and ``dy/d<param>`` for the job's part of the sweep (all of it when ``part`` is null)."""
    validate(cfg)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    grid = part_sweep(cfg.sweep, cfg.part)
    x = build_inputs(cfg)
    model = build_model(cfg)
    part = {} if cfg.part is None else part_attrs(cfg)
    device = cfg.device
    if device.startswith("cuda") and not torch.cuda.is_available() and cfg.device_fallback:
        log.warning("device=%s but CUDA is not available: running on the CPU (device_fallback=true)", device)
        device = "cpu"
    resolve_device(device)  # an unavailable device fails here, before any work
    log.info(
        "study %s: %s x %d samples, method=%s, device=%s, dtype=%s",
        study,
        f"{len(grid)} points of a {grid.kind} design of {', '.join(grid.names)}"
        if isinstance(grid, Design)
        else " x ".join(f"{len(v)} values of {p}" for p, v in grid.items()),
        next(iter(input_leaves(x).values())).shape[0],
        cfg.method.name.value,
        device,
        cfg.dtype.value,
    )
    options = Options.from_config(cfg, device=device)
    study = f"{study}.{cfg.stage}" if cfg.stage and study else study  # a two-stage study's screening
    attrs = {"study": study, "sweep_kind": cfg.sweep.kind.value, "config": to_yaml(cfg), **provenance(), **part}
    if cfg.sweep.fixed:  # not swept: held at these values (sweep.fixed, or what a screening left out)
        attrs["fixed_parameters"] = ", ".join(f"{k} = {v:.17g}" for k, v in cfg.sweep.fixed.items())
    planned = plan(
        model, x, grid, options, bind=swept_bind(cfg), output_dims=cfg.model.output_dims, units=dict(cfg.model.units)
    )
    ds = dataset(planned, run(planned), title=study_title(cfg, study) if study else cfg.title, attrs=attrs)
    ds.attrs["fingerprint"] = fingerprint(cfg, input_arrays(ds))  # what the merge and verify compare
    independent = ds.attrs.get("structurally_independent_outputs", 0)
    if independent:
        log.warning(
            "%d (output, parameter) pairs of %d outputs (sample x output element) are structurally "
            "independent: no path in the graph reaches them (detach, unused parameter, unselected branch); "
            "see variables %s",
            independent,
            ds.attrs["outputs"],
            ", ".join(connected_name(p) for p in swept_parameters(ds)),
        )
    return ds


def compute(cfg: DictConfig, study: str = "") -> xr.Dataset:
    """Compute the job's part of the sweep and write it to ``cfg.output``."""
    ds = sweep_dataset(cfg, study)
    write_netcdf(ds, cfg.output)
    log.info("wrote %s: %s", cfg.output, ds.attrs["history"])
    return ds


main = job_main(compute)


if __name__ == "__main__":
    main()
