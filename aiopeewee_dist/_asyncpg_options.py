"""URL query parameters of the asyncpg backend (``postgresql+asyncpg://``), checked and converted.

A leaf module: ``_url`` validates these while parsing a URL, without importing asyncpg.

- ``statement_cache_size`` (integer 0-10000, default 100): asyncpg's per-connection cache of
  prepared statements. ``0`` turns prepared statements off: asyncpg then uses only the unnamed
  statement, which is what a transaction-mode pooler needs (PgBouncer before 1.21, or 1.21+
  without ``max_prepared_statements``, hands a session's named statements to other clients).
- ``application_name``: the session's ``application_name``.
- ``sslmode``: ``disable``, ``allow``, ``prefer``, ``require``, ``verify-ca`` or ``verify-full``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._errors import ConfigurationError

__all__ = ["ASYNCPG_OPTIONS", "asyncpg_connect_kwargs", "asyncpg_option"]

#: Query parameters accepted by the asyncpg backend.
ASYNCPG_OPTIONS: frozenset[str] = frozenset({"statement_cache_size", "application_name", "sslmode"})
#: asyncpg's own default; an upper bound keeps a typo from pinning thousands of plans per connection.
DEFAULT_STATEMENT_CACHE_SIZE = 100
MAX_STATEMENT_CACHE_SIZE = 10_000
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def asyncpg_option(key: str, value: str) -> object:
    """Check one query parameter of an asyncpg URL; return its converted value."""
    if key not in ASYNCPG_OPTIONS:
        raise ConfigurationError(
            f"URL query parameter {key!r} is not an option for backend 'asyncpg'"
            f" (expected one of: {', '.join(sorted(ASYNCPG_OPTIONS))})"
        )
    if key == "statement_cache_size":
        if not re.fullmatch(r"[0-9]{1,6}", value) or int(value) > MAX_STATEMENT_CACHE_SIZE:
            raise ConfigurationError(
                f"statement_cache_size must be an integer from 0 to {MAX_STATEMENT_CACHE_SIZE}"
                " (0 turns prepared statements off, e.g. behind PgBouncer in transaction mode),"
                f" got {value!r}"
            )
        return int(value)
    if key == "sslmode" and value not in _SSLMODES:
        raise ConfigurationError(f"sslmode must be one of {', '.join(_SSLMODES)}; got {value!r}")
    return value


def asyncpg_connect_kwargs(base: Mapping[str, Any], options: Mapping[str, object]) -> dict[str, Any]:
    """``asyncpg.connect()`` keywords from the URL's host/port/user/password/database and options."""
    kwargs = dict(base)
    kwargs["statement_cache_size"] = options.get("statement_cache_size", DEFAULT_STATEMENT_CACHE_SIZE)
    if "application_name" in options:
        kwargs["server_settings"] = {"application_name": options["application_name"]}
    if "sslmode" in options:
        kwargs["ssl"] = options["sslmode"]
    return kwargs
