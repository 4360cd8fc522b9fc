# sensweep: `make run` (set-up + default studies), `make test` (set-up + tests).
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
# Rules call `python -m pipeline.*`: put the venv first on PATH for Snakemake's jobs.
export PATH := $(BIN):$(PATH)

.PHONY: help setup run test lint bench report clean

help: ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv with the locked dependencies and the package (idempotent)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

run: setup ## Run the default studies: snakemake --cores all, results in outputs/
	$(BIN)/snakemake --cores $(CORES)

test: setup ## Run the test suite (pytest)
	$(BIN)/python -m pytest

lint: setup ## ruff, snakefmt and snakemake --lint
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint

bench: setup ## Benchmarks: every method against the primal floor, outputs/bench/ (QUICK=1: a few minutes)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check 'jax>=0.4.20' \
		|| echo "JAX could not be installed: the bench runs without its JAX rows"
	$(BIN)/python -m benchmarks.methods $(if $(QUICK),--quick) --out outputs/bench

report: run ## HTML report of every study's plots: outputs/report.html
	$(BIN)/snakemake --report outputs/report.html

clean: ## Remove outputs/ (keeps .venv)
	rm -rf outputs/*/ .snakemake/
