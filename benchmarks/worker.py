"""A contender's worker process: reads JSON commands on stdin, answers JSON lines on stdout.

``python -m benchmarks.worker CONTENDER`` (run with the contender's own venv python).
Commands: ``{"op": "measure", "workload", "concurrency", "seconds", "warmup"}``,
``{"op": "stream", "rows"}``, ``{"op": "versions"}``, ``{"op": "quit"}``. The pool is opened
and closed around every command, so idle workers hold no server connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import resource
import sys
import time
import traceback
from importlib import metadata
from typing import Any

from .common import Contender, measure

# aiopeewee_dist itself runs from the checkout (reported by the orchestrator, with the git commit).
VERSION_PACKAGES = (
    "asyncpg",
    "psycopg",
    "psycopg-pool",
    "aiopg",
    "peewee",
    "peewee-async",
    "peewee-aio",
    "aio-databases",
    "sqlalchemy",
    "greenlet",
    "tortoise-orm",
    "aiosqlite",
)


def load(name: str) -> Contender:
    module = importlib.import_module(f"benchmarks.contenders.{name}")
    contender: Contender = module.Contender()
    return contender


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for package in VERSION_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


async def handle(contender: Contender, command: dict[str, Any]) -> dict[str, Any]:
    op = command["op"]
    if op == "versions":
        return {"versions": versions()}
    await contender.open()
    try:
        if op == "measure":
            return await measure(
                contender,
                command["workload"],
                int(command["concurrency"]),
                float(command["seconds"]),
                float(command["warmup"]),
            )
        if op == "stream":
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            start = time.perf_counter()
            rows = await contender.stream(int(command["rows"]))
            elapsed = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return {
                "rows": rows,
                "seconds": elapsed,
                "rows_per_s": rows / elapsed,
                "rss_before_mb": before / 1024,
                "peak_rss_mb": peak / 1024,
            }
        raise ValueError(f"unknown op {op!r}")
    finally:
        await contender.close()


async def serve(name: str, out: Any) -> None:
    contender = load(name)
    out.write(json.dumps({"ready": True, "can_stream": contender.can_stream}) + "\n")
    out.flush()
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        try:
            reply = {"ok": True, **await handle(contender, command)}
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def main() -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # library prints must not corrupt the protocol
    try:
        asyncio.run(serve(sys.argv[1], out))
    except Exception as exc:
        out.write(json.dumps({"ready": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        out.flush()
        raise


if __name__ == "__main__":
    main()
