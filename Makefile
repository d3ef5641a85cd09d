# `make run` and `make test` bootstrap everything they need: a .venv, the package, and the dataset.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FMNIST := $(VENV)/bin/fmnist
STAMP := $(VENV)/.installed
OUT ?= runs/latest

.PHONY: help run test test-fast lint format data browser postgres bench notebooks docs docs-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and exactly (constraints.txt): the CPU build on local disk, never a CUDA build from the index.
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

data: $(STAMP)  ## find the dataset, or install / download it
	@FMNIST=$(FMNIST) sh scripts/ensure-data.sh

browser:  ## install Debian's chromium + chromium-driver for the browser test (as root with apt; else skipped)
	@sh scripts/ensure-browser.sh

postgres:  ## install Debian's postgresql for the tuning study test (as root with apt; else skipped)
	@sh scripts/ensure-postgres.sh

run: data  ## the main job: train and compare the five models; report in $(OUT)/report.html
	$(FMNIST) compare --out $(OUT)

# One test worker per usable CPU, each on one thread (tests/conftest.py); a test file stays on one worker.
PYTEST := $(PY) -m pytest --numprocesses $(shell nproc) --dist loadfile

test: data browser postgres lint docs-check  ## lint, the docs build, then the whole test suite
	$(PYTEST)

test-fast: data  ## the tests not marked slow (no end-to-end runs on real data, no subprocesses)
	$(PYTEST) -m "not slow"

lint: $(STAMP)  ## ruff lint and format check; mypy on the typed modules ([tool.mypy] in pyproject.toml)
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/mypy

format: $(STAMP)  ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix src tests bench scripts
	$(VENV)/bin/ruff format src tests bench scripts

bench: data  ## run every benchmark in bench/ (slow; bench_serve serves $(OUT)/cnn, written by make run)
	for b in bench/bench_*.py; do [ $$b = bench/bench_serve.py ] || $(PY) $$b || exit 1; done
	$(PY) bench/bench_serve.py $(OUT)/cnn

notebooks: data  ## run notebooks/ on the full data; executed copies with figures (.ipynb, .html) in runs/notebooks/
	$(PY) scripts/run_notebooks.py --out runs/notebooks

docs: $(STAMP)  ## the documentation site in site/ (generated tables and CLI reference first; open site/index.html)
	$(PY) scripts/gen_docs.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

docs-check: $(STAMP)  ## fail if a generated part of README.md or docs/ is stale, or the site does not build --strict
	$(PY) scripts/gen_docs.py --check
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

clean:  ## remove the venv and caches (keeps runs/)
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info site
