# Everything a fresh machine needs: `make run` and `make test` create .venv and install.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
LINT_DIRS := $(wildcard src tests benchmarks examples)

.PHONY: run test lint typecheck unit test-faults bench clean pgbouncer

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

# PgBouncer for tests/test_pgbouncer.py (Debian's package): installed when missing if we are
# root; otherwise those tests skip (and fail under CI=true, as a missing server does).
pgbouncer:
	@if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "make: installing pgbouncer (apt-get install -y pgbouncer) for the PgBouncer tests"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null \
				|| { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null; }; \
		else \
			echo "make: pgbouncer is not installed and we are not root: its tests will skip"; \
		fi; \
	fi

unit: $(DEV_STAMP) pgbouncer
	$(BIN)/pytest -m "not faults"

# Slow fault tests (servers frozen, killed and restarted; bursts; overload); .ci/run runs both.
test-faults: $(DEV_STAMP) pgbouncer
	$(BIN)/pytest -m faults

test: lint typecheck unit

bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/bench_decisions.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
