"""pytest plugin: peewee-async 2.1.0's own suite on this project's servers (`make compat`).

Loaded by ``scripts/compat/run.py`` with ``-p``; configured by environment variables:

- ``AIOPD_COMPAT_MODE``: ``plain`` runs the suite as it is, with peewee-async's database classes
  pointed at the local cluster's primaries; ``manager`` replaces every database the suite builds
  with ``Manager(url).database`` (same servers).
- ``AIOPD_COMPAT_SRC``: the peewee-async checkout; ``AIOPD_COMPAT_REPORT``: where to write the
  per-test outcomes (JSON); ``AIOPD_PG_PRIMARY`` / ``AIOPD_MY_PRIMARY``: the servers
  (``scripts/cluster.sh env``).

How the suite builds databases: its ``tests/conftest.py`` calls ``DB_CLASSES[name](**DB_DEFAULTS[name])``
from ``tests/db_config.py`` (names ``aiopg-pool``, ``psycopg-pool``, ``mysql-pool``,
``sqlite-pool``), and two tests call ``DB_CLASSES`` directly. Both dicts are shared module
objects, so this plugin fills in the servers and, in manager mode, swaps each class for a
factory returning ``Manager(url).database``, before any test module is imported.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

MODE = os.environ.get("AIOPD_COMPAT_MODE", "plain")
NAMES = {"aiopg-pool": "aiopg", "psycopg-pool": "psycopg", "mysql-pool": "mysql", "sqlite-pool": "sqlite"}

# Tests that assert peewee-async's private internals rather than behaviour, skipped in manager
# mode only (plain mode runs them all). Keep in step with docs/peewee-async.md.
EXCLUDED: dict[str, str] = {
    "test_database.py::test_mysql_params": (
        "asserts the private attributes of peewee-async's aiomysql pool "
        "(db.pool_backend.pool._recycle, .minsize, .maxsize); the manager's pool is its own"
    ),
    "test_database.py::test_pg_ext_json_hstore__params": (
        "asserts the private attributes of peewee-async's aiopg pool "
        "(db.pool_backend.pool._enable_json, ._timeout, ._recycle, ...); the manager's pool is its own"
    ),
    "test_database.py::test_psycopg__params": (
        "asserts the attributes of peewee-async's psycopg_pool object "
        "(db.pool_backend.pool.min_size, .max_lifetime); the manager's pool is its own"
    ),
    "test_database.py::test_deferred_init": (
        "constructs peewee-async's database classes unconfigured, DB_CLASSES[name](None), then calls "
        "init(): a manager's database only exists configured; defer by creating the Manager later, "
        "or bind models to a peewee.DatabaseProxy (test_proxy_database runs)"
    ),
    "test_database.py::test_nested_connection": (
        "asserts peewee-async's module-level connection_context ContextVar, which the manager "
        "deliberately never writes: that one slot shared by every database object is what sends a "
        "query for one server down another server's connection; the connection reuse it also checks "
        "is tested by tests/test_peewee_async_compat.py"
    ),
    "test_transaction.py::test_transaction_error_on_begin": (
        "mocks peewee_async.Transaction.begin: aio_atomic()/aio_transaction() on the manager are the "
        "manager's node-pinned transactions, not peewee_async.Transaction objects"
    ),
    "test_transaction.py::test_transaction_error_on_commit": (
        "mocks peewee_async.Transaction.commit (same reason as test_transaction_error_on_begin)"
    ),
    "test_transaction.py::test_transaction_error_on_rollback": (
        "mocks peewee_async.Transaction.rollback (same reason as test_transaction_error_on_begin)"
    ),
}


def _urls() -> dict[str, str]:
    pg, my = os.environ["AIOPD_PG_PRIMARY"], os.environ["AIOPD_MY_PRIMARY"]
    return {
        "psycopg-pool": pg,
        "aiopg-pool": pg.replace("postgresql://", "postgresql+aiopg://", 1),
        "mysql-pool": my,
        "sqlite-pool": "sqlite:///test.sqlite",  # relative: the run's scratch directory
    }


def _point_at_cluster(defaults: dict[str, dict[str, Any]]) -> None:
    for name, url in _urls().items():
        if name == "sqlite-pool":
            continue
        parsed = urlsplit(url)
        defaults[name].update(
            database=unquote(parsed.path.lstrip("/")),
            host=parsed.hostname,
            port=parsed.port,
            user=unquote(parsed.username or ""),
            password=unquote(parsed.password or ""),
        )


def _escape_psycopg_dsn() -> None:
    """Percent-encode the user and password in peewee-async's psycopg DSN.

    peewee-async formats it as ``user:password@host`` without escaping, so the cluster's test
    password (``p@ss:w/rd 1``, chosen to exercise escaping) cannot connect; the same parameters
    also open ``allow_sync()``'s psycopg connection as keywords, unescaped. libpq
    percent-decodes a URI, so encoding in the DSN alone makes both work. The only change made
    to peewee-async in either mode.
    """
    import peewee_async.pool

    plain = peewee_async.pool.format_dsn

    def format_dsn(protocol: str, host: str, port: Any, user: str, password: str, path: str = "") -> str:
        return plain(protocol, host, port, quote(user, safe=""), quote(password, safe=""), path)

    peewee_async.pool.format_dsn = format_dsn


def _manager_factory(url: str) -> Callable[..., Any]:
    from aiopeewee_dist import Manager

    def build(database: Any = None, **_params: Any) -> Any:
        if database is None:
            raise TypeError("Manager(url).database has no deferred form")
        # The suite's pools hold up to 5 connections; the same here.
        return Manager(url, max_size=5).database

    return build


def pytest_configure(config: pytest.Config) -> None:
    sys.path.insert(0, os.environ["AIOPD_COMPAT_SRC"])
    from tests import db_config  # peewee-async's, shared with its conftest and tests

    _point_at_cluster(db_config.DB_DEFAULTS)
    _escape_psycopg_dsn()
    if MODE == "manager":
        for name, url in _urls().items():
            db_config.DB_CLASSES[name] = _manager_factory(url)
    config.stash[_OUTCOMES] = {}
    config.stash[_BACKENDS] = {}


_OUTCOMES = pytest.StashKey[dict[str, str]]()
_BACKENDS = pytest.StashKey[dict[str, str]]()


def _backend_of(item: pytest.Item) -> str:
    params = getattr(getattr(item, "callspec", None), "params", {})
    for key in ("db", "db_name"):
        if key in params:
            return NAMES[params[key]]
    if "db_cls" in params:
        from tests import db_config

        for name, cls in db_config.DB_CLASSES.items():
            if cls is params["db_cls"]:
                return NAMES[name]
    return "none"


def _excluded(item: pytest.Item) -> str | None:
    key = f"{item.path.name}::{getattr(item, 'originalname', item.name)}"
    return EXCLUDED.get(key) if MODE == "manager" else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = set(filter(None, os.environ.get("AIOPD_COMPAT_BACKENDS", "").split(",")))
    kept, dropped = [], []
    for item in items:
        backend = _backend_of(item)
        if wanted and backend not in wanted:
            dropped.append(item)
            continue
        config.stash[_BACKENDS][item.nodeid] = backend
        reason = _excluded(item)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"excluded: {reason}"))
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    outcomes = _CONFIG[0].stash[_OUTCOMES]
    if report.failed:
        outcomes[report.nodeid] = "failed"
    elif report.skipped and report.when == "setup":
        outcomes[report.nodeid] = "excluded" if "excluded:" in str(report.longrepr) else "skipped"
    elif report.passed and report.when == "call":
        outcomes.setdefault(report.nodeid, "passed")


_CONFIG: list[pytest.Config] = []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG.append(session.config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    backends = config.stash[_BACKENDS]
    rows = [
        {"test": nodeid, "backend": backends.get(nodeid, "none"), "outcome": outcome}
        for nodeid, outcome in config.stash[_OUTCOMES].items()
    ]
    with open(os.environ["AIOPD_COMPAT_REPORT"], "w") as out:
        json.dump({"mode": MODE, "tests": rows, "excluded": EXCLUDED}, out, indent=1)
