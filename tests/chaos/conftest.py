"""Chaos scenarios: load through a Manager against the real cluster while a fault is injected.

``make chaos`` runs them at full size (``AIOPD_CHAOS=full``); inside ``make test`` they run in
their short form. Every scenario records its figures with :func:`chaos.record`; they are printed
at the end of the run and, when ``AIOPD_CHAOS_REPORT`` names a file, written there as JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from chaos.invariants import FIGURES, ensure_chaos_databases


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.write_sep("=", "chaos figures")
    for entry in FIGURES:
        figures = " ".join(f"{k}={v}" for k, v in entry.items() if k not in ("scenario", "backend"))
        terminalreporter.write_line(f"{entry['scenario']:<28} {entry['backend']:<8} {figures}")
    report = os.environ.get("AIOPD_CHAOS_REPORT")
    if report:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(json.dumps(FIGURES, indent=2) + "\n")


@pytest.fixture(scope="session", autouse=True)
def chaos_databases() -> None:
    """The ``chaos`` database on each cluster (created by scripts/cluster.sh since it was added;
    an older running cluster gets it here)."""
    ensure_chaos_databases()
