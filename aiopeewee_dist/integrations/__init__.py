"""Web framework integrations: per-request routing and read-your-writes across requests.

- :mod:`aiopeewee_dist.integrations.fastapi`: ``setup(app, manager)``, ``lifespan``,
  ``DatabaseMiddleware`` (pure ASGI: Starlette apps too), ``get_manager`` /
  ``ManagerDep``, ``force_primary`` (``pip install 'aiopeewee-dist[fastapi]'``);
- :mod:`aiopeewee_dist.integrations.aiohttp`: ``setup(app, manager)``, ``middleware``,
  ``get_manager``, ``force_primary`` (``pip install 'aiopeewee-dist[aiohttp]'``).

Both share :class:`ScopeOptions` (header / cookie names, safe methods, cookie attributes)
and :class:`RequestScope` (what a request did). This package imports neither framework:
import the submodule of the one you use.
"""

from __future__ import annotations

from ._http import (
    DEFAULT_COOKIE,
    DEFAULT_HEADER,
    DEFAULT_PRIMARY_HEADER,
    SAFE_METHODS,
    RequestScope,
    ScopeOptions,
    current_scope,
    request_scope,
)

__all__ = [
    "DEFAULT_COOKIE",
    "DEFAULT_HEADER",
    "DEFAULT_PRIMARY_HEADER",
    "SAFE_METHODS",
    "RequestScope",
    "ScopeOptions",
    "current_scope",
    "request_scope",
]
