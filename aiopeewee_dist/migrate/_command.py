"""``aiopeewee-dist migrate up|status FOLDER``: the migrations runner from the command line.

The database is ``--primary`` (default ``$DATABASE_URL``), or the shards given with
``--shard NAME=URL`` (repeatable). ``up --dry-run`` prints the SQL and changes nothing.
Exit status: 0 done, 1 a migration failed or the lock was not obtained, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any, TextIO

from .._errors import AioPeeweeDistError, ConfigurationError
from .._manager import Manager
from ..sharding import ShardedManager
from ._errors import MigrationError
from ._runner import Migrations, Planned, Status

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("migrate", help="apply or inspect playhouse.migrate migrations")
    parser.add_argument("action", choices=("up", "status"), help="apply pending migrations, or list them")
    parser.add_argument("folder", help="folder of NNNN_description.py files, each with up(migrator)")
    parser.add_argument("--primary", help="primary URL (default: $DATABASE_URL)")
    parser.add_argument(
        "--shard", action="append", default=[], metavar="NAME=URL", help="a shard (repeatable)"
    )
    parser.add_argument("--dry-run", action="store_true", help="up: print the SQL, change nothing")
    parser.add_argument("--table", default="aiopeewee_migrations", help="history table")
    parser.add_argument("--lock-timeout", type=float, default=60.0, help="seconds to wait for another deploy")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")


def _manager(args: argparse.Namespace) -> Manager | ShardedManager:
    options: dict[str, Any] = {"health_check_interval": None, "read_your_writes": None}
    if args.shard:
        shards = {}
        for item in args.shard:
            name, sep, url = item.partition("=")
            if not sep or not name or not url:
                raise ConfigurationError(f"--shard takes NAME=URL, got {item!r}")
            shards[name] = url
        return ShardedManager(shards, **options)
    primary = args.primary or os.environ.get("DATABASE_URL", "")
    if not primary:
        raise ConfigurationError("no database: pass --primary, --shard NAME=URL, or set DATABASE_URL")
    return Manager(primary, **options)


def _print_status(status: dict[str, Status], out: TextIO) -> None:
    for target, entry in status.items():
        pending = ", ".join(entry.pending) or "none"
        out.write(f"{target}: at {entry.version or 'nothing applied'}; pending: {pending}\n")
        if entry.unknown:
            out.write(f"{target}: applied but not in the folder: {', '.join(entry.unknown)}\n")


def _print_plan(plans: dict[str, list[Planned]], out: TextIO) -> None:
    for target, planned in plans.items():
        if not planned:
            out.write(f"-- {target}: nothing to apply\n")
        for entry in planned:
            out.write(f"-- {entry.name} on {target}\n")
            for sql, params in entry.statements:
                out.write(f"{sql};" + (f"  -- params: {list(params)!r}" if params else "") + "\n")
            if entry.incomplete:
                out.write(f"-- (plan stops here: {entry.incomplete})\n")


async def _run(args: argparse.Namespace, manager: Manager | ShardedManager, out: TextIO) -> int:
    migrations = Migrations(args.folder, table=args.table, lock_timeout=args.lock_timeout)
    try:
        if args.action == "status":
            status = await migrations.status(manager)
            if args.json:
                json.dump({t: vars(s) | {"version": s.version} for t, s in status.items()}, out, indent=2)
                out.write("\n")
            else:
                _print_status(status, out)
        elif args.dry_run:
            plans = await migrations.plan(manager)
            if args.json:
                json.dump({t: [vars(p) for p in planned] for t, planned in plans.items()}, out, indent=2)
                out.write("\n")
            else:
                _print_plan(plans, out)
        else:
            done = await migrations.up(manager)
            for target, names in done.items():
                out.write(f"{target}: applied {', '.join(names) if names else 'nothing (up to date)'}\n")
        return 0
    finally:
        await manager.close()


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        manager = _manager(args)
    except ConfigurationError as exc:
        err.write(f"aiopeewee-dist: {exc}\n")
        return 2
    try:
        return asyncio.run(_run(args, manager, out))
    except MigrationError as exc:
        err.write(f"aiopeewee-dist migrate: {exc}\n")
        return 1
    except AioPeeweeDistError as exc:  # a database that cannot be reached, say
        err.write(f"aiopeewee-dist migrate: {exc}\n")
        return 1
