"""Bad input, generated: URLs, options, shard keys and model values.

Every case ends in a clear error of our hierarchy (or the driver's IntegrityError / DataError,
as peewee raises them), never another exception type, a hang or a broken manager; values and
identifiers cannot change the SQL; passwords appear in no message, repr or log record.

What ``tests/test_url.py`` and ``tests/test_options.py`` already cover (``parse_url`` on
arbitrary text, ``PoolOptions`` on arbitrary values, the password in ``parse_url``'s errors) is
not repeated: this file goes through ``Manager(...)`` / ``ShardedManager(...)`` and the servers.

Example counts: ``EXAMPLES`` per property in the default run, more with ``AIOPD_CHAOS=full``.
"""

from __future__ import annotations

import asyncio
import decimal
import itertools
import logging
import math
import string
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import peewee
import pytest
from conftest import Topology
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aiopeewee_dist import (
    AioPeeweeDistError,
    ConfigurationError,
    Manager,
    Ranges,
    ShardedManager,
    ShardKeyError,
)
from aiopeewee_dist._options import MAX_AGE
from chaos.scenario import SCALE

FULL = SCALE.full
EXAMPLES = 500 if FULL else 60
DB_EXAMPLES = 150 if FULL else 25  # each one is a few round trips to a server
SECRET = "SeCrEt"  # in every generated password, and in no other generated part

