"""The ``fresh`` read-your-writes policy on its own (no server): which replicas may serve a
context that wrote, the ``sticky_seconds`` cap, tokens, and the deprecated ``sticky`` mode."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from aiopeewee_dist import Manager
from aiopeewee_dist._consistency import Consistency
from aiopeewee_dist._health import NodeHealth
from aiopeewee_dist.integrations import ScopeOptions


def replica(fresh_since: float | None) -> Any:
    health = NodeHealth()
    health.fresh_since = fresh_since
    return SimpleNamespace(health=health)


def test_only_replicas_proven_to_hold_the_write_serve_the_context() -> None:
    policy = Consistency("fresh", sticky_seconds=None, causal_wait=0.0)
    behind, caught_up, unknown = replica(100.0), replica(200.0), replica(None)
    nodes = [behind, caught_up, unknown]
    assert policy.proven_replicas(nodes) is None  # no session: any replica
    with policy.scope() as session:
        assert policy.proven_replicas(nodes) is None  # a context that wrote nothing
        session.written_at = 150.0
        assert policy.proven_replicas(nodes) == [caught_up]
        session.written_at = 200.0  # proven means strictly after: the check started after the write
        assert policy.proven_replicas(nodes) == []
    # Across requests: the token carries the write time.
    with policy.scope("v1|t=150.000"):
        assert policy.proven_replicas(nodes) == [caught_up]


def test_sticky_seconds_caps_how_long_the_primary_serves() -> None:
    policy = Consistency("fresh", sticky_seconds=5.0, causal_wait=0.0)
    nodes = [replica(None)]
    with policy.scope() as session:
        session.written_at = time.time()
        assert policy.proven_replicas(nodes) == []  # not proven, within the cap: the primary
        session.written_at = time.time() - 6.0
        assert policy.proven_replicas(nodes) is None  # past the cap: any eligible replica


def test_fresh_is_the_default_and_sticky_is_deprecated() -> None:
    manager = Manager("sqlite:///:memory:")
    assert manager.read_your_writes == "fresh"
    assert manager.sticky_seconds is None
    assert ScopeOptions().max_age_for(manager) == 3600
    capped = Manager("sqlite:///:memory:", sticky_seconds=30.0)
    assert ScopeOptions().max_age_for(capped) == 30
    with pytest.warns(DeprecationWarning, match="sticky"):
        sticky = Manager("sqlite:///:memory:", read_your_writes="sticky")
    assert sticky.sticky_seconds == 2.0
