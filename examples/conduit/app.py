"""The application factory: ``uvicorn --app-dir examples --factory conduit.app:create_app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from aiopeewee_dist import Manager
from aiopeewee_dist.integrations import DEFAULT_HEADER
from aiopeewee_dist.integrations.fastapi import setup

from . import errors
from .api import router
from .models import MODELS, use_table_prefix
from .settings import Settings


def make_manager(settings: Settings) -> Manager:
    """The manager the settings describe: a primary, its replicas, read-your-writes."""
    return Manager(
        settings.database_url,
        settings.replica_urls,
        read_your_writes=settings.read_your_writes,  # type: ignore[arg-type]
        sticky_seconds=settings.sticky_seconds,
        causal_wait=0.5,
        acquire_timeout=5.0,
    )


async def create_tables(manager: Manager) -> None:
    """``CREATE TABLE IF NOT EXISTS`` for every model, on the primary."""
    await manager.create_tables(MODELS)


def create_app(settings: Settings | None = None, manager: Manager | None = None) -> FastAPI:
    """A Conduit backend on ``settings`` (default: from the environment)."""
    settings = settings or Settings.from_env()
    use_table_prefix(settings.table_prefix)
    manager = manager or make_manager(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await create_tables(manager)  # the manager is open here: setup() wraps this lifespan
        yield

    app = FastAPI(title="Conduit (aiopeewee_dist)", version="1.1.0", lifespan=lifespan)
    app.state.conduit_settings = settings
    # Per request: GETs on replicas, the rest on the primary, and the read-your-writes token in
    # the X-DB-Consistency header and the aiopd_consistency cookie.
    setup(app, manager)
    # Added after setup(), so outside it: preflight requests never touch the database.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=[DEFAULT_HEADER],  # browsers' scripts may read and resend the token
    )
    errors.install(app)
    app.include_router(router)
    return app
