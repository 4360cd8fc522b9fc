"""Helpers shared by the tests: the repository root, running commands, the workflow's files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_FILES = ("Snakefile", "rules", "config", "conf", "report", "envs", "data", ".test")
TEST_CONFIG = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
"""The workflow's small test config (``.test/config.yaml``), also used by ``make lint``'s dry run."""

# Tolerances of each method against exact references in float64; differences carry O(h^2) truncation.
RTOL = {
    "forward": 1e-12,
    "forward_dual": 1e-12,
    "reverse": 1e-12,
    "loop": 1e-12,
    "finite_difference": 1e-7,
    "forward_per_point": 1e-12,
    "reverse_per_point": 1e-12,
    "finite_difference_per_point": 1e-7,
}

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


class SimulatedClock:
    """A clock that moves only when a test says so: code that times itself (chunk timing, a model's
    cost per call) is tested against costs the test chooses, never against the machine's load."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


def run(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """Run a command with the test's Python environment first on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
