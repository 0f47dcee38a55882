"""Conduit: a RealWorld backend (the OpenAPI contract in ``spec/openapi.yml``) on FastAPI + aiopeewee_dist.

Run it::

    make conduit            # SQLite (conduit.db), uvicorn on http://127.0.0.1:8000/api
    make conduit-cluster    # PostgreSQL primary + 2 replicas (DATABASE_URL, DATABASE_REPLICA_URLS;
                            # the local test cluster's URLs by default)

Environment: ``DATABASE_URL``, ``DATABASE_REPLICA_URLS``, ``CONDUIT_JWT_SECRET``,
``CONDUIT_JWT_TTL``, ``CONDUIT_TABLE_PREFIX``, ``CONDUIT_READ_YOUR_WRITES``,
``CONDUIT_STICKY_SECONDS``, ``CONDUIT_CORS_ORIGINS`` (see ``settings.py``).

Modules: ``models`` (Peewee models), ``api`` (the endpoints), ``auth`` (scrypt, JWT),
``serializers`` (JSON shapes), ``schemas`` (request bodies), ``errors`` (error bodies),
``settings``, ``app`` (``create_app``).
"""

from __future__ import annotations

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
