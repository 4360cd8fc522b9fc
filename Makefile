# sensweep: `make run` (set-up + default studies), `make test` (set-up + lint + tests).
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
# Rules call `python -m pipeline.*`: put the venv first on PATH for Snakemake's jobs.
export PATH := $(BIN):$(PATH)

.PHONY: help setup run test check unit lint format bench report lock clean

help: ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv with the locked dependencies and the package (idempotent)

$(STAMP): requirements.lock lock-pins.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r lock-pins.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

run: setup ## Run the default studies: snakemake --cores all, results in outputs/
	$(BIN)/snakemake --cores $(CORES)

test: setup lint ## Lint, then the whole test suite (what CI runs)
	$(BIN)/python -m pytest

check: setup lint ## The fast tier: lint and the tests not marked slow (no SLURM, no workflow runs)
	$(BIN)/python -m pytest -m "not slow" -q

unit: setup ## The inner loop, under a minute: the tests not marked slow or integration, no lint
	$(BIN)/python -m pytest -m "not slow and not integration" -q

lint: setup ## ruff (lint and format), snakefmt, snakemake --lint on .test/config.yaml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --configfile .test/config.yaml --lint

format: setup ## Format the code (ruff, snakefmt)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/snakefmt .

bench: setup ## Benchmarks: every method against the primal floor, outputs/bench/ (QUICK=1: a few minutes)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check 'jax>=0.4.20' \
		|| echo "JAX could not be installed: the bench runs without its JAX rows"
	$(BIN)/python -m benchmarks.methods $(if $(QUICK),--quick) --out outputs/bench
	$(BIN)/python -m benchmarks.designs --out outputs/bench
	$(BIN)/python -m benchmarks.directions --out outputs/bench
	$(BIN)/python -m benchmarks.workflow --out outputs/bench
	$(BIN)/python -m benchmarks.streaming $(if $(QUICK),--quick) --out outputs/bench

report: run ## HTML report of every study's plots: outputs/report.html
	$(BIN)/snakemake --report outputs/report.html

# The lock holds every package but torch, with hashes; torch's build differs by machine (a CPU
# wheel here, CUDA elsewhere), so lock-pins.txt pins its version alone and it is taken out here.
lock: setup ## Regenerate requirements.lock from pyproject.toml and lock-pins.txt (with hashes)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check pip-tools==7.6.2
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-options \
		--extra dev --extra slurm -c lock-pins.txt -o requirements.lock pyproject.toml
	$(BIN)/python -c "import pathlib, re; p = pathlib.Path('requirements.lock'); \
		p.write_text('# torch: pinned in lock-pins.txt (its build differs by machine), taken out by make lock.\n' \
		+ re.sub(r'(?m)^torch==.*\n(?:    .*\n)*', '', p.read_text()))"

clean: ## Remove outputs/ (keeps .venv)
	rm -rf outputs/*/ .snakemake/
