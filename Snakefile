# sensweep: sweep a parameter C of y = f(x; C), compute dy/dC with batched forward-mode AD,
# store NetCDF, summarise, plot. Data flow, one rule per stage:
#   prepare (x) -> compute (one job per part of the sweep) -> merge -> summarise -> plot,
#   and verify (other methods on a sample of points) after merge. A two-stage study (sweep.screen)
#   runs all of this for its screening stage `<study>.screen` first; `screen` then writes what the
#   study's own design keeps. With `merge: false` in the
#   config, summarise, plot and verify read the parts directly and no sensitivity.nc is written.
# What each study computes is Hydra config (conf/); this file only wires the stages.
# Every path is quoted in the shell commands ({output:q}); `logged` (rules/common.smk) sends each
# job's output to its log.
import os

from snakemake.utils import min_version

min_version("8.0")


# One writer per NetCDF file, so HDF5's file locks protect nothing here; on cluster file systems
# without lock support they only fail. Jobs inherit this (SLURM exports the environment).
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


onsuccess:
    record_run()


# A check of a few attrs, and one page over the studies: on the submitting machine, not cluster jobs.
localrules:
    current,
    overview,


rule all:
    input:
        final_outputs,


rule prepare:
    output:
        f"{OUT}/{{study}}/inputs.nc",
    log:
        f"{OUT}/logs/{{study}}/prepare.log",
    benchmark:
        f"{OUT}/benchmarks/{{study}}/prepare.tsv"
    conda:
        "envs/sensweep.yaml"
    params:
        study=study_file,
        config=determining_config,
        overrides=study_overrides,
        conf=CONF_PARAM,
        output=lambda wildcards, output: hydra_quoted(output[0]),
    shell:
        logged(
            "SENSWEEP_CONF={params.conf:q} python -m pipeline.stages.prepare"
            " study={params.study} {params.overrides} output={params.output}"
        )


rule compute:
    input:
        x=rules.prepare.output,
        data=data_files,
        screened=screened_input,
    output:
        part_output(f"{OUT}/{{study}}/parts/{{part}}.nc"),
    log:
        f"{OUT}/logs/{{study}}/compute-{{part}}.log",
    benchmark:
        f"{OUT}/benchmarks/{{study}}/compute-{{part}}.tsv"
    conda:
        "envs/sensweep.yaml"
    threads: config["compute_threads"]
    resources:
        mem_mb=compute_mem_mb,
        gpu=compute_gpus,
    params:
        study=study_file,
        config=determining_config,
        overrides=overrides,
        conf=CONF_PARAM,
        inputs_file=lambda wildcards, input: hydra_quoted(input.x),
        output=lambda wildcards, output: hydra_quoted(output[0]),
    shell:
        logged(
            "SENSWEEP_CONF={params.conf:q} python -m pipeline.stages.compute"
            " study={params.study} {params.overrides} inputs_file={params.inputs_file}"
            " part={wildcards.part} threads={threads} output={params.output}"
        )


rule merge:
    input:
        part_files,
    output:
        f"{OUT}/{{study}}/sensitivity.nc",
    log:
        f"{OUT}/logs/{{study}}/merge.log",
    benchmark:
        f"{OUT}/benchmarks/{{study}}/merge.tsv"
    conda:
        "envs/sensweep.yaml"
    params:
        temporary="--temporary" if config["merge"] and not config["keep_parts"] else "",
    shell:
        logged(
            "python -m pipeline.stages.merge {output:q} {input:q} {params.temporary}"
        )


# Results that Snakemake takes as up to date but another config computed (a copied outputs folder,
# --rerun-triggers mtime) are refused here, before any stage reads them.
rule current:
    input:
        sensitivity_input,
    output:
        f"{OUT}/{{study}}/.current/{{confighash}}",
    log:
        f"{OUT}/logs/{{study}}/current-{{confighash}}.log",
    conda:
        "envs/sensweep.yaml"
    params:
        study=study_file,
        overrides=overrides,
        conf=CONF_PARAM,
    shell:
        logged(
            "SENSWEEP_CONF={params.conf:q} python -m pipeline.stages.current {input:q}"
            " --study {params.study} --marker {output:q} --overrides {params.overrides}"
        )


