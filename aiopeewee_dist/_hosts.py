"""The host part of a URL: ``host:port``, ``[v6]:port``, or libpq's ``h1:p1,h2:p2`` list."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote, unquote

from ._errors import ConfigurationError

__all__ = ["host_text", "parse_hosts"]


def parse_hosts(hostport: str, default_port: int, dialect: str) -> list[tuple[str, int]]:
    """``[(host, port), ...]``; several only for PostgreSQL, whose libpq tries them in turn."""
    hosts = [_parse_hostport(part, default_port) for part in hostport.split(",")]
    if len(hosts) > 1 and dialect != "postgresql":
        raise ConfigurationError(
            "several hosts in one URL are a libpq feature: only postgresql:// URLs take them"
        )
    return hosts


def host_text(host: str) -> str:
    return quote(host, safe="") if host.startswith("/") or ":" not in host else f"[{quote(host, safe=':')}]"


def _parse_hostport(hostport: str, default_port: int) -> tuple[str, int]:
    if hostport.startswith("["):
        host_text, bracket, after = hostport[1:].partition("]")
        if not bracket:
            raise ConfigurationError("IPv6 host is missing its closing ']'")
        host = unquote(host_text)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigurationError(f"invalid IPv6 address {host!r} in brackets") from None
        if after and not after.startswith(":"):
            raise ConfigurationError(f"unexpected text {after!r} after ']' in the host")
        port_text: str | None = after[1:] if after else None
    else:
        if hostport.count(":") > 1:
            raise ConfigurationError("IPv6 host addresses must be written in brackets, e.g. [::1]")
        host_text, colon, port = hostport.partition(":")
        host, port_text = unquote(host_text), (port if colon else None)
        if not host:
            raise ConfigurationError("host missing (write scheme://user:password@host:port/dbname)")
        # A decoded ':' would read as IPv6 when obscured() writes the URL back; '/...' is a socket dir.
        bad = "[]" if host.startswith("/") else "[]:"
        if any(c in bad or c.isspace() or not c.isprintable() for c in host):
            raise ConfigurationError(f"invalid host {host!r}")
    if port_text is None:
        return host, default_port
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
        # Only digits are echoed: text here may be a password whose '@host' was left out.
        got = repr(port_text) if port_text.isascii() and port_text.isdigit() else "a non-numeric value"
        raise ConfigurationError(f"port must be an integer 1-65535, got {got}")
    return host, int(port_text)
