"""Database URLs: parsing into :class:`DatabaseURL`, safe display, and driver connect arguments.

A URL names one node: ``scheme://user:password@host:port/database?options``. Query parameters
are split into *node options* (ours: pool limits, ``name``, ``weight``) and *driver options*,
which are checked against what the backend's driver understands.

The password never appears in a repr, a str or an error message: errors about a malformed URL
show it with the password masked, or only ``<unparseable>`` when the password cannot be located.
"""

from __future__ import annotations

import math
import re
import ssl
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, unquote

from ._errors import ConfigurationError
from ._hosts import host_text, parse_hosts
from ._options import NODE_OPTION_NAMES, parse_node_option

Backend = Literal["psycopg", "aiopg", "aiomysql", "aiosqlite", "fake"]
Dialect = Literal["postgresql", "mysql", "sqlite"]

_SCHEMES: dict[str, Backend] = {
    **dict.fromkeys(["postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg3"], "psycopg"),
    **dict.fromkeys(["postgresql+aiopg", "postgres+aiopg"], "aiopg"),
    **dict.fromkeys(["mysql", "mysql+aiomysql", "mariadb", "mariadb+aiomysql"], "aiomysql"),
    **dict.fromkeys(["sqlite", "sqlite+aiosqlite"], "aiosqlite"),
    # aiopeewee_dist.testing's simulated servers (SQLite SQL, scripted faults and roles).
    "fake": "fake",
}
# backend -> (scheme that obscured() writes, chosen to parse back to the same backend; dialect; port)
_BACKENDS: dict[Backend, tuple[str, Dialect, int | None]] = {
    "psycopg": ("postgresql", "postgresql", 5432),
    "aiopg": ("postgresql+aiopg", "postgresql", 5432),
    "aiomysql": ("mysql", "mysql", 3306),
    "aiosqlite": ("sqlite", "sqlite", None),
    "fake": ("fake", "sqlite", None),
}

_LIBPQ_KEYWORDS_TEXT = """
    host hostaddr port dbname user password passfile channel_binding options application_name
    fallback_application_name keepalives keepalives_idle keepalives_interval keepalives_count
    tcp_user_timeout sslmode sslcompression sslcert sslkey sslpassword sslrootcert sslcrl sslcrldir
    sslsni requirepeer ssl_min_protocol_version ssl_max_protocol_version gssencmode krbsrvname
    gsslib service target_session_attrs load_balance_hosts
"""
# The URL itself carries these; a second copy in the query string would be ambiguous.
_URL_CARRIED = frozenset({"host", "port", "dbname", "user", "password"})
#: libpq keywords accepted as query parameters by the psycopg and aiopg backends.
LIBPQ_OPTIONS: frozenset[str] = frozenset(_LIBPQ_KEYWORDS_TEXT.split()) - _URL_CARRIED
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

