# Everything a fresh machine needs: `make run` and `make test` create .venv and install.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
LINT_DIRS := $(wildcard src tests benchmarks examples)

.PHONY: run test test-faults lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP) $@

run: $(STAMP)
	$(BIN)/allowance serve --host 127.0.0.1 --port 8000 --store sqlite:///allowance.db

lint: $(DEV_STAMP)
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

unit: $(DEV_STAMP)
	$(BIN)/pytest -m "not faults"

test-faults: $(DEV_STAMP)
	$(BIN)/pytest -m faults

test: lint typecheck unit

bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/bench_decisions.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
