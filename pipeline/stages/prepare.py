"""Workflow stage 1: write a study's input batch ``x`` to NetCDF, once for all its compute jobs.

``python -m pipeline.stages.prepare study=<name> output=outputs/<name>/inputs.nc``
"""

from __future__ import annotations

import logging

import xarray as xr
from omegaconf import DictConfig

from pipeline.config.studies import to_yaml
from pipeline.config.validate import validate
from pipeline.inputs import input_leaves
from pipeline.stages.build import build_inputs, build_model
from pipeline.stages.cli import job_main
from pipeline.storage.dataset import input_structure, input_variables
from pipeline.storage.names import header
from pipeline.storage.write import write_netcdf

log = logging.getLogger("sensweep.prepare")


def prepare(cfg: DictConfig, study: str = "") -> xr.Dataset:
    """Build the study's ``x`` (named dims from the model) and write it to ``cfg.output``."""
    validate(cfg)
    x = build_inputs(cfg)
    model = build_model(cfg)
    ds = xr.Dataset(
        input_variables(model, x, units=dict(cfg.model.units)),
        attrs={
            **header(f"Inputs of study {study}".strip(), "inputs of the study (pipeline.stages.prepare)"),
            "study": study,
            "config": to_yaml(cfg),
            **input_structure(x),
        },
    )
    write_netcdf(ds, cfg.output)
    log.info("wrote %s: %s", cfg.output, ", ".join(f"{k} {tuple(v.shape)}" for k, v in input_leaves(x).items()))
    return ds


main = job_main(prepare)


if __name__ == "__main__":
    main()
