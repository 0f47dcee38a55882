"""Tests of aiopeewee_dist._url: parsing, display without the password, connect arguments."""

from __future__ import annotations

import dataclasses
import os
import ssl
import string
from collections.abc import Callable
from urllib.parse import quote

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from aiopeewee_dist._errors import ConfigurationError
from aiopeewee_dist._url import (
    LIBPQ_OPTIONS,
    DatabaseURL,
    connect_kwargs,
    parse_url,
    sqlite_pragmas,
)


@pytest.mark.parametrize(
    ("scheme", "backend", "dialect", "port"),
    [
        ("postgresql", "psycopg", "postgresql", 5432),
        ("postgres", "psycopg", "postgresql", 5432),
        ("postgresql+psycopg", "psycopg", "postgresql", 5432),
        ("postgresql+psycopg3", "psycopg", "postgresql", 5432),
        ("POSTGRESQL+Psycopg", "psycopg", "postgresql", 5432),
        ("postgresql+aiopg", "aiopg", "postgresql", 5432),
        ("postgres+aiopg", "aiopg", "postgresql", 5432),
        ("mysql", "aiomysql", "mysql", 3306),
        ("mysql+aiomysql", "aiomysql", "mysql", 3306),
        ("mariadb", "aiomysql", "mysql", 3306),
        ("MariaDB+aiomysql", "aiomysql", "mysql", 3306),
    ],
)
def test_server_schemes(scheme: str, backend: str, dialect: str, port: int) -> None:
    url = parse_url(f"{scheme}://aiopd:secret@db.example.com/aiopd")
    assert (url.backend, url.dialect, url.port) == (backend, dialect, port)
    assert (url.host, url.user, url.password, url.database) == ("db.example.com", "aiopd", "secret", "aiopd")
    assert not url.is_memory
    assert parse_url(f"{scheme}://h:6000/d").port == 6000


@pytest.mark.parametrize(
    ("text", "database"),
    [
        ("sqlite:///relative/path.db", "relative/path.db"),
        ("sqlite+aiosqlite:///relative/path.db", "relative/path.db"),
        ("SQLite:////abs/path.db", "/abs/path.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite://", ":memory:"),
        ("sqlite:///", ":memory:"),
        ("sqlite://:memory:", ":memory:"),
        ("sqlite:///with%20space%3F.db", "with space?.db"),
    ],
)
def test_sqlite_forms(text: str, database: str) -> None:
    url = parse_url(text)
    assert (url.backend, url.dialect, url.database) == ("aiosqlite", "sqlite", database)
    assert (url.host, url.port, url.user, url.password) == (None, None, None, None)
    assert url.is_memory == (database == ":memory:")
    assert parse_url(url.obscured()) == url


def test_escaping_round_trip() -> None:
    password = "p@ss:w/rd 1"
    url = parse_url(f"postgresql://us%3Aer:{quote(password, safe='')}@h/my%2Fdb")
    assert url.password == password == "p@ss:w/rd 1"
    assert (url.user, url.database) == ("us:er", "my/db")
    assert quote(password, safe="") == "p%40ss%3Aw%2Frd%201"
    # A ':' inside the password needs no escaping: only the first one separates user and password.
    assert parse_url("mysql://u:a:b@h/d").password == "a:b"
    assert parse_url("mysql://u@h/d").password is None
    assert parse_url("mysql://u:@h/d").password == ""


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("postgresql://u:p@[::1]/d", "::1", 5432),
        ("postgresql://u:p@[::1]:6543/d", "::1", 6543),
        ("mysql://[2001:db8::7]:3307/d", "2001:db8::7", 3307),
        ("postgresql://[fe80::1%25eth0]/d", "fe80::1%eth0", 5432),
        ("postgresql://%2Fvar%2Frun%2Fpostgresql/d", "/var/run/postgresql", 5432),
        ("postgresql://127.0.0.1/d", "127.0.0.1", 5432),
    ],
)
def test_hosts(text: str, host: str, port: int) -> None:
    url = parse_url(text)
    assert (url.host, url.port) == (host, port)
    assert dataclasses.replace(parse_url(url.obscured()), password=url.password) == url


