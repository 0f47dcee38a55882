"""Health, ejection, lag and failover decisions on fake servers."""

from __future__ import annotations

import asyncio
import logging

import pytest

from aiopeewee_dist import Manager
from aiopeewee_dist.testing import FakeCluster
from core.fakes import Item, MakeManager


def node_report(reports: list[dict[str, object]], name: str) -> dict[str, object]:
    return next(r for r in reports if r["name"] == name)


async def test_ejected_after_failures_readmitted_after_successes(
    make_manager: MakeManager, fake: FakeCluster
) -> None:
    manager = make_manager(health_check_interval=30.0, eject_after=2, readmit_after=2)
    fake.replicas[0].down()
    reports = await manager.check_connections()
    assert node_report(reports, "replica-1")["up"] is True  # one failure is not an outage
    reports = await manager.check_connections()
    assert node_report(reports, "replica-1")["up"] is False
    assert "down" in str(node_report(reports, "replica-1")["last_error"])
    fake.replicas[0].up()
    reports = await manager.check_connections()
    assert node_report(reports, "replica-1")["up"] is False
    reports = await manager.check_connections()
    assert node_report(reports, "replica-1")["up"] is True


async def test_lag_and_positions_as_reported(make_manager: MakeManager, fake: FakeCluster) -> None:
    manager = make_manager(health_check_interval=30.0)
    await manager.create_tables([Item])
    fake.replicas[0].pause()
    await manager.check_connections()
    await manager.create(Item, name="a")
    await asyncio.sleep(0.05)
    reports = await manager.check_connections()
    primary = node_report(reports, "primary")
    behind, current = node_report(reports, "replica-1"), node_report(reports, "replica-2")
    assert primary["position"] == current["position"] != behind["position"]
    assert isinstance(behind["lag"], float) and behind["lag"] >= 0.05
    assert isinstance(current["lag"], float) and current["lag"] < 0.05
    assert manager.stats()["replica-1"]["lag"] is not None


async def test_background_monitor_ejects_a_hung_replica(make_manager: MakeManager, fake: FakeCluster) -> None:
    manager = make_manager(health_check_interval=0.02, health_check_timeout=0.05, eject_after=1)
    await manager.create_tables([Item])
    await manager.execute(Item.select())  # starts the monitor
    fake.replicas[1].hang()
    for _ in range(200):
        if not manager.stats()["replica-2"]["up"]:
            break
        await asyncio.sleep(0.01)
    assert manager.stats()["replica-2"]["up"] is False
    fake.replicas[1].unhang()


async def test_auto_failover_promotes_the_one_writable_replica(
    make_manager: MakeManager, fake: FakeCluster, caplog: pytest.LogCaptureFixture
) -> None:
    manager = make_manager(health_check_interval=30.0, eject_after=1)
    await manager.create_tables([Item])
    await manager.create(Item, name="before")
    caplog.set_level(logging.WARNING, logger="aiopeewee_dist")
    fake.failover(fake.replicas[0])
    await manager.check_connections()  # primary down: ejected
    await manager.check_connections()  # and replica-1 takes writes: promoted
    assert manager.primary_node.name == "replica-1"
    await manager.create(Item, name="after")
    assert await manager.count(Item.select(), node=manager.primary_node) == 2
    assert any("promoting" in r.message for r in caplog.records)


async def test_primary_turned_read_only_and_several_writable_replicas(
    make_manager: MakeManager, fake: FakeCluster, caplog: pytest.LogCaptureFixture
) -> None:
    manager = make_manager(health_check_interval=30.0)
    await manager.raw_sql("SELECT 1", node="primary")
    caplog.set_level(logging.WARNING, logger="aiopeewee_dist")
    fake.primary.set_read_only()
    for replica in fake.replicas:
        replica.promote()
    await manager.check_connections()
    assert manager.primary_node.name == "primary"  # two candidates: no choice made
    messages = " ".join(r.message for r in caplog.records)
    assert "read-only" in messages and "several replicas" in messages


async def test_no_auto_failover_when_disabled(make_manager: MakeManager, fake: FakeCluster) -> None:
    manager = make_manager(health_check_interval=30.0, eject_after=1, auto_failover=False)
    fake.failover(fake.replicas[0])
    await manager.check_connections()
    await manager.check_connections()
    assert manager.primary_node.name == "primary"


async def test_manual_replace_primary_and_topology_changes(manager: Manager, fake: FakeCluster) -> None:
    fake.failover(fake.replicas[1])
    await manager.replace_primary("replica-2")
    await manager.create(Item, name="on the new primary")
    assert fake.primary.position >= 2
    third = fake.primary.replica()
    node = await manager.add_replica(third.url, name="third")
    assert node.role == "replica"
    await manager.remove_replica("third", timeout=1.0)
    third.close()
