# Shared by every rule: config validation, the studies to run, and input functions.
import hashlib
import os
import re
import shlex
import sys
from types import SimpleNamespace
from pathlib import Path

import yaml
from snakemake.utils import validate

from pipeline.errors import ConfigError
from pipeline.config.studies import (
    check_study_name,
    closest,
    compose_job,
    study_names,
    to_yaml,
)
from pipeline.config.schema import DESIGN_KINDS
from pipeline.config.hydratext import quoted as hydra_value
from pipeline.config.screening import SCREEN_SUFFIX, stage_overrides
from pipeline.config.validate import part_count
from pipeline.paths import AGREEMENT_PLOT, DESIGN_PLOTS, PLOTS, PROJECT_ENV
from pipeline.storage import provenance
from pipeline.storage.provenance import determining_yaml

validate(config, schema="../config/schema.yaml")

# Study configs come from this workflow's own conf/, here and in every job (SENSWEEP_CONF).
CONF = Path(workflow.basedir) / "conf"
# Run in another folder (snakemake --snakefile <this Snakefile>, python -m pipeline.workflow), the
# workflow runs that folder's project: its conf/ first on Hydra's search path, its files relative
# to it (pipeline.paths.PROJECT_ENV; jobs inherit it).
if Path.cwd().resolve() != Path(workflow.basedir).resolve():
    os.environ[PROJECT_ENV] = str(Path.cwd().resolve())
PROJECT = Path(os.environ.get(PROJECT_ENV) or workflow.basedir)
# As the jobs' params: relative, so that a moved or copied workflow folder does not rerun its jobs.
CONF_PARAM = os.path.relpath(CONF)

# `--config merge=false` arrives as a string; the schema accepts true/false in either form.
for key in ("merge", "keep_parts"):
    config[key] = str(config[key]).lower() == "true"
OUT = config["outputs"]

# `snakemake --report` builds the DAG from the config: without `--config`/`--configfile` it
# takes the last successful run's studies and overrides (recorded below), not the defaults.
RUN_RECORD = Path(OUT) / ".last-run.yaml"
RECORDED = ("studies", "overrides", "merge", "keep_parts")
_CONFIG_FLAGS = ("--config", "-C", "--configfile", "--configfiles")
if (
    "--report" in sys.argv
    and not any(arg.split("=")[0] in _CONFIG_FLAGS for arg in sys.argv)
    and RUN_RECORD.is_file()
):
    config.update(yaml.safe_load(RUN_RECORD.read_text()))


def record_run():
    """Keep this run's studies and overrides for a later `snakemake --report` (onsuccess)."""
    RUN_RECORD.write_text(yaml.safe_dump({key: config[key] for key in RECORDED}))


def _selected_studies():
    studies = config["studies"]
    if isinstance(studies, str):
        studies = [s.strip() for s in studies.split(",") if s.strip()]
    for study in studies:
        check_study_name(study)
    valid = study_names(CONF)
    unknown = sorted(set(studies) - set(valid))
    if unknown:
        hints = "".join(closest(s, valid) for s in unknown)
        raise ConfigError(
            f"unknown studies {unknown} in config 'studies': valid studies are {', '.join(valid)}{hints}"
        )
    return list(dict.fromkeys(studies))


def _checked_overrides(studies):
    """Overrides of a study that does not exist fail; those of an unselected study are reported."""
    valid = study_names(CONF)
    for study in config["overrides"]:
        if study not in valid:
            raise ConfigError(
                f"invalid config 'overrides': {study!r} is not a study{closest(study, valid)} "
                f"(valid studies are {', '.join(valid)})"
            )
        if study not in studies:
            print(
                f"sensweep: note: overrides for study {study!r} are not used: it is not in 'studies'",
                file=sys.stderr,
            )
    return config["overrides"]


def hydra_quoted(path):
    """A path as one Hydra override value, quoted for Hydra's grammar and then for the shell,
    so that any folder name works (spaces, quotes, $(...), non-ASCII letters)."""
    return shlex.quote(hydra_value(path))


STUDIES = _selected_studies()
OVERRIDES = _checked_overrides(STUDIES)
# Each study's Hydra config, composed and validated once, before any job runs.
JOBS = {s: compose_job(s, OVERRIDES.get(s, []), CONF) for s in STUDIES}
# A two-stage study (sweep.screen) runs its screening stage as the study `<name>.screen` first;
# the screen rule writes what the study's own design keeps (pipeline.config.screening).
STAGES = {
    s + SCREEN_SUFFIX: (s, stage_overrides(JOBS[s]))
    for s in STUDIES
    if JOBS[s].sweep.screen.top is not None
}
SCREENED = {
    s: [f"screened={hydra_value(f'{OUT}/{s}/screening.yaml')}"]
    for s, _ in STAGES.values()
}
STAGES.update({s: (s, SCREENED.get(s, [])) for s in STUDIES})
JOBS.update(
    {
        name: compose_job(s, OVERRIDES.get(s, []) + extra, CONF)
        for name, (s, extra) in STAGES.items()
        if name not in JOBS
    }
)
ALL_STUDIES = list(STAGES)


