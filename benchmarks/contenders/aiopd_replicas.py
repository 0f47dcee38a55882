"""aiopeewee_dist.Manager on the primary + 2 streaming replicas (reads round-robin on replicas)."""

from __future__ import annotations

from .. import settings
from .aiopd import Contender as Primary


class Contender(Primary):
    name = "aiopd_replicas"
    can_stream = False
    replicas = tuple(settings.url(port) for port in settings.REPLICA_PORTS)
