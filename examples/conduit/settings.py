"""Configuration from environment variables (twelve-factor style), read once by ``create_app``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

# Long enough for HS256 (PyJWT warns about HMAC keys shorter than the hash). Development only:
# set CONDUIT_JWT_SECRET in any real deployment.
DEV_SECRET = "conduit-development-secret-do-not-use-in-production"


@dataclass(frozen=True)
class Settings:
    """Everything the backend reads from its environment."""

    #: ``DATABASE_URL``: the primary (default: ``conduit.db`` in the working directory).
    database_url: str = "sqlite:///conduit.db"
    #: ``DATABASE_REPLICA_URLS``: comma-separated read replicas.
    replica_urls: list[str] = field(default_factory=list)
    #: ``CONDUIT_JWT_SECRET``: HS256 key of the ``Authorization: Token <jwt>`` tokens.
    jwt_secret: str = DEV_SECRET
    #: ``CONDUIT_JWT_TTL``: token lifetime in seconds (default 30 days).
    jwt_ttl: int = 30 * 24 * 3600
    #: ``CONDUIT_TABLE_PREFIX``: prepended to every table name (tests use ``cx_``).
    table_prefix: str = ""
    #: ``CONDUIT_READ_YOUR_WRITES``: ``fresh`` (default) or ``causal``.
    read_your_writes: str = "fresh"
    #: ``CONDUIT_STICKY_SECONDS``: if set, at most this long after a write a client reads from the
    #: primary (unset: until a replica is proven to hold the write).
    sticky_seconds: float | None = None
    #: ``CONDUIT_CORS_ORIGINS``: comma-separated origins allowed to call the API ("*" = any).
    cors_origins: list[str] = field(default_factory=lambda: ["*"])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def items(name: str, default: str = "") -> list[str]:
            return [part.strip() for part in env.get(name, default).split(",") if part.strip()]

        return cls(
            database_url=env.get("DATABASE_URL") or cls.database_url,
            replica_urls=items("DATABASE_REPLICA_URLS"),
            jwt_secret=env.get("CONDUIT_JWT_SECRET") or DEV_SECRET,
            jwt_ttl=int(env.get("CONDUIT_JWT_TTL") or cls.jwt_ttl),
            table_prefix=env.get("CONDUIT_TABLE_PREFIX", ""),
            read_your_writes=env.get("CONDUIT_READ_YOUR_WRITES") or "fresh",
            sticky_seconds=float(sticky) if (sticky := env.get("CONDUIT_STICKY_SECONDS")) else None,
            cors_origins=items("CONDUIT_CORS_ORIGINS", "*"),
        )