wildcard_constraints:
    study="|".join(re.escape(s) for s in ALL_STUDIES),
    part=r"\d+",
    confighash=r"[0-9a-f]{16}",


def study_file(wildcards):
    """The study file a job composes: a screening stage's is its study's."""
    return STAGES[wildcards.study][0]


def overrides(wildcards, input):
    """The study's extra Hydra overrides (and a stage's own), quoted for the shell.

    Taking `input` makes this a derived param, not a rerun trigger: `determining_config` is, so
    that a verify or threads override reruns no computation, and a Sobol' design grown by
    `sweep.n` reruns none of the parts it keeps.
    """
    study, extra = STAGES[wildcards.study]
    return shlex.join(OVERRIDES.get(study, []) + extra)


def study_overrides(wildcards, input):
    """The study's own overrides, without its stage's: what the inputs x (prepare) and the screen
    rule need (a study's design is applied only once its screening exists)."""
    return shlex.join(OVERRIDES.get(STAGES[wildcards.study][0], []))


def screened_input(wildcards):
    """A two-stage study's compute jobs read what its screening kept."""
    return (
        [f"{OUT}/{wildcards.study}/screening.yaml"]
        if wildcards.study in SCREENED
        else []
    )


def determining_config(wildcards):
    """What determines the study's numbers (pipeline.storage.provenance): a param, so that changing it
    reruns that study's jobs only, and changing only the verify settings reruns verify only.
    """
    return determining_yaml(JOBS[wildcards.study])


def current_marker(wildcards):
    """The mark that the study's results come from its current config (pipeline.stages.current): its name
    holds a hash of what determines the numbers, so a changed config is checked again.
    """
    digest = hashlib.sha256(
        determining_yaml(JOBS[wildcards.study]).encode()
    ).hexdigest()[:16]
    return f"{OUT}/{wildcards.study}/.current/{digest}"


def verify_settings(wildcards):
    return to_yaml(JOBS[wildcards.study].verify)


def logged(command):
    """A rule's shell command with its log: the log is emptied first, the job's stdout goes to it, and
    its stderr to it and to Snakemake's own output, so an error is seen even when the log cannot be
    written (a full disk)."""
    return f": > {{log:q}}; {command} 2>&1 >> {{log:q}} | tee -a {{log:q}} >&2"


def part_output(path):
    """A part file: temporary (deleted once merged) with `keep_parts: false` and the merge on."""
    return temp(path) if config["merge"] and not config["keep_parts"] else path


def part_files(wildcards):
    parts = part_count(JOBS[wildcards.study].sweep)
    return expand(rules.compute.output, study=wildcards.study, part=range(parts))


def study_wildcards(study):
    """Wildcards of a study, for calling the input functions above outside a rule."""
    return SimpleNamespace(study=study)


def sensitivity_input(wildcards):
    """What the analysis rules read: sensitivity.nc, or this config's part files (merge: false)."""
    if config["merge"]:
        return expand(rules.merge.output, study=wildcards.study)
    return part_files(wildcards)


def data_files(wildcards):
    """Trained weights (model.weights), a design's table (sweep.path) and the model's source file:
    inputs, so that a new or edited file reruns the study's parts."""
    return [str(f) for f in provenance.data_files(JOBS[wildcards.study], PROJECT)]


def compute_mem_mb(wildcards):
    """Memory to reserve for one compute job: twice its budget plus 1 GiB, or 4 GiB (auto budget)."""
    budget = JOBS[wildcards.study].method.max_memory_mb
    return 2 * budget + 1024 if budget else 4096


def compute_gpus(wildcards):
    return 1 if JOBS[wildcards.study].device.startswith("cuda") else 0


def is_design(study):
    """A sampled design (one dim `point`) rather than a grid: its plots differ."""
    return JOBS[study].sweep.kind in DESIGN_KINDS


def verified_studies():
    """Studies with a verify step (method none computes no derivative: nothing to verify)."""
    return [
        s
        for s in ALL_STUDIES
        if JOBS[s].verify.enabled and JOBS[s].method.name != "none"
    ]


def overview_inputs(wildcards):
    """What the overview page reads: every study's summary and tables."""
    return expand(rules.summarise.output, study=ALL_STUDIES) + expand(
        rules.verify.output, study=verified_studies()
    )


def final_outputs(wildcards):
    """Every study's datasets, plots and verify reports (an input function: runs once all rules exist)."""
    targets = [
        *(rules.merge.output if config["merge"] else []),
        *rules.summarise.output,
    ]
    designs = [s for s in ALL_STUDIES if is_design(s)]
    grids = [s for s in ALL_STUDIES if not is_design(s)]
    # Without the merge, the part files are the study's results: targets themselves.
    parts = (
        []
        if config["merge"]
        else [f for s in ALL_STUDIES for f in part_files(study_wildcards(s))]
    )
    return (
        expand(targets, study=ALL_STUDIES)
        + expand(rules.plot.output, study=grids)
        + expand(rules.plot_design.output, study=designs)
        + expand(rules.verify.output, study=verified_studies())
        + rules.overview.output
        + parts
        # a target: its job runs whenever the config changes, also where nothing else would rerun
        + [current_marker(study_wildcards(s)) for s in ALL_STUDIES]
    )
