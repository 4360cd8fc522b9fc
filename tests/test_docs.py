"""The docs as a user reads them: every relative link resolves, every Python example needs only the
public names of ``pipeline`` (its ``__all__``), and the API reference is generated from the code.

Run as a script to regenerate the reference: ``python tests/test_docs.py > docs/reference/api.md``.
"""

from __future__ import annotations

import inspect
import re
import sys

import pytest

import pipeline
from helpers import ROOT

PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
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


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_examples_use_only_the_public_api(page):
    outside = []
    for block in CODE.findall(page.read_text()):
        for module, names in IMPORT.findall(block):
            imported = [n.split(" as ")[0].strip() for n in names.strip("()").split(",")]
            if module != "pipeline" or not set(imported) <= set(pipeline.__all__):
                outside.append(f"from {module} import {names}")
        outside += [f"pipeline.{a}" for a in ATTRIBUTE.findall(block) if a not in pipeline.__all__]
    assert not outside, f"{page.name}'s examples use names outside pipeline.__all__: {outside}"


RUNNABLE = [ROOT / "README.md", ROOT / "docs" / "tutorial.md"]


@pytest.mark.parametrize("page", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_examples_run(page, tmp_path, monkeypatch):
    """The README's and the tutorial's Python examples run as written, in order (those that read a
    workflow's outputs or define a module for a study aside)."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in CODE.findall(page.read_text()):
        if "outputs/" in block or block.lstrip().startswith("# my_models.py"):
            continue
        exec(compile(block, f"{page.name} example", "exec"), namespace)
    assert "ds" in namespace and int(namespace["ds"].attrs.get("derivative_mismatch_dy_dC", 0)) == 0


def test_the_public_api_is_what_the_package_offers():
    """Each public name resolves, and ``import pipeline`` stays free of torch and Hydra until one is used."""
    for name in pipeline.__all__:
        assert getattr(pipeline, name) is not None, name
    assert pipeline.design.sobol is pipeline.design.sampling.sobol
    assert issubclass(pipeline.DerivativeError, pipeline.SensweepError)


ROLES = re.compile(r":(?:func|class|mod|meth|data|attr):`~?([^`]+)`")


def _markdown(doc: str) -> str:
    """A numpydoc docstring as Markdown: roles and ``literals`` as code, sections as bold headings,
    ``>>>`` examples as a Python block."""
    doc = ROLES.sub(r"`\1`", doc).replace("``", "`")
    lines, out, example = doc.splitlines(), [], False
    for i, line in enumerate(lines):
        if set(line.strip()) == {"-"} and i and lines[i - 1].strip():
            out[-1] = f"**{out[-1]}**\n"
            continue
        entry = re.match(r"^(\w[\w, ]*) : (.+)$", line)
        if entry and not example:  # a numpydoc parameter: a list item, its description indented under it
            out.append(f"- `{entry[1]}` ({entry[2]}):")
            continue
        if line.startswith("    ") and not example and out and out[-1].startswith(("- ", "  ")):
            out.append("  " + line.strip())
            continue
        starts = line.startswith((">>>", "..."))
        if starts and not example:
            out += ["```python"]
            example = True
        elif example and not starts and not line.strip():
            out += ["```"]
            example = False
        out.append(line)
    return "\n".join([*out, *(["```"] if example else [])])


def api_reference() -> str:
    """docs/reference/api.md: every public name of ``pipeline`` and ``pipeline.design``, from its docstring."""
    parts = [
        "# Python API reference",
        "",
        "Generated from the docstrings by `python tests/test_docs.py > docs/reference/api.md`; a test keeps it",
        "in sync. Everything a notebook needs is importable from `pipeline` (`from pipeline import sensitivity`).",
    ]
    for module, names in ((pipeline, pipeline.__all__), (pipeline.design, pipeline.design.__all__)):
        for name in sorted(n for n in names if not n.startswith("_")):
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                continue
            title = f"{module.__name__}.{name}"
            signature = ""
            if callable(obj) and not (inspect.isclass(obj) and issubclass(obj, BaseException)):
                try:
                    signature = str(inspect.signature(obj)).replace("'", '"')
                except (TypeError, ValueError):
                    signature = ""
            parts += ["", f"## `{title}`", ""]
            if signature and not inspect.isclass(obj):
                signature = re.sub(r'(: |-> )"([^"]*)"', r"\1\2", signature)
                if len(name) + len(signature) > 100:  # one parameter per line
                    inner, _, returns = signature[1:].rpartition(")")
                    signature = "(\n    " + ",\n    ".join(re.split(r", (?![^\[]*\])", inner)) + ",\n)" + returns
                parts += ["```python", f"{name}{signature}", "```", ""]
            parts.append(_markdown(inspect.getdoc(obj) or ""))
    return "\n".join(parts) + "\n"


def test_api_reference_is_up_to_date():
    """Regenerate with ``python tests/test_docs.py > docs/reference/api.md``."""
    assert (ROOT / "docs" / "reference" / "api.md").read_text() == api_reference()


if __name__ == "__main__":
    sys.stdout.write(api_reference())
