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


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium, installed with apt where it is missing (root); skipped, saying why,
    only where that cannot work; in CI a failed install fails the test instead."""
    import os
    import subprocess

    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("rendering the report needs Chromium (apt-get install chromium, as root)")
    install = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null"
    done = subprocess.run(["bash", "-c", install], capture_output=True, text=True, timeout=900)
    found = shutil.which("chromium")
    if found is None:
        message = f"could not install Chromium: {done.stderr[-2000:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found
