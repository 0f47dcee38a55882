"""``aiopeewee-dist status``: one line per node (role, up, lag, latency, pool), or JSON.

``aiopeewee-dist migrate up|status FOLDER`` runs migrations (see :mod:`aiopeewee_dist.migrate`).

URLs come from ``--primary``/``--replica`` or from ``DATABASE_URL`` and the
comma-separated ``DATABASE_REPLICA_URLS``. The exit status is 0 when the primary
answers and takes writes, 1 when it does not answer or is in recovery / read-only (a
failover happened, or the URL points at a standby), 2 for bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ._errors import ConfigurationError
from ._manager import Manager

__all__ = ["main"]

_COLUMNS = ("node", "role", "up", "lag", "latency", "pool", "error")
#: The error column is one line, cut to this many characters (``--json`` has it in full).
_ERROR_WIDTH = 100


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiopeewee-dist", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="check every node and print a table")
    status.add_argument("--primary", help="primary URL (default: $DATABASE_URL)")
    status.add_argument("--replica", action="append", default=None, help="replica URL (repeatable)")
    status.add_argument("--json", action="store_true", help="print JSON for machines")
    status.add_argument("--timeout", type=float, default=3.0, help="seconds allowed per check")
    from .migrate._command import add_parser  # playhouse.migrate is imported only for this command

    add_parser(commands)
    return parser


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"


def _rows(report: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for entry in report:
        pool = entry["pool"]
        rows.append(
            (
                entry["name"],
                entry["role"],
                "yes" if entry["up"] else "NO",
                _seconds(entry["lag"]) if entry["up"] else "-",
                _seconds(entry["latency"]) if entry["up"] else "-",
                f"{pool['acquired']}/{pool['size']} (max {pool['max_size']})",
                _one_line(_problem(entry)),
            )
        )
    return rows


def _problem(entry: dict[str, Any]) -> str:
    if entry["role"] == "primary" and entry["up"] and entry.get("read_only"):
        return "NOT WRITABLE: the primary is in recovery / read-only"
    return str(entry["last_error"] or "")


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_WIDTH else text[: _ERROR_WIDTH - 3] + "..."


def _print_table(report: list[dict[str, Any]], out: TextIO) -> None:
    rows = [_COLUMNS, *_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    for row in rows:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
        )


async def _status(manager: Manager) -> list[dict[str, Any]]:
    try:
        return await manager.check_connections()
    finally:
        await manager.close()


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    if args.command == "migrate":
        from .migrate._command import run

        return run(args, out, sys.stderr)
    # The table already says which node is down; the library's warnings would repeat it.
    library_logger = logging.getLogger("aiopeewee_dist")
    if not library_logger.handlers and not logging.getLogger().handlers:
        library_logger.setLevel(logging.ERROR)
    primary = args.primary or os.environ.get("DATABASE_URL", "")
    replicas = args.replica
    if replicas is None:
        replicas = [u.strip() for u in os.environ.get("DATABASE_REPLICA_URLS", "").split(",") if u.strip()]
    try:
        if not primary:
            raise ConfigurationError("no primary URL: pass --primary or set DATABASE_URL")
        manager = Manager(
            primary,
            replicas,
            health_check_interval=None,
            health_check_timeout=args.timeout,
            connect_timeout=args.timeout,
            auto_failover=False,
            eject_after=1,
        )
    except ConfigurationError as exc:
        sys.stderr.write(f"aiopeewee-dist: {exc}\n")
        return 2
    report = asyncio.run(_status(manager))
    if args.json:
        json.dump(report, out, indent=2, default=str)
        out.write("\n")
    else:
        _print_table(report, out)
    primary_ok = any(
        entry["role"] == "primary" and entry["up"] and not entry.get("read_only") for entry in report
    )
    return 0 if primary_ok else 1
