# Developer and CI entry points. `make test` is what CI runs (through .ci/run).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLUSTER := bash scripts/cluster.sh
SOURCES := aiopeewee_dist tests examples

# Shared by `lint` and `test`; kept as text (not `$(MAKE) lint`) so that `make -n test` runs nothing.
LINT := $(BIN)/ruff check $(SOURCES) && \
	$(BIN)/ruff format --check $(SOURCES) && \
	$(BIN)/mypy --strict aiopeewee_dist

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1

.PHONY: help venv demo cluster-up cluster-down lint test

help:
	@echo "make demo          run examples/quickstart.py (SQLite, no server needed)"
	@echo "make test          start the local cluster, lint, run every test, stop the cluster"
	@echo "make lint          ruff check, ruff format --check, mypy --strict"
	@echo "make cluster-up    install (if missing) and start the PostgreSQL/MariaDB/PgBouncer topology"
	@echo "make cluster-down  stop it"
	@echo "make venv          create .venv and install the package with its dev extras"

# pip runs again only when pyproject.toml is newer than the stamp file.
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'
	touch $@

demo: venv
	$(BIN)/python examples/quickstart.py

cluster-up:
	$(CLUSTER) install
	$(CLUSTER) start

cluster-down:
	$(CLUSTER) stop

lint: venv
	$(LINT)

# The cluster is stopped whatever happened before it; the exit status is that of the first failure.
test: venv
	status=0; \
	{ $(CLUSTER) install && $(CLUSTER) start && \
	  $(LINT) && \
	  AIOPD_REQUIRE_CLUSTER=1 $(BIN)/pytest -q -p no:cacheprovider; } || status=$$?; \
	$(CLUSTER) stop || echo "warning: scripts/cluster.sh stop failed" >&2; \
	exit $$status
