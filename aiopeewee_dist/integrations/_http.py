"""Per-request routing shared by the web integrations (no web framework imported here).

Every HTTP request gets its own routing context:

- a fresh read-your-writes session (:meth:`Manager.consistency`), continued from the
  token the client sent back (header first, then cookie), so that a client's read after
  its own write sees the write even when it lands on another request, process or server;
- safe methods (GET, HEAD, OPTIONS, TRACE) are routed normally (reads to replicas); any
  other method runs entirely inside :meth:`Manager.primary`, so the reads a write request
  makes (validation, "does it exist", the response body) see the primary's current data;
- a client may ask for the primary with a header (``X-DB-Primary: 1``), unless the app
  turned that header off.

After the request, if it wrote, the session's new token is sent back in the response
header and/or cookie so the client carries it to its next request.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, unquote

from .._consistency import Session
from .._errors import ConfigurationError
from .._manager import Manager

__all__ = [
    "DEFAULT_COOKIE",
    "DEFAULT_HEADER",
    "DEFAULT_PRIMARY_HEADER",
    "SAFE_METHODS",
    "RequestScope",
    "ScopeOptions",
    "current_scope",
    "opened_for_app",
    "request_scope",
]

logger = logging.getLogger("aiopeewee_dist.integrations")

DEFAULT_HEADER = "X-DB-Consistency"
DEFAULT_COOKIE = "aiopd_consistency"
DEFAULT_PRIMARY_HEADER = "X-DB-Primary"
#: Methods that must not change data (RFC 9110 "safe"): their reads may go to replicas.
SAFE_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_TRUTHY = frozenset({"1", "true", "yes", "on"})
#: Fresh mode's cookie lifetime; renewed while the write is unproven on some replica.
FRESH_COOKIE_MAX_AGE = 3600


@dataclass(frozen=True)
class ScopeOptions:
    """How the per-request routing reads and writes its state. ``None`` turns a channel off.

    - ``header``: request/response header carrying the consistency token;
    - ``cookie``: cookie carrying it (set only on responses to requests that wrote);
    - ``primary_header``: a request header whose truthy value (``1``, ``true``, ``yes``,
      ``on``) sends every query of the request to the primary; ``None`` ignores it (do that
      when clients are not trusted to add load to the primary);
    - ``safe_methods``: methods whose reads may go to replicas; every other method runs on
      the primary;
    - ``cookie_max_age`` (seconds, None = derived from the manager: an hour in the default
      ``fresh`` mode, renewed on every response while some replica has not been proven to
      hold the write; the sticky window rounded up in sticky mode; 60 s in causal mode),
      ``cookie_path``, ``cookie_secure``,
      ``cookie_httponly``, ``cookie_samesite``: attributes of the cookie.
    """

    header: str | None = DEFAULT_HEADER
    cookie: str | None = DEFAULT_COOKIE
    primary_header: str | None = DEFAULT_PRIMARY_HEADER
    safe_methods: frozenset[str] = field(default=SAFE_METHODS)
    cookie_max_age: int | None = None
    cookie_path: str = "/"
    cookie_secure: bool = False
    cookie_httponly: bool = True
    cookie_samesite: Literal["lax", "strict", "none"] | None = "lax"

    def __post_init__(self) -> None:
        # Normalised once here so that a caller passing {"get", "head"} is understood.
        object.__setattr__(self, "safe_methods", frozenset(m.upper() for m in self.safe_methods))
        if self.cookie_samesite not in ("lax", "strict", "none", None):
            raise ConfigurationError(
                f"cookie_samesite must be 'lax', 'strict', 'none' or None, got {self.cookie_samesite!r}"
            )
        if self.cookie_max_age is not None and self.cookie_max_age < 0:
            raise ConfigurationError(f"cookie_max_age must be >= 0 seconds, got {self.cookie_max_age!r}")

    def max_age_for(self, manager: Manager) -> int:
        """The cookie's lifetime: past it the token would no longer change any routing."""
        if self.cookie_max_age is not None:
            return self.cookie_max_age
        mode, sticky = manager.read_your_writes, manager.sticky_seconds
        if mode == "fresh":
            window = FRESH_COOKIE_MAX_AGE
            if sticky is not None:
                window = min(window, max(1, math.ceil(sticky)))
            return window
        if mode == "sticky" and sticky is not None:
            return max(1, math.ceil(sticky))
        # Causal: a position is moot once every replica replayed it, normally within seconds.
        return 60

    def set_cookie_header(self, manager: Manager, token: str) -> str:
        """The ``Set-Cookie`` value carrying ``token`` (percent-encoded: a MariaDB GTID
        position contains commas, which a cookie value may not)."""
        assert self.cookie is not None
        parts = [f"{self.cookie}={encode_token(token)}", f"Path={self.cookie_path}"]
        parts.append(f"Max-Age={self.max_age_for(manager)}")
        if self.cookie_httponly:
            parts.append("HttpOnly")
        if self.cookie_secure:
            parts.append("Secure")
        if self.cookie_samesite is not None:
            parts.append(f"SameSite={self.cookie_samesite.capitalize()}")
        return "; ".join(parts)


