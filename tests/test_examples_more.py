"""The examples run as a user runs them: a fresh interpreter, exit status 0, the expected output,
nothing left behind (``TMPDIR`` points into the test's own directory, which must end up empty).

``replicas.py`` also runs on the PostgreSQL cluster (``DATABASE_URL`` / ``DATABASE_REPLICA_URLS``),
where its reads must land on the standbys. The Conduit backend is started the way
``make conduit`` starts it (uvicorn, ``--factory conduit.app:create_app``) and answers on loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cluster
import pytest
from conftest import EXAMPLES, expect, run_example, topology_for

ROOT = Path(__file__).resolve().parent.parent


def test_replicas_on_sqlite(tmp_path: Path) -> None:
    lines = run_example("replicas.py", tmp_path)
    expect(
        lines,
        "nodes: primary",
        "insert ran on: primary",
        "read after the write ran on: primary, saw 1 note(s)",
        "another request with the token ran on: primary, found the note: True",
        "inside primary(): primary",
        "done",
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.cluster
def test_replicas_on_the_postgres_cluster(tmp_path: Path) -> None:
    topology_for("psycopg", tmp_path)  # skips (or fails under AIOPD_REQUIRE_CLUSTER=1) without it
    env = {"DATABASE_URL": cluster.PG_PRIMARY, "DATABASE_REPLICA_URLS": ",".join(cluster.PG_REPLICAS)}
    lines = run_example("replicas.py", tmp_path, env)
    expect(
        lines, "nodes: primary, replica-1, replica-2", "insert ran on: primary", "inside primary(): primary"
    )
    expect(lines, "inside using('replica-2'): replica-2", "done")
    # Causal read-your-writes: the read waits for a standby that replayed the insert, so it
    # lands on a standby (or on the primary if none caught up within causal_wait) and sees the row.
    [after_write] = [line for line in lines if line.startswith("read after the write ran on: ")]
    assert after_write.endswith("saw 1 note(s)")
    assert any(f"ran on: {name}," in after_write for name in ("replica-1", "replica-2", "primary"))
    assert list(tmp_path.iterdir()) == []


def test_transactions(tmp_path: Path) -> None:
    lines = run_example("transactions.py", tmp_path)
    expect(
        lines,
        "after transfer: {'ada': '70.00', 'alan': '50.00'}",
        "refused and rolled back: alan has 50.00, needs 500.00; balances unchanged: "
        "{'ada': '70.00', 'alan': '50.00'}",
        "duplicate owner: the savepoint rolled back, the outer transaction goes on",
        "after commit: {'ada': '70.00', 'alan': '50.00', 'grace': '5.00'}",
        "total money (read-only transaction): 125.00",
        "write refused: write inside a read-only transaction on node 'primary'",
        "done",
    )
    assert list(tmp_path.iterdir()) == []


def test_fastapi_app(tmp_path: Path) -> None:
    lines = run_example("fastapi_app.py", tmp_path)
    expect(
        lines,
        "POST /notes -> 201 {'id': 1, 'text': 'hello'}",
        "  read-your-writes token in the header: True, in a cookie: True",
        "GET /notes/1 -> 200 {'id': 1, 'text': 'hello'}",
        "GET /notes/1/fresh -> 200",
        "GET /notes/999999 -> 404",
        "done",
    )
    assert list(tmp_path.iterdir()) == []


def test_aiohttp_app(tmp_path: Path) -> None:
    lines = run_example("aiohttp_app.py", tmp_path)
    expect(
        lines,
        "POST /notes -> 201 {'id': 1, 'text': 'hello'}",
        "  read-your-writes token in the header: True",
        "GET /notes/1 -> 200 {'id': 1, 'text': 'hello'}",
        "GET /notes/1/fresh -> 200",
        "GET /notes/999999 -> 404",
        "done",
    )
    assert list(tmp_path.iterdir()) == []


def test_serverless_handler(tmp_path: Path) -> None:
    lines = run_example("serverless_handler.py", tmp_path)
    expect(
        lines,
        "{'statusCode': 201, 'body': 'signup #1'}",
        "{'statusCode': 201, 'body': 'signup #2'}",
        "{'statusCode': 409, 'body': 'ada@example.com is already signed up'}",
        "{'statusCode': 200, 'body': '2 signups'}",
        "done",
    )
    assert list(tmp_path.iterdir()) == []


def test_conduit_serves_like_make_conduit(tmp_path: Path) -> None:
    """``uvicorn --app-dir examples --factory conduit.app:create_app`` (what ``make conduit`` runs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_REPLICA_URLS")},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'conduit.db'}",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(EXAMPLES),
        "--factory",
        "conduit.app:create_app",
    ]
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        body = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tags", timeout=2) as answer:
                    body = answer.read().decode()
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        assert body == '{"tags":[]}', f"no answer from the server (exit {server.poll()})"
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/user")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=2)
        assert refused.value.code == 401
        refused.value.close()
    finally:
        server.terminate()
        out, err = server.communicate(timeout=15)
    # uvicorn re-raises the SIGTERM it handled, after a graceful shutdown (lifespan included).
    assert server.returncode in (0, -signal.SIGTERM), f"exit {server.returncode}\n{out}\n{err}"
    assert "Application shutdown complete." in err and "Traceback" not in err, err
    assert (tmp_path / "conduit.db").exists()  # the lifespan created the tables there
