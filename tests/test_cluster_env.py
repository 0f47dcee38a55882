"""``eval "$(scripts/cluster.sh env)"`` is enough for ``Manager.from_env()`` and the CLI
(issue 12, item 8): it prints ``DATABASE_URL`` and ``DATABASE_REPLICA_URLS`` too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cluster
import pytest
from conftest import topology_for

pytestmark = pytest.mark.cluster

PROGRAM = """
import asyncio, json
from aiopeewee_dist import Manager

async def main():
    async with Manager.from_env() as manager:
        print(json.dumps([node.name for node in manager.nodes]))

asyncio.run(main())
"""


def test_cluster_env_sets_the_variables_from_env_reads(tmp_path: Path) -> None:
    topology_for("psycopg", tmp_path)
    script = (
        f'eval "$(bash {cluster.SCRIPT} env)" && '
        f'{sys.executable} -c "$PROGRAM" && {sys.executable} -m aiopeewee_dist status --json'
    )
    proc = subprocess.run(
        ["bash", "-c", script],
        env={**_clean_env(), "PROGRAM": PROGRAM},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    names_line, _, status_json = proc.stdout.partition("\n")
    assert json.loads(names_line) == ["primary", "replica-1", "replica-2"]
    report = json.loads(status_json)
    assert [(e["name"], e["up"]) for e in report] == [
        ("primary", True),
        ("replica-1", True),
        ("replica-2", True),
    ]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_REPLICA_URLS")}