def encode_token(token: str) -> str:
    return quote(token, safe="")


def decode_token(raw: str) -> str:
    return unquote(raw.strip().strip('"'))


class RequestScope:
    """One request's routing state, as the integrations expose it to handlers."""

    __slots__ = ("_written_before", "incoming_token", "manager", "on_primary", "session")

    def __init__(
        self, manager: Manager, session: Session, *, incoming_token: str | None, on_primary: bool
    ) -> None:
        self.manager = manager
        #: The read-your-writes session of this request (shared by the tasks it spawns).
        self.session = session
        #: The token the client sent, if it was a valid one.
        self.incoming_token = incoming_token
        #: Whether every query of the request goes to the primary (unsafe method or forced).
        self.on_primary = on_primary
        self._written_before = session.written_at

    @property
    def wrote(self) -> bool:
        """Whether a write was recorded in this request (so the client needs a new token)."""
        return self.session.written_at is not None and self.session.written_at != self._written_before

    def response_token(self) -> str | None:
        """The token to send back: the session's if the request wrote, or (``fresh`` mode)
        if the client's token names a write some replica is not yet proven to hold, so that
        the cookie outlives any lag. None otherwise."""
        if self.wrote:
            return self.session.token()
        written = self.session.written_at
        if written is None or self.manager.read_your_writes != "fresh":
            return None
        if all(node.health.holds_writes_before(written) for node in self.manager.replicas):
            return None
        return self.session.token()

    @contextmanager
    def force_primary(self) -> Iterator[None]:
        """Send every query of the block to the primary (for a read that must be current)."""
        previous = self.on_primary
        self.on_primary = True
        try:
            with self.manager.primary():
                yield
        finally:
            self.on_primary = previous


# The scope of the request being handled, for code that has no request object at hand.
_current: ContextVar[RequestScope | None] = ContextVar("aiopeewee_dist.request_scope", default=None)


def current_scope() -> RequestScope | None:
    """The routing state of the request being handled in this context (None outside one)."""
    return _current.get()


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUTHY


def _parse_token(raw: str | None, source: str) -> str | None:
    if not raw:
        return None
    token = decode_token(raw)
    try:
        Session.from_token(token)
    except ConfigurationError:
        # A stale or forged token must not fail the request: it only loses the guarantee.
        logger.debug("ignoring an invalid consistency token in the %s", source)
        return None
    return token


@contextmanager
def request_scope(
    manager: Manager,
    options: ScopeOptions,
    *,
    method: str,
    header: Callable[[str], str | None],
    cookie: Callable[[str], str | None],
) -> Iterator[RequestScope]:
    """Enter the routing context of one request; ``header(name)`` / ``cookie(name)`` read it.

    Must be entered and left in the task that runs the handler: the context lives in
    ContextVars, which do not flow back out of a task or a copied context.
    """
    token = None
    if options.header:
        token = _parse_token(header(options.header), "header")
    if token is None and options.cookie:
        token = _parse_token(cookie(options.cookie), "cookie")
    forced = bool(options.primary_header) and _truthy(header(options.primary_header or ""))
    on_primary = method.upper() not in options.safe_methods or forced
    with ExitStack() as stack:
        session = stack.enter_context(manager.consistency(token))
        if on_primary:
            stack.enter_context(manager.primary())
        scope = RequestScope(manager, session, incoming_token=token, on_primary=on_primary)
        reset = _current.set(scope)
        stack.callback(_current.reset, reset)
        yield scope


@asynccontextmanager
async def opened_for_app(manager: Manager, *, connect: bool) -> AsyncIterator[None]:
    """``manager`` open for an application's lifetime: connected at startup (unless
    ``connect=False``: pools then open on first use), closed at shutdown."""
    try:
        if connect:
            await manager.connect()
        yield
    finally:
        await manager.close()