fast = settings(max_examples=EXAMPLES, deadline=None)
on_server = settings(
    max_examples=DB_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text, text


# -- URLs through Manager(...) -------------------------------------------------------------

_PASSWORDS = st.builds(
    lambda a, b: a + SECRET + b,
    st.text(string.punctuation + " é€\t", max_size=4),
    st.text(string.printable + "é€", max_size=4),
)
_USERS = st.text(string.ascii_lowercase + string.punctuation + " é", max_size=6)  # never SECRET
_SCHEMES = st.sampled_from(
    ["postgresql", "postgres", "postgresql+aiopg", "mysql", "mariadb", "sqlite", "oracle", "http", "", "1x"]
)
_HOSTS = st.sampled_from(
    ["127.0.0.1", "db.example", "[::1]", "[::1", "::1", "%2Ftmp", "", "h h", "ü.example"]
)
_PORTS = st.one_of(st.integers(-5, 70000).map(str), st.sampled_from(["", "x", "5432x", "00005432", " 1"]))
_DATABASES = st.sampled_from(["app", "", "a/b", "a%2Fb", "d%3F%26", "x y", ":memory:"])
_PLAIN_OPTION = st.tuples(
    st.sampled_from(
        [
            "name",
            "weight",
            "max_size",
            "min_size",
            "acquire_timeout",
            "query_timeout",
            "sslmode",
            "application_name",
            "charset",
            "timeout",
            "journal_mode",
            "bogus",
            "",
        ]
    ),
    st.sampled_from(["1", "0", "-1", "nan", "inf", "none", "x", "require", "wal", "", "1e999", "2", "a b"]),
)
# A secret in the query string is only ever the value of one of these (libpq's sslpassword, or
# a password put in the query string by mistake): those must be masked like the password.
_SECRET_OPTION = st.tuples(st.sampled_from(["password", "sslpassword", "PASSWORD"]), _PASSWORDS)
_OPTIONS = st.lists(st.one_of(_PLAIN_OPTION, _SECRET_OPTION), max_size=4)


@st.composite
def urls(draw: st.DrawFn) -> tuple[str, str]:
    """(url, password): a URL from generated parts; the password percent-encoded or not."""
    password = draw(_PASSWORDS)
    encoded = draw(st.booleans())
    userinfo = draw(st.sampled_from(["user:pw@", "user@", ":pw@", ""]))
    user = quote(draw(_USERS), safe="") if encoded else draw(_USERS)
    pw = quote(password, safe="") if encoded else password
    userinfo = userinfo.replace("user", user).replace("pw", pw)
    host, port, database = draw(_HOSTS), draw(_PORTS), draw(_DATABASES)
    # Unescaped, a secret's '&' + 'x=y' is indistinguishable from one more parameter (and named
    # as such in errors): raw secrets here keep '&' (whose tail is masked) but lose '='.
    query = "&".join(
        f"{k}={quote(v, safe='') if encoded else v.replace('=', '') if k.lower().endswith('password') else v}"
        for k, v in draw(_OPTIONS)
    )
    scheme = draw(_SCHEMES)
    url = f"{scheme}://{userinfo}{host}{':' + port if port else ''}/{database}{'?' + query if query else ''}"
    variants = [url, url.replace("/" + database, ""), url + draw(st.text(max_size=3))]
    return draw(st.sampled_from(variants)), password


def _shown_everywhere(manager: Manager) -> list[str]:
    texts = [repr(manager), str(manager), repr(manager.stats())]
    for node in manager.nodes:
        texts += [repr(node), str(node), repr(node.url), str(node.url), repr(node.pool), node.url.obscured()]
    return texts


@fast
@given(primary=urls(), replicas=st.lists(urls(), max_size=2))
@example(primary=(f"postgresql://u:p{SECRET}@h/app?password={SECRET}", SECRET), replicas=[])
@example(primary=(f"postgresql://u:{SECRET}/x@h/app", SECRET), replicas=[])
@example(primary=(f"mysql://u:{SECRET}/app", SECRET), replicas=[])
@example(primary=(f"postgresql://u@h/app?sslpassword=ab&{SECRET}", SECRET), replicas=[])
@example(primary=("sqlite:///a.db", SECRET), replicas=[(f"sqlite:///b.db?sslpassword={SECRET}", SECRET)])
def test_manager_urls_fail_clearly_and_never_show_a_password(
    primary: tuple[str, str], replicas: list[tuple[str, str]]
) -> None:
    try:
        manager = Manager(primary[0], [url for url, _ in replicas], health_check_interval=None)
    except ConfigurationError as exc:
        message = str(exc)
        assert message and message != "None"
        no_secret(message, repr(exc), *map(str, exc.args))
        assert exc.__cause__ is None or SECRET not in str(exc.__cause__)
        return
    # Built: nothing connected yet, and the password is only where it belongs.
    no_secret(*_shown_everywhere(manager))


# -- keyword options of Manager / ShardedManager ---------------------------------------------

_OPTION_NAMES = [
    "min_size",
    "max_size",
    "acquire_timeout",
    "connect_timeout",
    "max_lifetime",
    "max_idle",
    "ping_after_idle",
    "query_timeout",
    "health_check_interval",
    "health_check_timeout",
    "eject_after",
    "readmit_after",
    "max_lag",
    "sticky_seconds",
    "causal_wait",
    "strategy",
    "fallback",
    "read_your_writes",
]
_BAD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, -1, 0]),
    st.floats(),  # NaN, infinities, negatives, subnormals
    st.text(max_size=6),
    st.sampled_from(["1", "round_robin", "weighted", "primary", "raise", "sticky", "causal", "none"]),
    st.builds(decimal.Decimal, st.sampled_from(["1.5", "NaN", "-0", "1e999"])),
    st.just(b"1"),
    st.just([1]),
    st.just({"a": 1}),
    st.just(object()),
    st.just(1j),
)


@fast
@given(st.dictionaries(st.sampled_from(_OPTION_NAMES), _BAD_VALUES, min_size=1, max_size=3))
@example({"health_check_interval": 10**400})
@example({"health_check_interval": 1.3e-173})
@example({"eject_after": 10**400})
@example({"sticky_seconds": 10**400})
@example({"causal_wait": math.inf})
@example({"max_lag": 10**400, "health_check_interval": 1.0})
def test_manager_options_fail_naming_the_option(options: dict[str, Any]) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # read_your_writes="sticky"
            manager = Manager("sqlite:///x.db", ["sqlite:///x.db?name=r"], **options)
    except ConfigurationError as exc:
        message = str(exc)
        # The option at fault (or, for cross-field checks, the other one it is checked against).
        related = {"max_lag": "health_check_interval", "min_size": "max_size", "max_size": "min_size"}
        named = [n for n in options if n in message or related.get(n, "\0") in message]
        assert named, f"{options} -> {message}"
        return
    # Accepted: every number is finite and within its documented bounds.
    for name, value in vars(manager.options).items():
        assert value is None or 0 <= value <= MAX_AGE, (name, value)
    sticky = manager._consistency.sticky_seconds
    assert sticky is None or math.isfinite(sticky)
    assert math.isfinite(manager._consistency.causal_wait)


