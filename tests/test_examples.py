"""The examples run as a user would run them: a fresh interpreter, exit status 0, the expected output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart.py"

EXPECTED_LINES = [
    "created tables: author, book",
    "inserted authors: Ada Lovelace (id=1), Alan Turing (id=2)",
    "get: Alan Turing has id 2",
    "savepoint rolled back (changed my mind); the outer transaction goes on",
    "after commit: 3 books, draft present: False",
    "read_only: write refused (write attempted inside manager.read_only())",
    "iterate: #3 Sketch of the Analytical Engine",
    "streamed 3 books",
    "manager closed",
]


def test_quickstart_runs_and_cleans_up(tmp_path: Path) -> None:
    # TMPDIR points into tmp_path so we can check that the script leaves no database behind;
    # -W default shows the warnings (ResourceWarning among them) that are hidden by default.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-W", "default", str(QUICKSTART)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    for expected in EXPECTED_LINES:
        assert expected in lines, f"missing {expected!r} in:\n{proc.stdout}"
    assert list(tmp_path.iterdir()) == []