rule summarise:
    input:
        sensitivity=sensitivity_input,
        current=current_marker,
    output:
        nc=f"{OUT}/{{study}}/summary.nc",
        md=f"{OUT}/{{study}}/headline.md",
        html=report(
            f"{OUT}/{{study}}/headline.html",
            caption="report/headline.rst",
            category="{study}",
        ),
    log:
        f"{OUT}/logs/{{study}}/summarise.log",
    benchmark:
        f"{OUT}/benchmarks/{{study}}/summarise.tsv"
    conda:
        "envs/sensweep.yaml"
    shell:
        logged(
            "python -m pipeline.stages.summarise {input.sensitivity:q} --output {output.nc:q}"
            " --headline {output.md:q} --headline-html {output.html:q}"
        )


# A two-stage study (sweep.screen): what its design keeps, from its screening stage's summary.
rule screen:
    input:
        summary=f"{OUT}/{{study}}{SCREEN_SUFFIX}/summary.nc",
    output:
        yaml=f"{OUT}/{{study}}/screening.yaml",
        md=f"{OUT}/{{study}}/screening.md",
        html=report(
            f"{OUT}/{{study}}/screening.html",
            caption="report/screening.rst",
            category="{study}",
        ),
    log:
        f"{OUT}/logs/{{study}}/screen.log",
    benchmark:
        f"{OUT}/benchmarks/{{study}}/screen.tsv"
    conda:
        "envs/sensweep.yaml"
    params:
        config=determining_config,
        overrides=study_overrides,
        conf=CONF_PARAM,
    shell:
        logged(
            "SENSWEEP_CONF={params.conf:q} python -m pipeline.stages.screen {input.summary:q}"
            " --study {wildcards.study} --overrides {params.overrides} --output {output.yaml:q}"
            " --md {output.md:q} --html {output.html:q}"
        )


rule verify:
    input:
        sensitivity=sensitivity_input,
        current=current_marker,
    output:
        nc=f"{OUT}/{{study}}/verify.nc",
        md=f"{OUT}/{{study}}/verify.md",
        html=report(
            f"{OUT}/{{study}}/verify.html",
            caption="report/verify.rst",
            category="{study}",
        ),
        png=report(
            f"{OUT}/{{study}}/plots/{AGREEMENT_PLOT}",
            caption="report/method_agreement.rst",
            category="{study}",
        ),
    log:
        f"{OUT}/logs/{{study}}/verify.log",
    benchmark:
        f"{OUT}/benchmarks/{{study}}/verify.tsv"
    conda:
        "envs/sensweep.yaml"
    params:
        study=study_file,
        verify=verify_settings,
        overrides=overrides,
        conf=CONF_PARAM,
    shell:
        logged(
            "SENSWEEP_CONF={params.conf:q} python -m pipeline.stages.verify"
            " {input.sensitivity:q} --study {params.study} --nc {output.nc:q} --md"
            " {output.md:q} --html {output.html:q} --plot {output.png:q} --overrides {params.overrides}"
        )


rule plot:
    input:
        sensitivity=sensitivity_input,
        summary=rules.summarise.output.nc,
        current=current_marker,
    output:
        *[
            report(
                f"{OUT}/{{study}}/plots/{name}",
                caption=f"report/{name.removesuffix('.png')}.rst",
                category="{study}",
            )
            for name in PLOTS
        ],
    log:
        f"{OUT}/logs/{{study}}/plot.log",
    benchmark:
        f"{OUT}/benchmarks/{{study}}/plot.tsv"
    conda:
        "envs/sensweep.yaml"
    params:
        outdir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        logged(
            "python -m pipeline.stages.plot {input.sensitivity:q} --summary {input.summary:q}"
            " --outdir {params.outdir:q}"
        )


# A sampled design's plots (dy/dp and y at the points, parameters ranked by their bounds).
use rule plot as plot_design with:
    output:
        *[
            report(
                f"{OUT}/{{study}}/plots/{name}",
                caption=f"report/{name.removesuffix('.png')}.rst",
                category="{study}",
            )
            for name in DESIGN_PLOTS
        ],
    log:
        f"{OUT}/logs/{{study}}/plot_design.log",
    benchmark:
        f"{OUT}/benchmarks/{{study}}/plot_design.tsv"


# One page over every study (the report's first category): what each computed, what its checks
# and verify step found, its most important parameters; then each study's tables.
rule overview:
    input:
        overview_inputs,
    output:
        md=f"{OUT}/overview.md",
        html=report(
            f"{OUT}/overview.html",
            caption="report/overview.rst",
            category="overview",
        ),
    log:
        f"{OUT}/logs/overview.log",
    conda:
        "envs/sensweep.yaml"
    params:
        folders=lambda wildcards: [f"{OUT}/{s}" for s in ALL_STUDIES],
    shell:
        logged(
            "python -m pipeline.stages.overview {params.folders:q} --md {output.md:q}"
            " --html {output.html:q}"
        )
