"""Shared fixtures: a temporary copy of the workflow. Helpers live in tests/helpers.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import ROOT, WORKFLOW_FILES


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    """A copy of the workflow (Snakefile, rules, conf, data, ...) in a temporary folder."""
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.exists():
            (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path
