"""aiopeewee_dist.Manager on the primary only through its asyncpg driver (statement cache on)."""

from __future__ import annotations

from .aiopd import Contender as Primary


class Contender(Primary):
    name = "aiopd_asyncpg"
    scheme = "postgresql+asyncpg"