def test_options_are_split_and_decoded() -> None:
    url = parse_url(
        "postgresql://u:p@h/d?sslmode=verify-full&application_name=my%20app&connect_timeout=3"
        "&name=primary-1&weight=2.5&min_size=1&max_size=20&ping_after_idle=none"
    )
    assert dict(url.driver_options) == {"sslmode": "verify-full", "application_name": "my app"}
    assert dict(url.node_options) == {
        "connect_timeout": "3",
        "name": "primary-1",
        "weight": "2.5",
        "min_size": "1",
        "max_size": "20",
        "ping_after_idle": "none",
    }
    # Node options are checked one at a time, so a min_size above the default max_size is allowed here.
    assert parse_url("postgresql://h/d?min_size=50").node_options["min_size"] == "50"
    assert parse_url("mysql://h/d?charset=utf8mb4&local_infile=1").driver_options["charset"] == "utf8mb4"
    assert dict(parse_url("sqlite:///x.db?timeout=2.5&foreign_keys=on&").driver_options) == {
        "timeout": "2.5",
        "foreign_keys": "on",
    }
    assert "sslmode" in LIBPQ_OPTIONS and "user" not in LIBPQ_OPTIONS


def test_display_hides_password() -> None:
    url = parse_url("postgresql://aiopd:secret@127.0.0.1/aiopd?sslpassword=keyphrase&name=n1")
    expected = "postgresql://aiopd:***@127.0.0.1:5432/aiopd?sslpassword=***&name=n1"
    assert url.obscured() == str(url) == expected
    assert repr(url) == f"DatabaseURL({expected!r})"
    assert "secret" not in repr(url) and "keyphrase" not in repr(url)
    assert parse_url("postgresql+aiopg://h/d").obscured() == "postgresql+aiopg://h:5432/d"
    assert parse_url("mariadb://u@h/d").obscured() == "mysql://u@h:3306/d"