@fast
@given(
    concurrency=_BAD_VALUES,
    strategy=st.one_of(_BAD_VALUES, st.just("hash"), st.just(Ranges([(0, "s1"), (None, "s2")]))),
)
def test_sharded_manager_options_fail_naming_the_option(concurrency: Any, strategy: Any) -> None:
    try:
        sharded = ShardedManager(
            {"s1": "sqlite:///a.db", "s2": "sqlite:///b.db"},
            fanout_concurrency=concurrency,
            shard_strategy=strategy,
            health_check_interval=None,
        )
    except ConfigurationError as exc:
        assert "fanout_concurrency" in str(exc) or "strateg" in str(exc), str(exc)
        return
    assert sharded.shards == ["s1", "s2"]


# -- shard keys --------------------------------------------------------------------------------


class KeyInt(peewee.Model):
    key = peewee.IntegerField()


class KeyText(peewee.Model):
    key = peewee.CharField()


class KeyUUID(peewee.Model):
    key = peewee.UUIDField()


class KeyRanged(peewee.Model):
    key = peewee.FloatField()


class KeyDirectory(peewee.Model):
    key = peewee.CharField()


_DIRECTORY = {"a": "s1", "b": "s2", "c": "nowhere"}

_KEYS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**5000, -(10**5000), 2**64, -(2**63)]),
    st.floats(),
    st.text(),
    st.text(max_size=2).map(lambda t: t + "\ud800"),  # a lone surrogate: not encodable as UTF-8
    st.binary(max_size=8),
    st.uuids(),
    st.sampled_from(["a", "b", "c", "x" * 100_000, "5", " 5", "\u0665", "\x00"]),
    st.builds(decimal.Decimal, st.sampled_from(["1.5", "NaN", "sNaN", "Infinity"])),
    st.just([1]),
    st.just({"k": 1}),
    st.just(object()),
    st.just(KeyInt),
)


@pytest.fixture(scope="module")
def sharded() -> ShardedManager:
    """Placement only: SQLite URLs that are never opened."""
    manager = ShardedManager({"s1": "sqlite:///s1.db", "s2": "sqlite:///s2.db"}, health_check_interval=None)
    manager.register(KeyInt, key="key")
    manager.register(KeyText, key="key")
    manager.register(KeyUUID, key="key")
    manager.register(KeyRanged, key="key", strategy=Ranges([(0.0, "s1"), (None, "s2")]))
    manager.register(KeyDirectory, key="key", strategy=lambda k: _DIRECTORY.get(k, "s1"))
    return manager


@fast
@given(model=st.sampled_from([KeyInt, KeyText, KeyUUID, KeyRanged, KeyDirectory]), key=_KEYS)
@example(model=KeyInt, key=10**5000)
@example(model=KeyText, key=10**5000)
@example(model=KeyText, key="\ud800")
@example(model=KeyRanged, key=decimal.Decimal("sNaN"))
@example(model=KeyDirectory, key="c")
def test_shard_keys_place_or_raise_shard_key_error(sharded: ShardedManager, model: Any, key: Any) -> None:
    try:
        shard = sharded.shard_for(model, key)
    except ShardKeyError as exc:
        message = str(exc)
        assert model.__name__ in message or "shard key" in message, message
        assert len(message) < 1000, len(message)  # a huge key is not copied into the message
        return
    assert shard in ("s1", "s2")
    assert sharded.shard_for(model, key) == shard  # stable


# -- model values on every backend ----------------------------------------------------------------


class Odd(peewee.Model):
    """Awkward values, under awkward identifiers: a quote of each kind in the table and columns."""

    id = peewee.IntegerField(primary_key=True)
    text = peewee.TextField(null=True, column_name='te"xt')
    name = peewee.CharField(max_length=16, null=True, column_name="na`me")
    number = peewee.BigIntegerField(null=True, column_name="it's")
    real = peewee.DoubleField(null=True, column_name="re;al --")
    blob = peewee.BlobField(null=True)

    class Meta:
        table_name = "aiopd bad \"in`put'"


