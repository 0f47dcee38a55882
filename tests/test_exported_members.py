"""The package's public surface: ``__all__`` is complete, sorted and true, exceptions look public."""

from __future__ import annotations

import types

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
