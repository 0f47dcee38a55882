"""aiopeewee_dist.Manager on the primary only through its aiopg driver."""

from __future__ import annotations

from .aiopd import Contender as Primary


class Contender(Primary):
    name = "aiopd_aiopg"
    scheme = "postgresql+aiopg"