#: Query parameters for aiomysql: ``charset``, ``init_command``, ``sql_mode``, ``program_name`` and
#: ``local_infile`` (a boolean) go to ``aiomysql.connect()``; ``ssl_ca``, ``ssl_cert`` and ``ssl_key``
#: (file paths) are combined into its ``ssl`` context.
MYSQL_OPTIONS: frozenset[str] = frozenset(
    {"charset", "init_command", "sql_mode", "ssl_ca", "ssl_cert", "ssl_key", "local_infile", "program_name"}
)
#: Query parameters for aiosqlite: ``timeout`` (seconds, the sqlite3 busy timeout) and the pragmas
#: ``journal_mode`` (default ``wal`` for files), ``synchronous``, ``cache_size`` and ``foreign_keys``.
SQLITE_OPTIONS: frozenset[str] = frozenset(
    {"timeout", "journal_mode", "synchronous", "cache_size", "foreign_keys"}
)
_FAKE_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_SQLITE_CHOICES = {
    "journal_mode": ("delete", "truncate", "persist", "memory", "wal", "off"),
    "synchronous": ("off", "normal", "full", "extra", "0", "1", "2", "3"),
}
_BOOLS = dict.fromkeys(("1", "true", "yes", "on"), True) | dict.fromkeys(("0", "false", "no", "off"), False)
_SECRET_PARAMS = frozenset({"password", "sslpassword"})
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True, repr=False)
class DatabaseURL:
    """One parsed database URL. ``repr()`` and ``str()`` never show the password."""

    backend: Backend
    #: None for sqlite; may be a Unix socket directory for PostgreSQL.
    host: str | None
    #: Defaults to 5432 (PostgreSQL) or 3306 (MySQL); None for sqlite.
    port: int | None
    user: str | None
    password: str | None
    #: Database name, or for sqlite the file path or ``":memory:"``.
    database: str
    #: Query parameters for the driver, as text.
    driver_options: Mapping[str, str] = field(default_factory=dict)
    #: Query parameters that are our node options (see NODE_OPTION_NAMES), as text.
    node_options: Mapping[str, str] = field(default_factory=dict)
    #: PostgreSQL multi-host URLs (``h1:5432,h2:5432``): the hosts after the first, which libpq
    #: tries in turn (with ``target_session_attrs`` choosing a primary or a standby).
    more_hosts: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        # Read-only views keep the frozen instance actually immutable.
        object.__setattr__(self, "driver_options", types.MappingProxyType(dict(self.driver_options)))
        object.__setattr__(self, "node_options", types.MappingProxyType(dict(self.node_options)))

    def __reduce__(self) -> tuple[Any, ...]:
        # Mapping proxies can be neither pickled nor deep-copied: rebuild from plain dicts.
        fields = (self.backend, self.host, self.port, self.user, self.password, self.database)
        return type(self), (*fields, dict(self.driver_options), dict(self.node_options), self.more_hosts)

    def __hash__(self) -> int:
        # Mapping proxies are unhashable, and equal mappings may differ in order.
        options = frozenset(self.driver_options.items()), frozenset(self.node_options.items())
        fields = (
            self.backend,
            self.host,
            self.port,
            self.user,
            self.password,
            self.database,
            self.more_hosts,
        )
        return hash((*fields, options))

    def obscured(self) -> str:
        """The URL as text with the password (and any ``sslpassword``) replaced by ``***``."""
        scheme = _BACKENDS[self.backend][0]
        if self.backend == "aiosqlite":
            text = f"{scheme}:///{quote(self.database, safe='/:')}"
        elif self.backend == "fake":
            text = f"{scheme}://{self.database}"
        else:
            userinfo = ""
            if self.user is not None or self.password is not None:
                userinfo = (
                    quote(self.user or "", safe="") + (":***" if self.password is not None else "") + "@"
                )
            hosts = [(self.host or "", self.port), *self.more_hosts]
            authority = ",".join(
                host_text(host) + ("" if port is None else f":{port}") for host, port in hosts
            )
            text = f"{scheme}://{userinfo}{authority}/{quote(self.database, safe='')}"
        params = {**self.driver_options, **self.node_options}
        if params:
            text += "?" + "&".join(
                f"{quote(k, safe='')}={'***' if k.lower() in _SECRET_PARAMS else quote(v, safe='')}"
                for k, v in params.items()
            )
        return text

    def __repr__(self) -> str:
        return f"DatabaseURL({self.obscured()!r})"

    def __str__(self) -> str:
        return self.obscured()

    @property
    def is_memory(self) -> bool:
        """True for an in-memory sqlite database."""
        return self.backend == "aiosqlite" and self.database == ":memory:"

    @property
    def dialect(self) -> Dialect:
        """The SQL dialect: ``"postgresql"``, ``"mysql"`` or ``"sqlite"``."""
        return _BACKENDS[self.backend][1]


def _split(raw: str) -> tuple[str, str, str] | None:
    """Split into (scheme, authority, rest-after-authority), or None without ``scheme://``."""
    match = _SCHEME_RE.match(raw)
    if match is None:
        return None
    rest = raw[match.end() :]
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    return match.group(1), rest[:end], rest[end:]


def _shown(raw: str) -> str:
    """The raw URL as safe to put in an error message, quoted, or ``<unparseable>``."""
    parts = _split(raw)
    if parts is None:
        return "<unparseable>"
    scheme, authority, tail = parts
    if "@" in tail:
        # An unescaped '/', '?' or '#' in the password moves part of it past the authority.
        return repr(f"{scheme}://***")
    if "@" in authority:
        userinfo, hostport = authority.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        authority = f"{user}{':***' if colon else ''}@{hostport}"
    elif not authority.startswith("["):
        host, colon, port = authority.partition(":")
        if port and not (port.isascii() and port.isdigit()):
            authority = f"{host}:***"  # perhaps user:password with '@host' forgotten
    path, qmark, query = tail.partition("?")
    masked = []
    after_secret = False
    for param in query.split("&") if qmark else ():
        key, eq, _ = param.partition("=")
        if unquote(key).lower() in _SECRET_PARAMS:
            masked.append(f"{key}=***")
            after_secret = True
        else:
            # A part without '=' after a secret is most likely the secret's own tail ('&' unescaped).
            masked.append("***" if after_secret and not eq else param)
    return repr(f"{scheme}://{authority}{path}{qmark}{'&'.join(masked)}")


