"""Run sensweep's workflow in a project folder of your own: ``python -m pipeline.workflow --cores 2``.

The same as ``snakemake --snakefile <sensweep's Snakefile> --cores 2`` run in the current folder:
the studies are your ``conf/study/*.yaml`` (on Hydra's search path before sensweep's own), the
workflow config your ``config/config.yaml``, your models import from the folder, the files your
configs name are relative to it, and results go to its ``outputs/``. Every other argument goes to
Snakemake (``-n``, ``--profile profiles/slurm``, ``--report outputs/report.html``).
``python -m pipeline.workflow --snakefile-path`` prints where the Snakefile is.
"""

from __future__ import annotations

import subprocess
import sys

from pipeline.paths import SNAKEFILE


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--snakefile-path"]:
        print(SNAKEFILE)
        return 0
    return subprocess.call([sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), *args])


if __name__ == "__main__":
    sys.exit(main())
