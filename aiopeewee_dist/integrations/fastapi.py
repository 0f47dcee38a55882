"""FastAPI (and any Starlette app): lifespan, dependencies and per-request routing.

::

    from fastapi import Depends, FastAPI
    from aiopeewee_dist import Manager
    from aiopeewee_dist.integrations.fastapi import ManagerDep, force_primary, setup

    manager = Manager.from_env()
    app = FastAPI()
    setup(app, manager)  # opens/closes the manager with the app, routes every request

    @app.get("/users/{name}")
    async def read_user(name: str, db: ManagerDep):  # GET: a replica
        return await db.get(User, name=name)

    @app.get("/balance", dependencies=[Depends(force_primary)])  # this GET: the primary
    async def balance(db: ManagerDep): ...

Per request (see :mod:`aiopeewee_dist.integrations._http`): GET/HEAD/OPTIONS read from
replicas, other methods run on the primary, and a request that wrote sends back a
read-your-writes token (header ``X-DB-Consistency`` and cookie ``aiopd_consistency`` by
default) that the client's next request returns, so it reads its own writes.

The middleware is a pure ASGI middleware: the routing context lives in ContextVars,
which only reach the endpoint when the middleware calls the app in the same task and
context (``BaseHTTPMiddleware`` runs the app in another task).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._manager import Manager
from ._http import (
    DEFAULT_COOKIE,
    DEFAULT_HEADER,
    DEFAULT_PRIMARY_HEADER,
    SAFE_METHODS,
    RequestScope,
    ScopeOptions,
    current_scope,
    opened_for_app,
    request_scope,
)

__all__ = [
    "SCOPE_KEY",
    "STATE_KEY",
    "DatabaseMiddleware",
    "ManagerDep",
    "force_primary",
    "get_manager",
    "get_scope",
    "lifespan",
    "metrics_route",
    "setup",
]

#: Key of the :class:`RequestScope` in the ASGI scope of a request.
SCOPE_KEY = "aiopeewee_dist"
#: Attribute of ``app.state`` holding the manager (set by :func:`lifespan` and :func:`setup`).
STATE_KEY = "aiopeewee_manager"


def lifespan(manager: Manager, *, connect: bool = True) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A lifespan for ``FastAPI(lifespan=...)`` that opens the manager and closes it at shutdown.

    ``connect=False`` skips the eager connect (pools then open on first use; useful when
    the database may not be up yet when the app starts). To combine with a lifespan of
    your own: ``async with lifespan(manager)(app): ...`` inside it.
    """

    @asynccontextmanager
    async def manager_lifespan(app: Any) -> AsyncIterator[None]:
        state = getattr(app, "state", None)
        if state is not None:
            setattr(state, STATE_KEY, manager)
        async with opened_for_app(manager, connect=connect):
            yield

    return manager_lifespan