_TABLE = Odd._meta.table_name
_SQLISH = st.sampled_from(
    [
        # Aimed at the real table, under each quoting style.
        "'; DROP TABLE \"" + _TABLE.replace('"', '""') + '"; --',
        "'); DELETE FROM `" + _TABLE.replace("`", "``") + "`; --",
        "\\'; DROP TABLE \"" + _TABLE.replace('"', '""') + '"; --',
        '"; DROP TABLE odd; --',
        "' OR '1'='1",
        "\\",
        "\\'",
        "\\\\'",
        "%s",
        "%(x)s",
        "?",
        "$1",
        "{}",
        "\x00",
        "a\x00b",
        "\u2028\U0001f600",
        "\r\n\t",
        "é" * 17,
    ]
)
_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "text": st.one_of(st.none(), st.text(max_size=50), _SQLISH, st.integers(), st.floats(allow_nan=False)),
    "name": st.one_of(st.none(), st.text(max_size=20), _SQLISH),
    "number": st.one_of(
        st.none(),
        st.integers(),
        st.sampled_from([2**63 - 1, -(2**63), 2**63, 10**30, "12", "x", "1.5", 1.5]),
    ),
    "real": st.one_of(
        st.none(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([math.inf, math.nan, 1e308, 5e-324, -0.0, "x"]),
    ),
    "blob": st.one_of(st.none(), st.binary(max_size=64), st.just(b"\x00'\\\"`")),
}
_ROWS = st.fixed_dictionaries({}, optional=_VALUES)

# What a bad value may raise: a server or driver refusal as peewee maps it, or our own error.
REFUSALS = (peewee.IntegrityError, peewee.DataError, AioPeeweeDistError)


@dataclass
class OddTable:
    manager: Manager
    stored: list[int] = field(default_factory=list)  # ids of the rows that were accepted
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))


@pytest.fixture
async def odd_table(topology: Topology) -> AsyncIterator[OddTable]:
    """The Odd table, fresh, shared by the examples of one test."""
    manager = topology.manager(acquire_timeout=5.0, query_timeout=10.0)
    try:
        await manager.drop_tables([Odd])
        await manager.create_tables([Odd])
        yield OddTable(manager)
        await manager.drop_tables([Odd])
    finally:
        await manager.close()


def _expected(field: peewee.Field, value: Any) -> Any:
    """What a value reads back as when stored exactly (the field's own conversions)."""
    if value is None:
        return None
    if isinstance(field, peewee.BlobField):
        return bytes(value)
    return field.python_value(field.db_value(value))


_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,),
    "name": (str,),
    "number": (int,),
    "real": (float,),
    "blob": (bytes,),
}


def _well_typed(name: str, value: Any) -> bool:
    """Whether ``value`` is of the field's own Python type, so it must come back exactly."""
    return value is None or (isinstance(value, _TYPES[name]) and not isinstance(value, bool))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(b, memoryview):
        b = bytes(b)
    return bool(a == b)


@on_server
@given(rows=st.lists(_ROWS, min_size=1, max_size=4))
@example(
    rows=[{"text": "'; DELETE FROM \"" + _TABLE + '"; --', "name": "\\'", "number": 2**63, "blob": b"\x00"}]
)
@example(rows=[{"text": "a\x00b"}, {"number": 10**30}, {"real": math.nan}, {"name": "é" * 17}])
async def test_values_round_trip_or_are_refused(
    topology: Topology, odd_table: OddTable, rows: list[dict[str, Any]]
) -> None:
    manager, stored = odd_table.manager, odd_table.stored
    async with asyncio.timeout(60):
        for row in rows:
            row_id = next(odd_table.ids)
            try:
                await manager.create(Odd, id=row_id, **row)
            except REFUSALS:
                pass
            else:
                stored.append(row_id)
                with manager.primary():
                    back = await manager.get(Odd, id=row_id)
                for name, value in row.items():
                    if not _well_typed(name, value):
                        continue  # stored as the server coerces it (SQLite: "1.5" in BIGINT is 1)
                    column = Odd._meta.fields[name]
                    wanted, got = _expected(column, value), getattr(back, name)
                    if isinstance(value, float) and math.isnan(value) and topology.kind == "sqlite":
                        assert got is None  # SQLite stores NaN as NULL (documented, not ours to change)
                    else:
                        assert _same(wanted, got), (name, value, wanted, got)
        # Nothing was injected: the table is there with exactly the rows that were accepted.
        with manager.primary():
            assert await manager.count(Odd.select()) == len(stored)
            ids = sorted(o.id for o in await manager.execute(Odd.select(Odd.id)))
        assert ids == sorted(stored)
        # And the manager is still fine after whatever was refused.
        assert await manager.raw_sql("SELECT 1", node="primary") == [(1,)]
        assert manager.stats()["primary"]["acquired"] == 0


