"""The names and dims of a sensitivity dataset: what every stage that reads one uses.

Free of torch, so the stages that only read datasets (merge, summarise, plot) start fast.
"""

from __future__ import annotations

import datetime as dt

import xarray as xr

CONVENTIONS = "CF-1.10"


def header(title: str, history: str, source: str = "sensweep") -> dict[str, str]:
    """The CF global attributes every file sensweep writes starts with; ``history`` gets a UTC timestamp."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return {"Conventions": CONVENTIONS, "title": title, "history": f"{now}: {history}", "source": source}


def derivative_name(param: str) -> str:
    """Name of the derivative variable of ``param``: ``dy_dC`` for ``C``."""
    return f"dy_d{param}"


def connected_name(param: str) -> str:
    """Name of the variable that flags outputs ``param`` reaches: ``dy_dC_connected``."""
    return f"{derivative_name(param)}_connected"


def second_derivative_name(param: str) -> str:
    """Name of the second-derivative variable of ``param``: ``d2y_dC2`` for ``C``."""
    return f"d2y_d{param}2"


def sweep_dims(ds: xr.Dataset) -> list[str]:
    """The dims the sweep spans: one per parameter for a grid, ``point`` for a sampled design."""
    return ["point"] if "point" in ds.dims else swept_parameters(ds)


def swept_parameters(ds: xr.Dataset) -> list[str]:
    """The swept parameters of a sensitivity dataset, in grid order."""
    return ds.attrs["swept_parameters"].split()


def optional(ds: xr.Dataset, name: str) -> xr.DataArray | None:
    """Variable ``name`` of ``ds``, None where it has none. ``ds.get(name)`` would do, but a missing
    name makes xarray search every name for a "did you mean": seconds per call in a summary of
    thousands of variables."""
    return ds[name] if name in ds.variables else None
