"""Driver adapters, imported lazily so only the installed drivers are needed."""

from __future__ import annotations

import importlib
from typing import cast

from .._errors import ConfigurationError
from ._base import Driver, Result, rooted

__all__ = ["Driver", "Result", "get_driver", "rooted"]

_ADAPTERS = {
    # backend: (module, class, pip extra, package the adapter needs)
    "psycopg": ("._psycopg", "PsycopgDriver", "postgresql", "psycopg"),
    "aiopg": ("._aiopg", "AiopgDriver", "aiopg", "aiopg"),
    "asyncpg": ("._asyncpg", "AsyncpgDriver", "asyncpg", "asyncpg"),
    "aiomysql": ("._aiomysql", "AiomysqlDriver", "mysql", "aiomysql"),
    "aiosqlite": ("._aiosqlite", "AiosqliteDriver", "sqlite", "aiosqlite"),
    # Needs nothing beyond the standard library's sqlite3 (see aiopeewee_dist.testing).
    "fake": ("._fake", "FakeDriver", "", "sqlite3"),
}
_instances: dict[str, Driver] = {}


def get_driver(backend: str) -> Driver:
    """The shared adapter for ``backend``; a clear error if its package is not installed."""
    driver = _instances.get(backend)
    if driver is not None:
        return driver
    try:
        module_name, class_name, extra, package = _ADAPTERS[backend]
    except KeyError:
        raise ConfigurationError(f"unknown backend {backend!r}") from None
    try:
        module = importlib.import_module(module_name, __name__)
    except ImportError as exc:
        raise ConfigurationError(
            f"backend {backend!r} needs the {package!r} package, which is not installed "
            f"(pip install 'aiopeewee-dist[{extra}]'): {exc}"
        ) from None
    driver = _instances[backend] = cast(Driver, getattr(module, class_name)())
    return driver
