"""Ships the workflow's own files (Snakefile, rules, conf, ...) inside the package of a built wheel,
so that an installed sensweep runs its workflow from a user's project folder (pipeline.paths)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

WORKFLOW_FILES = ("Snakefile", "rules", "conf", "config", "report", "envs", "profiles")


class BuildWithWorkflow(build_py):
    """``build_py`` that also copies :data:`WORKFLOW_FILES` to ``pipeline/workflow_files/`` (not for an
    editable install, which finds them in the source tree)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "pipeline" / "workflow_files"
        for name in WORKFLOW_FILES:
            source = Path(name)
            if source.is_dir():
                shutil.copytree(source, target / name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            elif source.is_file():
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": BuildWithWorkflow})