class DatabaseMiddleware:
    """Pure ASGI middleware giving every HTTP request its own routing context.

    ``app.add_middleware(DatabaseMiddleware, manager=manager)``; keyword options as in
    :class:`~aiopeewee_dist.integrations._http.ScopeOptions` (``header``, ``cookie``,
    ``primary_header``, ``safe_methods``, ``cookie_*``), or a ready ``options=``.
    WebSocket and lifespan messages pass through untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        manager: Manager,
        *,
        header: str | None = DEFAULT_HEADER,
        cookie: str | None = DEFAULT_COOKIE,
        primary_header: str | None = DEFAULT_PRIMARY_HEADER,
        safe_methods: Iterable[str] = SAFE_METHODS,
        cookie_max_age: int | None = None,
        cookie_path: str = "/",
        cookie_secure: bool = False,
        cookie_httponly: bool = True,
        cookie_samesite: Literal["lax", "strict", "none"] | None = "lax",
        options: ScopeOptions | None = None,
    ) -> None:
        self.app = app
        self.manager = manager
        self.options = options or ScopeOptions(
            header=header,
            cookie=cookie,
            primary_header=primary_header,
            safe_methods=frozenset(safe_methods),
            cookie_max_age=cookie_max_age,
            cookie_path=cookie_path,
            cookie_secure=cookie_secure,
            cookie_httponly=cookie_httponly,
            cookie_samesite=cookie_samesite,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cookies = cookie_parser(headers.get("cookie", ""))
        with request_scope(
            self.manager, self.options, method=scope["method"], header=headers.get, cookie=cookies.get
        ) as state:
            scope[SCOPE_KEY] = state

            async def send_with_token(message: Message) -> None:
                # The token is read when the response starts: writes made after that
                # (a streaming body, background tasks) cannot be announced any more.
                if message["type"] == "http.response.start":
                    self._add_token(message, state)
                await send(message)

            await self.app(scope, receive, send_with_token)

    def _add_token(self, message: Message, state: RequestScope) -> None:
        token = state.response_token()
        if token is None:
            return
        response_headers = MutableHeaders(scope=message)
        if self.options.header:
            response_headers[self.options.header] = token
        if self.options.cookie:
            response_headers.append("set-cookie", self.options.set_cookie_header(self.manager, token))


def setup(app: FastAPI, manager: Manager, *, connect: bool = True, **options: Any) -> None:
    """Wire ``manager`` into ``app``: the middleware, ``app.state``, and the app's lifespan.

    The manager opens before the app's own lifespan runs (so it can create tables) and
    closes after it. ``options`` go to :class:`DatabaseMiddleware`. Call it before the
    app starts.
    """
    setattr(app.state, STATE_KEY, manager)
    app.add_middleware(DatabaseMiddleware, manager=manager, **options)
    inner = app.router.lifespan_context
    outer = lifespan(manager, connect=connect)

    @asynccontextmanager
    async def combined(app_: Any) -> AsyncIterator[Any]:
        async with outer(app_), inner(app_) as state:
            yield state

    app.router.lifespan_context = combined


def get_scope(request: Request) -> RequestScope | None:
    """The routing state the middleware gave this request (None without the middleware)."""
    found = request.scope.get(SCOPE_KEY)
    return found if isinstance(found, RequestScope) else current_scope()


async def get_manager(request: Request) -> Manager:
    """Dependency: the manager of this app (``db: Manager = Depends(get_manager)``)."""
    state = get_scope(request)
    if state is not None:
        return state.manager
    manager = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(manager, Manager):
        raise RuntimeError(
            "no aiopeewee_dist manager on this app: call setup(app, manager), use "
            "lifespan(manager), or add DatabaseMiddleware"
        )
    return manager


#: ``db: ManagerDep`` in an endpoint's signature gives the manager.
ManagerDep = Annotated[Manager, Depends(get_manager)]


async def force_primary(request: Request) -> AsyncIterator[None]:
    """Dependency sending every query of the endpoint to the primary, GETs included.

    ``@app.get("/me", dependencies=[Depends(force_primary)])``. It is an ``async``
    dependency on purpose: FastAPI runs plain ``def`` dependencies in a thread, whose
    context changes never reach the endpoint.
    """
    state = get_scope(request)
    if state is not None:
        with state.force_primary():
            yield
        return
    manager = await get_manager(request)
    with manager.primary():
        yield


def metrics_route(app: FastAPI, path: str = "/metrics", *, registry: Any = None) -> None:
    """Serve the Prometheus text format at ``path`` (``GET``; left out of the OpenAPI schema).

    The metrics are those of ``prometheus_client``'s registry (default: the global one), where
    the OpenTelemetry Prometheus exporter puts them: ``instrument(manager,
    meter_provider=prometheus_meter_provider())`` (see :mod:`aiopeewee_dist.telemetry`).
    """
    from fastapi import Response

    from ..telemetry import exposition

    async def metrics() -> Response:
        body, content_type = exposition(registry)
        return Response(content=body, media_type=content_type)

    app.add_api_route(path, metrics, methods=["GET"], include_in_schema=False)
