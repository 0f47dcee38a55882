# Developer and CI entry points. `make test` is what CI runs (through .ci/run).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLUSTER := bash scripts/cluster.sh
# The HA topologies (Patroni + etcd, Galera): tests/topology, stdlib only, so any python3 runs it.
HA := PYTHONPATH=tests $(PYTHON) -m topology
SOURCES := aiopeewee_dist tests examples scripts

# Shared by `lint` and `test`; kept as text (not `$(MAKE) lint`) so that `make -n test` runs nothing.
LINT := $(BIN)/ruff check $(SOURCES) && \
	$(BIN)/ruff format --check $(SOURCES) && \
	$(BIN)/mypy --strict aiopeewee_dist

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1

# The wheel and sdist as users get them: built, installed outside the checkout, smoke-run.
DIST_CHECK := $(BIN)/python scripts/check_dist.py

.PHONY: dist-check help venv demo conduit conduit-cluster cluster-up cluster-down ha-up ha-down lint test core coverage chaos soak bench compat docs

help:
	@echo "make demo          run examples/quickstart.py (SQLite, no server needed; installs only its needs)"
	@echo "make conduit       the RealWorld backend (examples/conduit) on SQLite, http://127.0.0.1:8000/api"
	@echo "make conduit-cluster  the same on the PostgreSQL primary + 2 replicas (DATABASE_URL, DATABASE_REPLICA_URLS)"
	@echo "make test          start the local cluster, lint, run every test, stop the cluster"
	@echo "make core          the serverless tests of the library's logic on 2 workers, with branch coverage"
	@echo "make coverage      branch coverage: the serverless tests alone (-m 'not cluster'), then the whole suite"
	@echo "make chaos         the fault scenarios of tests/chaos at full size, figures in .chaos/figures.json"
	@echo "make soak          mixed load with a fault every 30 s for SOAK_MINUTES (10); errors, p99, memory"
	@echo "make dist-check    build the wheel and sdist, install the wheel in a fresh venv, import and run it"
	@echo "make compat PEEWEE_ASYNC_SRC=DIR  peewee-async 2.1.0's own suite, plain and through Manager(url).database"
	@echo "make lint          ruff check, ruff format --check, mypy --strict"
	@echo "make docs          build the documentation site into site/ (mkdocs --strict: a broken link fails)"
	@echo "make cluster-up    install (if missing) and start the PostgreSQL/MariaDB/PgBouncer topology"
	@echo "make cluster-down  stop it"
	@echo "make ha-up         install (if missing) and start Patroni+etcd (PostgreSQL x3) and Galera (MariaDB x3)"
	@echo "make ha-down       stop them"
	@echo "make venv          create .venv and install the package with its dev extras"
	@echo "make bench         start the local cluster, benchmark every contender, write docs/benchmarks.md"
	@echo "                   (BENCH_QUICK=1 fast smoke, BENCH_ROUNDS=N, BENCH_CONTENDERS=a,b)"

# pip runs again only when pyproject.toml is newer than the stamp file.
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/pip || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'
	touch $@

demo: $(VENV)/.demo-installed
	PYTHONPATH="$(CURDIR)" $(BIN)/python examples/quickstart.py

