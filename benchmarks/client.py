"""The orchestrator's side of a worker process: start it, send commands, read replies."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "benchmarks" / ".logs"


class WorkerError(RuntimeError):
    pass


class Worker:
    """``python -m benchmarks.worker MODULE`` under the contender's own python."""

    def __init__(self, name: str, module: str, python: str, timeout: float = 300) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.timeout = timeout
        self._log: TextIO = (LOGS / f"{name}.log").open("a")
        self.proc = subprocess.Popen(
            [python, "-m", "benchmarks.worker", module],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        hello = self._read()
        if not hello.get("ready"):
            self.stop()
            raise WorkerError(hello.get("error") or f"worker exited (see {LOGS / (name + '.log')})")
        self.can_stream = bool(hello.get("can_stream"))

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.poll()
            return {
                "ready": False,
                "ok": False,
                "error": f"worker exited ({code}), see .logs/{self.name}.log",
            }
        reply: dict[str, Any] = json.loads(line)
        return reply

    def call(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"ok": False, "error": f"worker gone, see .logs/{self.name}.log"}
        reply = self._read()
        if not reply.get("ok") and reply.get("trace"):
            self._log.write(reply["trace"])
            self._log.flush()
        reply.pop("trace", None)
        return reply

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.close()
                self.proc.wait(10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log.close()
