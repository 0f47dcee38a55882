"""The package's public surface: ``__all__`` is complete, sorted and true, exceptions look public."""

from __future__ import annotations

import types
from pathlib import Path

import peewee
import pytest

import aiopeewee_dist

EXPORTED = list(aiopeewee_dist.__all__)
EXCEPTIONS = [
    name
    for name in EXPORTED
    if isinstance(getattr(aiopeewee_dist, name, None), type)
    and issubclass(getattr(aiopeewee_dist, name), BaseException)
]


def test_all_is_sorted_without_duplicates() -> None:
    assert sorted(EXPORTED) == EXPORTED
    assert len(set(EXPORTED)) == len(EXPORTED)


@pytest.mark.parametrize("name", EXPORTED)
def test_every_exported_name_exists(name: str) -> None:
    assert hasattr(aiopeewee_dist, name)


def test_every_public_attribute_is_exported() -> None:
    public = {
        name
        for name, value in vars(aiopeewee_dist).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        # `from __future__ import annotations` leaves a feature object named `annotations`.
        and type(value).__module__ != "__future__"
    }
    assert public - set(EXPORTED) == set()


def test_exceptions_are_exported() -> None:
    assert "AioPeeweeDistError" in EXCEPTIONS
    assert len(EXCEPTIONS) >= 2


@pytest.mark.parametrize("name", EXCEPTIONS)
def test_exceptions_live_in_the_package_namespace(name: str) -> None:
    cls = getattr(aiopeewee_dist, name)
    assert cls.__module__ == "aiopeewee_dist"
    assert issubclass(cls, aiopeewee_dist.AioPeeweeDistError)


def test_pool_error_is_a_peewee_operational_error() -> None:
    assert issubclass(aiopeewee_dist.PoolError, peewee.OperationalError)
    assert issubclass(aiopeewee_dist.PoolTimeout, peewee.OperationalError)


def test_configuration_and_loop_errors_keep_their_builtin_bases() -> None:
    assert issubclass(aiopeewee_dist.ConfigurationError, ValueError)
    assert issubclass(aiopeewee_dist.EventLoopError, RuntimeError)


def test_internals_are_not_exported() -> None:
    assert {"Node", "DatabaseURL", "parse_url"}.isdisjoint(EXPORTED)
    assert "Node" not in vars(aiopeewee_dist)


@pytest.mark.parametrize("name", ["Node", "DatabaseURL", "parse_url"])
def test_names_that_left_the_api_warn_for_one_release(name: str) -> None:
    with pytest.warns(DeprecationWarning, match=f"aiopeewee_dist.{name} is no longer public"):
        value = getattr(aiopeewee_dist, name)
    assert value.__name__ == name
    with pytest.raises(AttributeError):
        aiopeewee_dist.NoSuchName  # noqa: B018


def test_node_unavailable_is_not_a_pool_error() -> None:
    assert not issubclass(aiopeewee_dist.NodeUnavailable, aiopeewee_dist.PoolError)
    for error in (aiopeewee_dist.NodeUnavailable, aiopeewee_dist.QueryTimeout, aiopeewee_dist.PoolClosed):
        assert issubclass(error, peewee.OperationalError)


def test_managers_keep_their_internals_private(tmp_path: Path) -> None:
    manager = aiopeewee_dist.Manager(f"sqlite:///{tmp_path / 'p.db'}")
    for name in ("router", "monitor", "consistency_policy"):
        assert not hasattr(manager, name)
    assert manager.read_your_writes == "fresh"
    assert manager.sticky_seconds is None


def test_both_managers_satisfy_the_protocol(tmp_path: Path) -> None:
    manager = aiopeewee_dist.Manager(f"sqlite:///{tmp_path / 'p.db'}")
    sharded = aiopeewee_dist.ShardedManager({"a": f"sqlite:///{tmp_path / 'a.db'}"})
    assert isinstance(manager, aiopeewee_dist.ManagerProtocol)
    assert isinstance(sharded, aiopeewee_dist.ManagerProtocol)
    assert not isinstance(object(), aiopeewee_dist.ManagerProtocol)


async def test_get_stats_and_promote_are_deprecated(tmp_path: Path) -> None:
    async with aiopeewee_dist.Manager(f"sqlite:///{tmp_path / 'p.db'}") as manager:
        with pytest.warns(DeprecationWarning, match=r"get_stats\(\) is deprecated.*Manager.stats\(\)"):
            stats = manager.get_stats()
        assert stats.keys() == manager.stats().keys()
        with pytest.warns(DeprecationWarning, match=r"promote\(\) is deprecated.*replace_primary"):
            node = await manager.promote("primary")
        assert node is manager.primary_node