# Only what the demo needs: the package's dependencies and its SQLite driver, read from
# pyproject.toml, with the package itself on PYTHONPATH. No developer tools, no build of the
# package, no pip inside the venv (the outer pip installs into it): creating a venv with pip
# and building the package took most of a minute on a loaded machine. (Python 3.10 has no
# tomllib: there the package is installed, editable, with its SQLite extra.)
DEMO_REQUIREMENTS = $(shell $(PYTHON) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print(" ".join(repr(r) for r in p["dependencies"] + p["optional-dependencies"]["sqlite"]))' 2>/dev/null || echo "-e .[sqlite]")

$(VENV)/.demo-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv --without-pip $(VENV)
	$(PYTHON) -m pip --python $(BIN)/python install -q $(DEMO_REQUIREMENTS)
	touch $@

# The RealWorld "Conduit" backend: FastAPI + aiopeewee_dist (examples/conduit). Ctrl-C stops it.
CONDUIT := $(BIN)/python -m uvicorn --app-dir examples --factory conduit.app:create_app --host 127.0.0.1 --port 8000

conduit: venv
	DATABASE_URL="$${DATABASE_URL:-sqlite:///conduit.db}" DATABASE_REPLICA_URLS="$${DATABASE_REPLICA_URLS:-}" $(CONDUIT)

# URLs from the environment; by default the local cluster's (make cluster-up) primary and standbys,
# with tables prefixed conduit_ there, so they never meet the test-suite's tables in that database.
conduit-cluster: venv
	eval "$$($(CLUSTER) env)" && \
	DATABASE_URL="$${DATABASE_URL:-$$AIOPD_PG_PRIMARY}" \
	DATABASE_REPLICA_URLS="$${DATABASE_REPLICA_URLS:-$$AIOPD_PG_REPLICA_1,$$AIOPD_PG_REPLICA_2}" \
	CONDUIT_TABLE_PREFIX="$${CONDUIT_TABLE_PREFIX-conduit_}" \
	$(CONDUIT)

cluster-up:
	$(CLUSTER) install
	$(CLUSTER) start

cluster-down:
	$(CLUSTER) stop

ha-up:
	$(HA) up ha

ha-down:
	$(HA) down ha

lint: venv
	$(LINT)

# The documentation site (mkdocs.yml). make test builds it too, in tests/test_docs_site.py, and
# opens every page in headless Chromium (scripts/install-chromium.sh).
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

dist-check: venv
	$(DIST_CHECK)

# The clusters are stopped whatever happened before; the exit status is that of the first failure.
# The HA topologies (Patroni, Galera) start in the background while the replication cluster starts
# and the linters run; pytest waits for them.
test: venv
	status=0; \
	{ $(HA) install ha && $(CLUSTER) install && bash scripts/install-chromium.sh && \
	  { $(HA) up ha & ha_up=$$!; } && $(CLUSTER) start && \
	  $(LINT) && $(DIST_CHECK) && wait $$ha_up && \
	  AIOPD_REQUIRE_CLUSTER=1 $(BIN)/pytest -q -p no:cacheprovider; } || status=$$?; \
	wait; \
	$(CLUSTER) stop || echo "warning: scripts/cluster.sh stop failed" >&2; \
	$(HA) down ha || echo "warning: the HA topologies did not stop" >&2; \
	exit $$status

# The library's own logic on fake servers and SQLite, on both cores, with its branch coverage:
# no server, no subprocess, no load scenario. (The pytest plugin is left out so that coverage
# starts before aiopeewee_dist is first imported.)
core: venv
	$(BIN)/pytest -q -p no:cacheprovider -p no:aiopeewee_dist -n 2 -m "not cluster and not slow and not plugin" $(COV)

# Branch coverage of aiopeewee_dist twice: the serverless tests alone (fake servers and SQLite,
# no cluster needed), then the whole suite with the cluster (started and stopped as for `test`).
COV := --cov=aiopeewee_dist --cov-branch --cov-report=term
coverage: venv
	status=0; \
	$(BIN)/pytest -q -p no:cacheprovider -m "not cluster" $(COV) --cov-report=html:.coverage-html/serverless \
	  || status=$$?; \
	{ $(HA) install ha && { $(HA) up ha & ha_up=$$!; } && \
	  $(CLUSTER) install && $(CLUSTER) start && wait $$ha_up && \
	  AIOPD_REQUIRE_CLUSTER=1 $(BIN)/pytest -q -p no:cacheprovider $(COV) --cov-report=html:.coverage-html/all; } \
	  || status=$$?; \
	wait; \
	$(CLUSTER) stop || echo "warning: scripts/cluster.sh stop failed" >&2; \
	$(HA) down ha || echo "warning: the HA topologies did not stop" >&2; \
	exit $$status

# The chaos scenarios at full size (make test runs them short). Same cluster handling as `test`.
chaos: venv
	status=0; \
	{ $(HA) install ha && { $(HA) up ha & ha_up=$$!; } && \
	  $(CLUSTER) install && $(CLUSTER) start && wait $$ha_up && \
	  AIOPD_CHAOS=full AIOPD_CHAOS_REPORT=.chaos/figures.json AIOPD_DIFF_REPORT=.chaos/differential.jsonl \
	  AIOPD_RYW_REPORT=.chaos/read-your-writes.json \
	  AIOPD_REQUIRE_CLUSTER=1 $(BIN)/pytest -q -p no:cacheprovider tests/chaos tests/test_differential.py tests/test_read_your_writes.py; } || status=$$?; \
	wait; \
	$(CLUSTER) stop || echo "warning: scripts/cluster.sh stop failed" >&2; \
	$(HA) down ha || echo "warning: the HA topologies did not stop" >&2; \
	exit $$status

SOAK_MINUTES ?= 10
soak: venv
	status=0; \
	{ $(CLUSTER) install && $(CLUSTER) start && \
	  $(BIN)/python tests/chaos/soak.py --minutes $(SOAK_MINUTES); } || status=$$?; \
	$(CLUSTER) stop || echo "warning: scripts/cluster.sh stop failed" >&2; \
	exit $$status

# peewee-async 2.1.0's own test suite, run on plain peewee-async and with its databases replaced by
# Manager(url).database, figures per backend (scripts/compat/run.py, docs/peewee-async.md). Not part
# of `make test`: it needs a checkout of the suite, outside this repository, e.g.
#   git clone --branch v2.1.0 --depth 1 https://github.com/05bit/peewee-async ../peewee-async-2.1.0
# COMPAT_ARGS: passed to run.py (e.g. --backends sqlite,psycopg -- -k transaction).
PEEWEE_ASYNC_SRC ?= ../peewee-async-2.1.0
COMPAT_ARGS ?=

compat: venv
	@test -f "$(PEEWEE_ASYNC_SRC)/tests/conftest.py" || { echo "PEEWEE_ASYNC_SRC=$(PEEWEE_ASYNC_SRC) is not a \
	peewee-async checkout: git clone --branch v2.1.0 --depth 1 https://github.com/05bit/peewee-async DIR, \
	then make compat PEEWEE_ASYNC_SRC=DIR" >&2; exit 2; }
	status=0; \
	{ $(CLUSTER) install && $(CLUSTER) start && \
	  $(BIN)/python scripts/compat/run.py --src "$(PEEWEE_ASYNC_SRC)" $(COMPAT_ARGS); } || status=$$?; \
	$(CLUSTER) stop || echo "warning: scripts/cluster.sh stop failed" >&2; \
	exit $$status

# Benchmarks (benchmarks/README.md): contenders get their own venvs under benchmarks/.venvs/, the
# orchestrator runs in benchmarks/.venvs/main. The cluster is left running (it may be shared).
# BENCH_QUICK=1: two contenders, tiny counts, results in benchmarks/.results/ only (docs untouched).
BENCH_VENV := benchmarks/.venvs/main/bin/python

bench:
	$(CLUSTER) install
	$(CLUSTER) start
	$(PYTHON) -m benchmarks.venvs
	if [ -n "$$BENCH_QUICK" ] && [ "$$BENCH_QUICK" != 0 ]; then \
	  $(BENCH_VENV) -m benchmarks.run; \
	else \
	  $(BENCH_VENV) -m benchmarks.run --docs; \
	fi
