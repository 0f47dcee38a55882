"""``make soak`` in miniature: the runner works end to end (faults, windows, verdict)."""

from __future__ import annotations

import pytest

from chaos.soak import soak

pytestmark = pytest.mark.cluster


async def test_soak_runner_short(capsys: pytest.CaptureFixture[str]) -> None:
    status = await soak(minutes=0.2, fault_every=3.0, fault_for=1.5, report_every=3.0, backend="psycopg")
    out = capsys.readouterr().out
    assert status == 0, out
    assert "fault: replica down" in out and '"lost_writes": 0' in out, out
