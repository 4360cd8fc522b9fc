"""The package's shape, as docs/reference/layout.md describes it: layers that only import downwards, and
functions short enough to read (no body over 80 lines, docstring aside)."""

from __future__ import annotations

import ast
import functools

import pytest

from helpers import ROOT

PACKAGE = ROOT / "pipeline"

LAYERS = [
    # what every layer may use: errors, option checks, paths, the options, the dataset's names
    ("pipeline.errors", "pipeline.checks", "pipeline.paths", "pipeline.options", "pipeline.storage.names"),
    ("pipeline.config", "pipeline.inputs", "pipeline.design"),  # what to compute
    ("pipeline.derivatives", "pipeline.models"),  # computing it (built-in models use the TimeStepper)
    ("pipeline.storage",),  # the dataset and its files
    ("pipeline.summary", "pipeline.plan", "pipeline.api"),  # the library's entry points
    ("pipeline.stages", "pipeline.workflow"),  # one module per workflow rule; the workflow's launcher
]
"""Each module may import from its own layer and the ones above it in this list, never below."""

BASE = ("pipeline.config.yamltext", "pipeline.config.sizes")
"""Torch-free helpers of the config that the first layer's checks use."""

MAX_BODY_LINES = 80


def _layer(module: str) -> int:
    if module in BASE or module == "pipeline.__version__":
        return 0
    found = [
        (len(p), i) for i, prefixes in enumerate(LAYERS) for p in prefixes if module == p or module.startswith(p + ".")
    ]
    assert found, f"{module} is in no layer of tests/test_layout.py"
    return max(found)[1]


@functools.cache
def _modules() -> list[tuple[str, ast.Module]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found.append((name, ast.parse(path.read_text())))
    return found


def _imports(tree: ast.Module) -> list[str]:
    targets = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            if node.module == "pipeline":
                targets += [f"pipeline.{a.name}" for a in node.names]
            else:
                targets.append(node.module)
        elif isinstance(node, ast.Import):
            targets += [a.name for a in node.names if a.name.startswith("pipeline")]
    return targets


def test_layers_only_import_downwards():
    wrong = [
        f"{module} imports {target}"
        for module, tree in _modules()
        if module != "pipeline"  # the package's public names come from every layer, lazily
        for target in _imports(tree)
        if _layer(target) > _layer(module)
    ]
    assert not wrong, wrong


def test_the_engine_does_not_depend_on_the_built_in_models():
    """Built-in models are data for studies (named by ``_target_``), not a layer the engine uses."""
    users = [m for m, tree in _modules() if "pipeline.models" in _imports(tree)]
    assert users == [], users


def test_no_module_shadows_a_public_name_of_its_package():
    """``pipeline/design/sobol.py`` would replace ``pipeline.design.sobol`` (the function) by the module
    as soon as anything imported it: no submodule may share a name with what its package exports."""
    import importlib

    clashes = []
    for path in sorted(PACKAGE.rglob("__init__.py")):
        package = importlib.import_module(".".join(path.parent.relative_to(ROOT).parts))
        exported = set(getattr(package, "__all__", []))
        clashes += [f"{package.__name__}.{m.stem}" for m in path.parent.glob("*.py") if m.stem in exported]
    assert not clashes, clashes


@pytest.mark.parametrize("module", [m for m, _ in _modules()])
def test_no_function_body_is_over_80_lines(module):
    tree = dict(_modules())[module]
    long = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            docstring = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
            first = body[1] if docstring and len(body) > 1 else body[0]
            length = node.end_lineno - first.lineno + 1
            if length > MAX_BODY_LINES:
                long.append(f"{node.name} ({length} lines)")
    assert not long, f"{module}: {long}"
