"""Raw psycopg 3 configured like aiopeewee_dist's driver: AsyncClientCursor (client-side
binding), no prepared statements. Separates the driver mode's cost from the library's."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from .. import settings
from .psycopg_raw import Contender as Raw


class Contender(Raw):
    name = "psycopg_client"
    can_stream = False  # its stream would be psycopg's server-side cursor again

    async def open(self) -> None:
        self.pool: Any = AsyncConnectionPool(
            settings.conninfo(),
            min_size=1,
            max_size=settings.POOL_MAX_SIZE,
            kwargs={
                "autocommit": True,
                "prepare_threshold": None,
                "cursor_factory": psycopg.AsyncClientCursor,
            },
            open=False,
        )
        await self.pool.open(wait=True)
