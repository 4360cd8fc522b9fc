# Shared by every rule: config validation, the studies to run, and input functions.
import shlex

from snakemake.utils import validate

from pipeline.config import ConfigError, compose_job, study_names, to_yaml

validate(config, schema="../conf/workflow.schema.yaml")

OUT = config["outputs"]


def _selected_studies():
    studies = config["studies"]
    if isinstance(studies, str):
        studies = [s.strip() for s in studies.split(",") if s.strip()]
    unknown = sorted(set(studies) - set(study_names()))
    if unknown:
        raise ConfigError(
            f"unknown studies {unknown} in config 'studies': valid studies are {', '.join(study_names())}"
        )
    return list(dict.fromkeys(studies))


STUDIES = _selected_studies()
# Each study's Hydra config, composed and validated once, before any job runs.
JOBS = {s: compose_job(s, config["overrides"].get(s, [])) for s in STUDIES}


wildcard_constraints:
    study="|".join(STUDIES),
    part=r"\d+",


def overrides(wildcards):
    """The study's extra Hydra overrides, quoted for the shell."""
    return shlex.join(config["overrides"].get(wildcards.study, []))


def resolved_config(wildcards):
    """The study's resolved config: a param, so that changing it reruns that study only."""
    return to_yaml(JOBS[wildcards.study])


def part_files(wildcards):
    parts = JOBS[wildcards.study].sweep.parts
    return [f"{OUT}/{wildcards.study}/parts/{i}.nc" for i in range(parts)]


def sensitivity_input(wildcards):
    """What the analysis rules read: sensitivity.nc, or the part files themselves (merge: false)."""
    if config["merge"]:
        return f"{OUT}/{wildcards.study}/sensitivity.nc"
    return part_files(wildcards)


def sensitivity_arg(wildcards):
    """The path the analysis scripts open: sensitivity.nc or the parts/ folder."""
    return f"{OUT}/{wildcards.study}/" + (
        "sensitivity.nc" if config["merge"] else "parts"
    )


def compute_mem_mb(wildcards):
    """Memory to reserve for one compute job: twice its budget plus 1 GiB, or 4 GiB (auto budget)."""
    budget = JOBS[wildcards.study].method.max_memory_mb
    return 2 * budget + 1024 if budget else 4096


def compute_gpus(wildcards):
    return 1 if JOBS[wildcards.study].device.startswith("cuda") else 0


def final_outputs(wildcards):
    """Every study's datasets, plots and verify reports (an input function: runs once all rules exist)."""
    targets = [
        *(rules.merge.output if config["merge"] else []),
        *rules.summarise.output,
        *rules.plot.output,
    ]
    verified = [s for s in STUDIES if JOBS[s].verify.enabled]
    return expand(targets, study=STUDIES) + expand(rules.verify.output, study=verified)
