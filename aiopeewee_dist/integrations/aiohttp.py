"""aiohttp.web: open/close the manager with the app and route every request.

::

    from aiohttp import web
    from aiopeewee_dist import Manager
    from aiopeewee_dist.integrations.aiohttp import force_primary, get_manager, setup

    manager = Manager.from_env()
    app = web.Application()
    setup(app, manager)  # cleanup_ctx (connect at startup, close at cleanup) + middleware

    async def read_user(request: web.Request) -> web.Response:  # GET: a replica
        user = await get_manager(request).get(User, name=request.match_info["name"])
        ...

    @force_primary  # this GET reads from the primary
    async def balance(request: web.Request) -> web.Response: ...

Per request (see :mod:`aiopeewee_dist.integrations._http`): GET/HEAD/OPTIONS read from
replicas, other methods run on the primary, and a request that wrote sends back a
read-your-writes token (header ``X-DB-Consistency`` and cookie ``aiopd_consistency`` by
default) that the client's next request returns, so it reads its own writes.
aiohttp runs a middleware and its handler in one task, so the routing context set by
the middleware reaches the handler.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from .._manager import Manager
from ._http import RequestScope, ScopeOptions, current_scope, opened_for_app, request_scope

__all__ = ["MANAGER_KEY", "force_primary", "get_manager", "get_scope", "metrics_route", "middleware", "setup"]

#: ``app[MANAGER_KEY]``: the manager :func:`setup` installed.
MANAGER_KEY: web.AppKey[Manager] = web.AppKey("aiopeewee_dist_manager", Manager)

_RequestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup(
    app: web.Application,
    manager: Manager,
    *,
    connect: bool = True,
    options: ScopeOptions | None = None,
    **scope_options: Any,
) -> None:
    """Install ``manager`` on ``app``: ``app[MANAGER_KEY]``, a ``cleanup_ctx`` entry that
    connects at startup (unless ``connect=False``) and closes at cleanup, and the
    per-request :func:`middleware` (``scope_options`` or ``options`` configure it).

    Call it before adding cleanup contexts that use the database, so those run inside.
    """
    app[MANAGER_KEY] = manager

    async def manager_context(app_: web.Application) -> AsyncIterator[None]:
        async with opened_for_app(manager, connect=connect):
            yield

    app.cleanup_ctx.append(manager_context)
    app.middlewares.append(middleware(manager, options=options, **scope_options))


def middleware(manager: Manager, *, options: ScopeOptions | None = None, **scope_options: Any) -> Middleware:
    """The per-request routing middleware alone (``setup`` adds it for you).

    Keyword options as in :class:`~aiopeewee_dist.integrations._http.ScopeOptions`.
    The token is added to the response the handler returns or raises (``web.HTTPException``);
    a response the handler already prepared (streamed) has sent its headers and gets none.
    """
    opts = options or ScopeOptions(**scope_options)

    def add_token(response: web.StreamResponse, state: RequestScope) -> None:
        token = state.response_token()
        if token is None or response.prepared:
            return
        if opts.header:
            response.headers[opts.header] = token
        if opts.cookie:
            response.headers.add("Set-Cookie", opts.set_cookie_header(manager, token))

    @web.middleware
    async def aiopeewee_dist_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        with request_scope(
            manager, opts, method=request.method, header=request.headers.get, cookie=request.cookies.get
        ) as state:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # raised responses (redirects, 4xx) are responses too
                add_token(exc, state)
                raise
            add_token(response, state)
            return response

    return aiopeewee_dist_middleware


def get_manager(request: web.Request) -> Manager:
    """The manager :func:`setup` installed on this app (or on a parent of this sub-app)."""
    return request.config_dict[MANAGER_KEY]


def get_scope() -> RequestScope | None:
    """The routing state of the request being handled (None outside the middleware)."""
    return current_scope()


def force_primary(handler: _RequestHandler) -> _RequestHandler:
    """Decorator: every query of this handler goes to the primary, GETs included."""

    @functools.wraps(handler)
    async def on_primary(request: web.Request) -> web.StreamResponse:
        state = current_scope()
        context = state.force_primary() if state is not None else get_manager(request).primary()
        with context:
            return await handler(request)

    return on_primary


def metrics_route(app: web.Application, path: str = "/metrics", *, registry: Any = None) -> None:
    """Serve the Prometheus text format at ``path`` (``GET``), from ``prometheus_client``'s
    registry (default: the global one; see :mod:`aiopeewee_dist.telemetry`)."""
    from ..telemetry import exposition

    async def metrics(request: web.Request) -> web.Response:
        body, content_type = exposition(registry)
        # aiohttp wants the charset apart from the media type.
        media_type, _, charset = content_type.partition("; charset=")
        return web.Response(body=body, content_type=media_type, charset=charset or None)

    app.router.add_get(path, metrics)