def _driver_option(backend: Backend, key: str, value: str) -> object:
    """Check one driver query parameter for ``backend``; return its converted value."""
    if backend in ("psycopg", "aiopg"):
        if key in _URL_CARRIED:
            raise ConfigurationError(
                f"URL query parameter {key!r} must be given in the URL itself"
                " (scheme://user:password@host:port/dbname), not in the query string"
            )
        if key not in LIBPQ_OPTIONS:
            raise ConfigurationError(
                f"URL query parameter {key!r} is not a libpq connection option for backend {backend!r}"
            )
        if key == "sslmode" and value not in _SSLMODES:
            raise ConfigurationError(f"sslmode must be one of {', '.join(_SSLMODES)}; got {value!r}")
        return value
    if backend == "fake":
        raise ConfigurationError(f"URL query parameter {key!r} is not an option of fake:// URLs")
    allowed = MYSQL_OPTIONS if backend == "aiomysql" else SQLITE_OPTIONS
    if key not in allowed:
        raise ConfigurationError(
            f"URL query parameter {key!r} is not an option for backend {backend!r}"
            f" (expected one of: {', '.join(sorted(allowed))})"
        )
    if key in ("local_infile", "foreign_keys"):
        if value.lower() not in _BOOLS:
            raise ConfigurationError(f"{key} must be a boolean (1/0/true/false/yes/no/on/off), got {value!r}")
        return _BOOLS[value.lower()]
    if key == "timeout":
        if not _FLOAT_RE.fullmatch(value) or not math.isfinite(float(value)) or float(value) < 0:
            raise ConfigurationError(f"timeout must be a number of seconds >= 0, got {value!r}")
        return float(value)
    if key == "cache_size":
        if not re.fullmatch(r"[+-]?[0-9]{1,18}", value):
            raise ConfigurationError(f"cache_size must be an integer, got {value!r}")
        return int(value)
    if key in _SQLITE_CHOICES:
        if value.lower() not in _SQLITE_CHOICES[key]:
            raise ConfigurationError(f"{key} must be one of {', '.join(_SQLITE_CHOICES[key])}; got {value!r}")
        return value.lower()
    return value


def _parse_query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    secret: str | None = None  # the last secret parameter seen
    for part in query.split("&"):
        if not part:
            continue  # tolerate "?a=1&&b=2" and a trailing "&"
        raw_key, eq, raw_value = part.partition("=")
        key = unquote(raw_key)
        if not key:
            raise ConfigurationError("URL query parameter with an empty name")
        if not eq:
            if secret is not None:
                # Most likely the rest of a secret with an unescaped '&': do not echo it.
                raise ConfigurationError(
                    f"URL query parameter without a value after {secret!r}"
                    " (percent-encode '&' in values as %26)"
                )
            raise ConfigurationError(f"URL query parameter {key!r} has no value (write {key}=value)")
        if key.lower() in _SECRET_PARAMS:
            secret = key
        if key in params:
            raise ConfigurationError(f"URL query parameter {key!r} given more than once")
        params[key] = unquote(raw_value)
    return params


def _parse(raw: str) -> DatabaseURL:
    if any(c.isspace() or not c.isprintable() for c in raw):
        raise ConfigurationError("URL contains whitespace or control characters (percent-encode them)")
    parts = _split(raw)
    if parts is None:
        raise ConfigurationError("expected scheme://...")
    scheme, authority, tail = parts
    backend = _SCHEMES.get(scheme.lower())
    if backend is None:
        raise ConfigurationError(f"unknown URL scheme {scheme!r} (expected one of: {', '.join(_SCHEMES)})")
    if "@" in tail:
        raise ConfigurationError(
            "'@' after the host part: percent-encode '@', '/', '?' and '#' in user, password,"
            " database and query values (%40, %2F, %3F, %23)"
        )
    if "#" in tail:
        raise ConfigurationError("URL fragment ('#') not allowed: percent-encode '#' as %23")
    path, _, query = tail.partition("?")
    params = _parse_query(query)
    node_options = {k: v for k, v in params.items() if k in NODE_OPTION_NAMES}
    driver_options = {k: v for k, v in params.items() if k not in NODE_OPTION_NAMES}
    for key, value in node_options.items():
        parse_node_option(key, value)
    for key, value in driver_options.items():
        _driver_option(backend, key, value)
    if "ssl_key" in driver_options and "ssl_cert" not in driver_options:
        raise ConfigurationError("URL query parameter 'ssl_key' needs 'ssl_cert' as well")

    if backend == "aiosqlite":
        if authority and (authority != ":memory:" or path):  # tolerate the common sqlite://:memory:
            raise ConfigurationError(
                "a sqlite URL takes no host or user: write sqlite:///relative.db or sqlite:////absolute.db"
            )
        return DatabaseURL(
            backend, None, None, None, None, unquote(path[1:]) or ":memory:", driver_options, node_options
        )

    if backend == "fake":
        if path not in ("", "/") or not _FAKE_NAME_RE.fullmatch(authority):
            raise ConfigurationError(
                "a fake URL is fake://NAME, NAME being a FakeServer's name (letters, digits, '_', '.', '-')"
            )
        return DatabaseURL(backend, None, None, None, None, authority, driver_options, node_options)

    user = password = None
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        raw_user, colon, raw_password = userinfo.partition(":")
        user, password = unquote(raw_user), (unquote(raw_password) if colon else None)
    (host, port), *more = parse_hosts(hostport, _BACKENDS[backend][2] or 0, _BACKENDS[backend][1])
    if not path[1:]:
        raise ConfigurationError("database name missing from URL path")
    if "/" in path[1:]:
        raise ConfigurationError("URL path must be only the database name (percent-encode '/' as %2F)")
    database = unquote(path[1:])
    return DatabaseURL(
        backend, host, port, user, password, database, driver_options, node_options, tuple(more)
    )


