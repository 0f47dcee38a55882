"""The snippet of docs/telemetry.md runs: the FastAPI app answers and serves /metrics."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "telemetry.md"


async def test_the_documented_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (block,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "app"}
    exec(compile(block, "app.py", "exec"), namespace)
    app, manager = namespace["app"], namespace["manager"]
    try:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/answer")).json() == {"answer": 42}
            metrics = (await client.get("/metrics")).text
        assert 'db_client_connection_wait_time_seconds_count{aiopeewee_dist_manager="app"' in metrics
    finally:
        from aiopeewee_dist.telemetry import uninstrument

        uninstrument(manager)  # type: ignore[arg-type]
        await manager.close()  # type: ignore[attr-defined]
    assert "telemetry-demo.db" in os.listdir(tmp_path)
