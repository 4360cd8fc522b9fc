"""Benchmarks of sensweep: derivative methods against the primal floor (`methods`), workflow overhead
(`workflow`), designs against SALib (`designs`), forward against reverse mode (`directions`), large
designs against points (`streaming`). Run by `make bench`; not part of the installed package."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.storage.write import write_atomic


def write_report(out: str | Path, name: str, text: str, data: object) -> None:
    """A bench's generated figures: ``<name>.md`` (the table) and ``<name>.json`` (the numbers) in ``out``."""
    folder = Path(out)
    write_atomic(folder / f"{name}.json", lambda tmp: Path(tmp).write_text(json.dumps(data, indent=1)))
    write_atomic(folder / f"{name}.md", lambda tmp: Path(tmp).write_text(text))
