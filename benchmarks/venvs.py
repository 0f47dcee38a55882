"""Creates the contenders' virtual environments under ``benchmarks/.venvs/`` (stdlib only).

``python3 -m benchmarks.venvs`` installs what is missing; a venv whose install failed is
recorded (``.bench-failed``) so the orchestrator can report its contenders as skipped.
peewee-aio pins a newer peewee than peewee-async allows, so it lives apart; Tortoise too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "benchmarks" / ".venvs"

#: venv name -> pip requirements (from PyPI by name).
SPECS: dict[str, list[str]] = {
    "main": [
        "-e",
        ".[all]",  # every driver: the limit and backends measures use them all
        "greenlet",
        "sqlalchemy[asyncio]>=2",
        "matplotlib",
    ],
    "peewee-aio": ["peewee-aio[asyncpg]"],
    "tortoise": ["tortoise-orm[asyncpg]"],
}


def python(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def failure(name: str) -> str | None:
    """Why venv ``name`` is unusable, or None if it is ready."""
    failed = VENVS / name / ".bench-failed"
    if failed.exists():
        return failed.read_text().strip() or "install failed"
    if not (VENVS / name / ".bench-installed").exists():
        return "not installed (run python3 -m benchmarks.venvs)"
    return None


def ensure(name: str) -> str | None:
    """Create and fill venv ``name`` unless it is up to date; return a failure reason or None."""
    spec = json.dumps(SPECS[name])
    path = VENVS / name
    stamp = path / ".bench-installed"
    if stamp.exists() and stamp.read_text() == spec:
        return None
    print(f"[bench] installing venv {name}: {' '.join(SPECS[name])}", file=sys.stderr, flush=True)
    failed = path / ".bench-failed"
    try:
        if not python(name).exists():
            venv.create(path, with_pip=True)
        failed.unlink(missing_ok=True)
        proc = subprocess.run(
            [str(python(name)), "-m", "pip", "install", "-q", "--disable-pip-version-check", *SPECS[name]],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        reason = f"venv creation failed: {exc}"
    else:
        if proc.returncode == 0:
            stamp.write_text(spec)
            return None
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        reason = "pip install failed: " + " | ".join(tail)
    path.mkdir(parents=True, exist_ok=True)
    failed.write_text(reason)
    print(f"[bench] venv {name}: {reason}", file=sys.stderr, flush=True)
    return reason


def main() -> None:
    quick = os.environ.get("BENCH_QUICK", "0") not in ("0", "", "false")
    for name in ("main",) if quick else SPECS:  # the quick contenders all run in "main"
        ensure(name)


if __name__ == "__main__":
    main()