async def test_identifiers_are_quoted(topology: Topology, odd_table: OddTable) -> None:
    """Quotes in table and column names are part of the names, on every backend."""
    manager = odd_table.manager
    await manager.create(Odd, id=1, text="t", name="n", number=2, real=0.5, blob=b"b")
    with manager.primary():
        found = await manager.get(Odd, (Odd.text == "t") & (Odd.number == 2))
        assert (found.name, found.real, bytes(found.blob)) == ("n", 0.5, b"b")
        updated = await manager.execute(Odd.update(name="m").where(Odd.name == "n"))
        assert updated == 1
        assert [o.name for o in await manager.execute(Odd.select().order_by(Odd.real))] == ["m"]
    columns = {
        "pg": "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
        "mysql": "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = DATABASE() AND table_name = %s",
        "sqlite": "SELECT name FROM pragma_table_info(?)",
    }[topology.kind]
    names = {row[0] for row in await manager.raw_sql(columns, (Odd._meta.table_name,), node="primary")}
    assert names == {"id", 'te"xt', "na`me", "it's", "re;al --", "blob"}


# -- passwords in logs ------------------------------------------------------------------------------


def _with_password(url: str, password: str) -> str:
    head, _, rest = url.partition("://")
    userinfo, _, hostpart = rest.rpartition("@")
    user = userinfo.partition(":")[0]
    return f"{head}://{user}:{quote(password, safe='')}@{hostpart}"


def _with_port(url: str, port: int) -> str:
    head, _, rest = url.partition("@")
    host_port, slash, tail = rest.partition("/")
    return f"{head}@{host_port.rpartition(':')[0]}:{port}{slash}{tail}"


async def test_passwords_never_in_logs(
    cluster_topology: Topology, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Connect with a wrong password, to a closed port and to a port that never answers, with
    every aiopeewee_dist logger at DEBUG and the monitor running: no record carries the secret."""
    topology = cluster_topology
    caplog.set_level(logging.DEBUG, logger="aiopeewee_dist")
    password = f"wrong{SECRET}'\"@:/%"
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    silent_port = silent.sockets[0].getsockname()[1]
    texts: list[str] = []
    try:
        cases = [
            _with_password(topology.primary, password),
            _with_port(_with_password(topology.primary, password), 1),
            _with_port(_with_password(topology.primary, password), silent_port),
        ]
        for url in cases:
            replica = _with_password(topology.replicas[0], password)
            manager = Manager(
                url, [replica], connect_timeout=0.5, acquire_timeout=1, health_check_interval=0.1
            )
            try:
                async with asyncio.timeout(20):
                    for call in (
                        lambda m=manager: m.raw_sql("SELECT 1"),
                        lambda m=manager: m.raw_sql("SELECT 1", node="primary"),
                    ):
                        with pytest.raises(peewee.OperationalError) as excinfo:
                            await call()
                        texts.append(str(excinfo.value))
                        cause = excinfo.value.__cause__
                        while cause is not None:
                            texts.append(str(cause))
                            cause = cause.__cause__
                    await asyncio.sleep(0.3)  # a few rounds of the monitor failing, logged
                    texts.append(repr(manager.stats()))
            finally:
                await manager.close()
    finally:
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()
    records = [r for r in caplog.records if r.name.startswith("aiopeewee_dist")]
    assert records, "nothing was logged: the check would prove nothing"
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in records:
        texts += [formatter.format(record), repr(record.args)]
    no_secret(*texts)
    assert all(password not in text for text in texts)