def parse_url(url: str) -> DatabaseURL:
    """Parse a database URL; raise ConfigurationError naming the offending part.

    Percent-escapes are decoded in the user, password, host, database and query parameters
    (``+`` is not a space, as in libpq). Node options are checked one by one but left as text.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"database URL must be a str, got {type(url).__name__}")
    if not url.strip():
        raise ConfigurationError("database URL is empty or only whitespace")
    try:
        return _parse(url)
    except ConfigurationError as exc:
        # The cause would carry nothing secret, but `from None` keeps tracebacks short.
        raise ConfigurationError(f"invalid database URL {_shown(url)}: {exc}") from None


def _mysql_ssl(options: Mapping[str, str]) -> ssl.SSLContext:
    ca = options.get("ssl_ca")
    try:
        context = ssl.create_default_context(cafile=ca)
        if ca is None:
            # Like PyMySQL: a client certificate alone encrypts but cannot verify the server.
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if "ssl_cert" in options:
            context.load_cert_chain(options["ssl_cert"], options.get("ssl_key"))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the MySQL TLS files: {exc}") from exc
    return context


def connect_kwargs(url: DatabaseURL) -> dict[str, Any]:
    """Keyword arguments for the backend's ``connect()``; keys whose value is None are left out.

    PostgreSQL: host, port, user, password, dbname and the libpq driver options (psycopg and
    psycopg2 both accept these keywords). MySQL: host, port, user, password, db, the driver
    options converted (``local_infile`` -> bool, ``ssl_*`` -> ``ssl`` context). SQLite:
    database and timeout (float, default 5.0 like sqlite3). The password is always its own
    argument, never formatted into a DSN string. ``connect_timeout`` is a node option the pool
    enforces, so it is not passed on.
    """
    try:
        options = {k: _driver_option(url.backend, k, v) for k, v in url.driver_options.items()}
    except ConfigurationError as exc:
        raise ConfigurationError(f"invalid database URL {url.obscured()!r}: {exc}") from None
    kwargs: dict[str, Any] = {"host": url.host, "port": url.port, "user": url.user, "password": url.password}
    if url.dialect == "postgresql":
        kwargs.update(dbname=url.database, **options)
        if url.more_hosts:  # libpq's comma-separated lists, one port per host
            hosts = [(url.host, url.port), *url.more_hosts]
            kwargs.update(host=",".join(str(h) for h, _ in hosts), port=",".join(str(p) for _, p in hosts))
    elif url.dialect == "mysql":
        kwargs["db"] = url.database
        kwargs.update((k, v) for k, v in options.items() if not k.startswith("ssl_"))
        if any(k.startswith("ssl_") for k in options):
            kwargs["ssl"] = _mysql_ssl(url.driver_options)
    elif url.backend == "aiosqlite":
        kwargs = {"database": url.database, "timeout": options.get("timeout", 5.0)}
    else:
        kwargs = {"database": url.database}
    return {k: v for k, v in kwargs.items() if v is not None}


def sqlite_pragmas(url: DatabaseURL) -> dict[str, str]:
    """Pragmas to run on each new sqlite connection, as ``{name: value}``.

    Values are validated against fixed choices or converted through int, so they are safe to
    format into ``PRAGMA name = value``. ``journal_mode`` defaults to ``wal`` except for
    ``:memory:``, which cannot use WAL.
    """
    if url.backend != "aiosqlite":
        raise ConfigurationError(f"sqlite_pragmas() needs a sqlite URL, got backend {url.backend!r}")
    pragmas = {} if url.is_memory else {"journal_mode": "wal"}
    for key, value in url.driver_options.items():
        if key != "timeout":
            converted = _driver_option("aiosqlite", key, value)
            pragmas[key] = ("on" if converted else "off") if isinstance(converted, bool) else str(converted)
    return pragmas
