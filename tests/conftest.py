"""Shared fixtures: device markers, a temporary copy of the workflow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_FILES = ("Snakefile", "rules", "conf", "report", "envs", "data")

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def run(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """Run a command with the test's Python environment first on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    """A copy of the workflow (Snakefile, rules, conf, data, ...) in a temporary folder."""
    for name in WORKFLOW_FILES:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path