def test_value_semantics() -> None:
    a = parse_url("postgresql://u:p@h/d?sslmode=require&application_name=x")
    b = parse_url("postgresql://u:p@h/d?application_name=x&sslmode=require")
    assert a == b and hash(a) == hash(b)
    assert a != parse_url("postgresql://u:other@h/d?sslmode=require&application_name=x")
    with pytest.raises(TypeError):
        a.driver_options["sslmode"] = "disable"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.host = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("postgresql://aiopd:secret@h:99999/db", r"port must be an integer 1-65535, got '99999'"),
        ("postgresql://h:0/db", r"port must be an integer 1-65535, got '0'"),
        ("postgresql://h:/db", r"port must be an integer 1-65535, got a non-numeric value"),
        (
            "postgresql://h:54x/db",
            r"'postgresql://h:\*\*\*/db': port must be an integer 1-65535, got a non-numeric",
        ),
        ("postgersql://u:secret@h/db", r"unknown URL scheme 'postgersql' \(expected one of: postgresql,"),
        ("http://h/db", r"unknown URL scheme 'http'"),
        ("postgresql:/h/db", r"<unparseable>: expected scheme://"),
        ("localhost:5432/db", r"<unparseable>"),
        ("postgresql://u:p@h/db?foo=1", r"URL query parameter 'foo' is not a libpq connection option"),
        ("postgres+aiopg://h/db?foo=1", r"not a libpq connection option for backend 'aiopg'"),
        ("postgresql://h/db?user=x", r"'user' must be given in the URL itself"),
        ("postgresql://h/db?dbname=x", r"'dbname' must be given in the URL itself"),
        ("postgresql://h/db?sslmode=yes", r"sslmode must be one of disable, allow, prefer"),
        ("mysql://h/db?sslmode=require", r"'sslmode' is not an option for backend 'aiomysql'"),
        ("mysql://h/db?local_infile=maybe", r"local_infile must be a boolean"),
        ("mysql://h/db?ssl_key=/k.pem", r"'ssl_key' needs 'ssl_cert'"),
        ("sqlite:///x.db?charset=utf8", r"'charset' is not an option for backend 'aiosqlite'"),
        ("sqlite:///x.db?timeout=-1", r"timeout must be a number of seconds >= 0, got '-1'"),
        ("sqlite:///x.db?timeout=nan", r"timeout must be a number"),
        ("sqlite:///x.db?journal_mode=fast", r"journal_mode must be one of"),
        ("sqlite:///x.db?synchronous=sometimes", r"synchronous must be one of"),
        ("sqlite:///x.db?cache_size=big", r"cache_size must be an integer"),
        ("sqlite:///x.db?foreign_keys=2", r"foreign_keys must be a boolean"),
        ("postgresql://h/db?max_size=ten", r"option 'max_size' must be an integer, got 'ten'"),
        ("postgresql://h/db?max_size=0", r"max_size must be >= 1 and <= 10000, got 0"),
        ("postgresql://h/db?acquire_timeout=0", r"acquire_timeout must be > 0"),
        ("postgresql://h/db?weight=-1", r"weight must be a finite number >= 0"),
        ("postgresql://h/db?name=bad%20name", r"node name must be"),
        ("postgresql://h/db?a=1&a=2", r"'a' given more than once"),
        ("postgresql://h/db?sslmode", r"'sslmode' has no value"),
        ("postgresql://h/db?=1", r"empty name"),
        ("postgresql://u:p@h", r"database name missing from URL path"),
        ("mysql://u:p@h/", r"database name missing from URL path"),
        ("postgresql://h/db/extra", r"URL path must be only the database name"),
        ("postgresql://u:p@/db", r"host missing"),
        ("mysql://:3306/db", r"host missing"),
        ("postgresql://::1/db", r"IPv6 host addresses must be written in brackets"),
        ("postgresql://[::1/db", r"missing its closing '\]'"),
        ("postgresql://[nothost]/db", r"invalid IPv6 address 'nothost'"),
        ("postgresql://[::1]x/db", r"unexpected text 'x' after '\]'"),
        ("postgresql://h%3Ax/db", r"invalid host 'h:x'"),
        ("postgresql://h/db#frag", r"URL fragment"),
        ("postgresql://u:p@h/db?application_name=a@b", r"'@' after the host part"),
        ("sqlite://host/x.db", r"sqlite URL takes no host or user"),
        ("sqlite://u:p@/x.db", r"sqlite URL takes no host or user"),
        ("postgresql://h/d b", r"whitespace or control characters"),
        ("postgresql://h/d\x00", r"whitespace or control characters"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        parse_url(text)
    assert str(info.value).startswith("invalid database URL ")
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_empty(value: str) -> None:
    with pytest.raises(ConfigurationError, match="database URL is empty"):
        parse_url(value)


@pytest.mark.parametrize("value", [None, 5, b"postgresql://u:secret@h/d"])
def test_not_a_str(value: object) -> None:
    with pytest.raises(ConfigurationError, match="database URL must be a str") as info:
        parse_url(value)  # type: ignore[arg-type]
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://u:s3cr/et@h/db", "'postgresql://***'"),  # unescaped '/' in the password
        ("postgresql://u:s3cr?et@h/db", "'postgresql://***'"),
        ("postgresql://u:s3cr#et@h/db", "'postgresql://***'"),
        ("postgresql://u:s3cr et@h/db", "'postgresql://u:***@h/db'"),
        ("postgresql://u:s3cret@h/db?password=s3cret", "'postgresql://u:***@h/db?password=***'"),
        ("postgresql:u:s3cret@h/db", "<unparseable>"),
        ("postgresql://u:s3cret/db", "'postgresql://u:***/db'"),  # '@host' forgotten
    ],
)
def test_malformed_urls_never_show_password(text: str, shown: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_url(text)
    assert f"invalid database URL {shown}: " in str(info.value)
    assert "s3cr" not in str(info.value)


def test_connect_kwargs_postgresql() -> None:
    url = parse_url("postgresql://u:p%40ss@h:6543/app?sslmode=require&connect_timeout=3&max_size=2")
    assert connect_kwargs(url) == {
        "host": "h",
        "port": 6543,
        "user": "u",
        "password": "p@ss",
        "dbname": "app",
        "sslmode": "require",
    }
    assert connect_kwargs(parse_url("postgresql+aiopg://h/app")) == {
        "host": "h",
        "port": 5432,
        "dbname": "app",
    }


def test_connect_kwargs_mysql() -> None:
    url = parse_url("mysql://u:p@h/app?charset=utf8mb4&local_infile=off&init_command=SET%20x%3D1&weight=1")
    assert connect_kwargs(url) == {
        "host": "h",
        "port": 3306,
        "user": "u",
        "password": "p",
        "db": "app",
        "charset": "utf8mb4",
        "local_infile": False,
        "init_command": "SET x=1",
    }
    assert connect_kwargs(parse_url("mysql://h/app?local_infile=TRUE"))["local_infile"] is True


def test_connect_kwargs_mysql_ssl() -> None:
    cafile = ssl.get_default_verify_paths().cafile
    if not cafile or not os.path.exists(cafile):
        pytest.skip("no system CA bundle")
    context = connect_kwargs(parse_url(f"mysql://h/app?ssl_ca={quote(cafile, safe='')}"))["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    with pytest.raises(ConfigurationError, match="cannot load the MySQL TLS files"):
        connect_kwargs(parse_url("mysql://h/app?ssl_ca=/nonexistent/ca.pem"))


def test_connect_kwargs_sqlite() -> None:
    assert connect_kwargs(parse_url("sqlite:///a.db")) == {"database": "a.db", "timeout": 5.0}
    assert connect_kwargs(parse_url("sqlite://?timeout=0.5")) == {"database": ":memory:", "timeout": 0.5}


def test_connect_kwargs_validates_hand_built_url() -> None:
    url = DatabaseURL("psycopg", "h", 5432, "u", "secret", "d", {"bogus": "1"})
    with pytest.raises(ConfigurationError, match="'bogus' is not a libpq") as info:
        connect_kwargs(url)
    assert "secret" not in str(info.value)


def test_sqlite_pragmas() -> None:
    url = parse_url("sqlite:///a.db?synchronous=NORMAL&cache_size=-2000&foreign_keys=yes&timeout=1")
    assert sqlite_pragmas(url) == {
        "journal_mode": "wal",
        "synchronous": "normal",
        "cache_size": "-2000",
        "foreign_keys": "on",
    }
    assert sqlite_pragmas(parse_url("sqlite:///a.db?journal_mode=delete")) == {"journal_mode": "delete"}
    assert sqlite_pragmas(parse_url("sqlite://")) == {}
    with pytest.raises(ConfigurationError, match="needs a sqlite URL"):
        sqlite_pragmas(parse_url("postgresql://h/d"))


# -- properties ------------------------------------------------------------------------------------


@given(user=st.text(), password=st.text())
@example(user="", password="")
@example(user="a@b", password="p@ss:w/rd 1")
def test_user_and_password_round_trip(user: str, password: str) -> None:
    url = parse_url(f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@h/d")
    assert (url.user, url.password) == (user, password)


def _message(text: str) -> str:
    with pytest.raises(ConfigurationError) as info:
        parse_url(text)
    return str(info.value)


_BROKEN: list[Callable[[str], str]] = [
    lambda u: u.replace(":5432/", ":99999/"),
    lambda u: u.replace(":5432/", ":port/"),
    lambda u: u.replace("postgresql://", "postgersql://"),
    lambda u: u + "&bogus=1",
    lambda u: u + "&sslmode=maybe",
    lambda u: u + "&max_size=ten",
    lambda u: u.replace("/app?", "/?"),
]


@given(password=st.text(min_size=4) | st.text(string.printable, min_size=4))
@example(password="secret")
@example(password="p@ss:w/rd 1")
def test_password_never_in_repr_or_errors(password: str) -> None:
    def url_with(pw: str) -> str:
        return f"postgresql://aiopd:{quote(pw, safe='')}@db.example:5432/app?application_name=x"

    # Compare against the same text built with a neutral password, so that a password that is
    # also, say, a word of the error message does not count as a leak.
    reference = url_with("x")
    assume(password not in reference and password not in repr(parse_url(reference)))
    url = parse_url(url_with(password))
    for shown in (repr(url), str(url), url.obscured()):
        assert password not in shown
    for broken in _BROKEN:
        expected = _message(broken(reference))
        assume(password not in expected)
        assert password not in _message(broken(url_with(password)))


@given(password=st.text(string.ascii_letters + string.digits + string.punctuation, min_size=4))
@example(password="pa/ss@word")
@example(password="pa#ss?wo@rd")
def test_unescaped_password_never_shown(password: str) -> None:
    # Users forget to percent-encode; whatever the parser then makes of the URL, it must not echo it.
    def url_with(pw: str) -> str:
        return f"postgresql://aiopd:{pw}@db.example:5432/app?application_name=x"

    unchanged: Callable[[str], str] = lambda u: u  # noqa: E731
    for broken in [unchanged, *_BROKEN]:
        reference = parse_url(url_with("x"))
        try:
            shown = repr(parse_url(broken(url_with(password))))
        except ConfigurationError as exc:
            shown = str(exc)
            # What a harmless password in the same spot produces, to rule out the password
            # merely being a word of the message.
            try:
                parse_url(broken(url_with("x")))
            except ConfigurationError as ref_exc:
                assume(password not in str(ref_exc))
        assume(password not in repr(reference) and password not in url_with("x"))
        assert password not in shown


_PIECE_TEXT = (
    "postgresql:// mysql:// sqlite:// postgres+aiopg:// u:p@ @ : / // ? & = [ ] ::1 % %2F %zz # h db 5432"
)
_PIECES = st.sampled_from([*_PIECE_TEXT.split(), " ", "name=", "sslmode=", "max_size="])


# Mostly well-formed URLs, so that the round trip below is exercised and not only the errors.
_URLISH = st.tuples(
    st.sampled_from(["postgresql://", "mysql://", "sqlite://", "sqlite:///", "postgres+aiopg://"]),
    st.sampled_from(["", "u@", "u:p@", "%40%3A:%3A%2F@", ":@"]),
    st.sampled_from(["h", "[::1]", "[fe80::1%25x]", "%2Ftmp", "", "1.2.3.4"]),
    st.sampled_from(["", ":5432", ":0", ":x"]),
    st.sampled_from(["/db", "/", "", "/a%2Fb", "/:memory:", "/d%3F%26"]),
    st.sampled_from(["", "?sslmode=require", "?name=n&weight=1", "?timeout=1", "?charset=x", "?max_size=3"]),
    st.sampled_from(["", "&sslpassword=%40", "&application_name=a%26b", "&foreign_keys=on"]),
    st.text(max_size=2),
).map("".join)


@given(st.text() | st.lists(_PIECES | st.text(max_size=3)).map("".join) | _URLISH)
def test_parse_raises_only_configuration_error(text: str) -> None:
    try:
        url = parse_url(text)
    except ConfigurationError:
        return
    # Whatever parses must also display, and the display must parse back to the same URL,
    # secrets aside.
    masked = {k: "***" if k == "sslpassword" else v for k, v in url.driver_options.items()}
    password = None if url.password is None else "***"
    assert parse_url(url.obscured()) == dataclasses.replace(url, password=password, driver_options=masked)
