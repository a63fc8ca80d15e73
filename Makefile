# Everything a fresh machine needs: `make run` and `make test` create .venv and install.
# Installs take today's exact versions from constraints.txt (pyproject.toml has ranges);
# .venv-lowest has the lowest supported versions (constraints-lowest.txt) for unit-lowest.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
LOWEST_VENV ?= .venv-lowest
LOWEST_BIN := $(LOWEST_VENV)/bin
LOWEST_STAMP := $(LOWEST_VENV)/.installed
LINT_DIRS := $(wildcard src tests benchmarks examples tools)
# What unit-lowest runs: every store and driver path (memory, SQLite, Redis, Redis Cluster,
# Sentinel, PostgreSQL, PgBouncer; sync and async), the driver adapters' checks, the HTTP
# service with its uvicorn protocol, the FastAPI/ASGI guards and the CLI. Not the fault
# tests, nor schemathesis (a dev tool).
LOWEST_TESTS := tests/conformance tests/model/test_kernel_parity.py tests/test_redis_store.py \
	tests/test_redis_config.py tests/test_redis_sentinel.py tests/test_postgres_store.py \
	tests/test_pgbouncer.py tests/service tests/guards tests/cli tests/test_public_api.py \
	tests/test_extras.py tests/unit/test_driver_adapters.py

.PHONY: run test lint typecheck unit unit-lowest test-faults bench clean pgbouncer chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# make run serves over HTTP with SQLite: the server extra
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[server]'
	touch $@

$(DEV_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[all,dev,bench]'
	touch $(STAMP) $@

$(LOWEST_BIN)/python:
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_BIN)/python -m pip install --quiet --upgrade pip

$(LOWEST_STAMP): pyproject.toml constraints-lowest.txt | $(LOWEST_BIN)/python
	$(LOWEST_BIN)/pip install --quiet -c constraints-lowest.txt -e '.[all,test]'
	touch $@

# make run PORT=8005 HOST=0.0.0.0 STORE=redis://127.0.0.1:6379/0: any of the three (on the
# command line; not from the environment, where a shell may have set HOST to its hostname)
HOST = 127.0.0.1
PORT = 8000
STORE = sqlite:///allowance.db
run: $(STAMP)
	$(BIN)/allowance serve --host $(HOST) --port $(PORT) --store $(STORE)

lint: $(DEV_STAMP)
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

# A Debian package a test needs, installed when missing if we are root; otherwise those tests
# skip (and fail under CI=true, as a missing server does).
# $(call apt_install,TEST THAT IT IS THERE,PACKAGE,WHICH TESTS)
define apt_install
	@if ! { $(1); }; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "make: installing $(2) (apt-get install -y $(2)) for $(3)"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(2) >/dev/null \
				|| { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(2) >/dev/null; }; \
		else \
			echo "make: $(2) is not installed and we are not root: $(3) will skip"; \
		fi; \
	fi
endef

pgbouncer:  # tests/test_pgbouncer.py
	$(call apt_install,command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ],pgbouncer,the PgBouncer tests)

chromium:  # tests/browser: Debian's chromium, never a browser build Playwright downloads
	$(call apt_install,[ -x /usr/bin/chromium ],chromium,the browser tests)

unit: $(DEV_STAMP) pgbouncer chromium
	$(BIN)/pytest -m "not faults"

# The store, driver and service tests once more on the lowest supported dependencies.
unit-lowest: $(LOWEST_STAMP) pgbouncer
	$(LOWEST_BIN)/pytest -m "not faults" --ignore tests/service/test_schemathesis.py $(LOWEST_TESTS)

# Slow fault tests (servers frozen, killed and restarted; bursts; overload); .ci/run runs both.
test-faults: $(DEV_STAMP) pgbouncer
	$(BIN)/pytest -m faults

test: lint typecheck unit unit-lowest

bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/bench_decisions.py

clean:
	rm -rf $(VENV) $(LOWEST_VENV) .mypy_cache .pytest_cache .ruff_cache
