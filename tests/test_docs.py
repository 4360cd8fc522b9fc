"""The docs as a user reads them: every relative link resolves, and every Python example needs only
the public names of ``pipeline`` (its ``__all__``)."""

from __future__ import annotations

import re

import pytest

import pipeline
from helpers import ROOT

PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = target.split("#")[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.name} links to files that do not exist: {broken}"


CODE = re.compile(r"```python\n(.*?)```", re.S)
IMPORT = re.compile(r"^\s*from (pipeline[\w.]*) import ([^\n]+)", re.M)
ATTRIBUTE = re.compile(r"\bpipeline\.(\w+)")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_examples_use_only_the_public_api(page):
    outside = []
    for block in CODE.findall(page.read_text()):
        for module, names in IMPORT.findall(block):
            imported = [n.split(" as ")[0].strip() for n in names.strip("()").split(",")]
            if module != "pipeline" or not set(imported) <= set(pipeline.__all__):
                outside.append(f"from {module} import {names}")
        outside += [f"pipeline.{a}" for a in ATTRIBUTE.findall(block) if a not in pipeline.__all__]
    assert not outside, f"{page.name}'s examples use names outside pipeline.__all__: {outside}"


def test_the_public_api_is_what_the_package_offers():
    """Each public name resolves, and ``import pipeline`` stays free of torch and Hydra until one is used."""
    for name in pipeline.__all__:
        assert getattr(pipeline, name) is not None, name
    assert pipeline.design.sobol is pipeline.design.sampling.sobol
    assert issubclass(pipeline.DerivativeError, pipeline.SensweepError)
