"""A background task that repeats one step at an interval, in the running event loop.

The health monitor and a topology provider's follower both need one: started on first use in
whatever loop is running, never two at once, and stopped for certain on close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["Periodic"]


class Periodic:
    """Runs ``step()`` every ``interval`` seconds once started; a failed step is logged, not fatal."""

    def __init__(
        self, name: str, step: Callable[[], Awaitable[object]], interval: float, logger: logging.Logger
    ) -> None:
        self.name = name
        self.interval = interval
        self._step = step
        self._logger = logger
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        task = self._task
        return task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop()

    def ensure_running(self) -> None:
        """Start the task in the running loop if it is not running there."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            # Cancel until it is done: a cancellation can be lost (Python 3.11's wait_for()
            # returns the inner result when it completes in the same loop turn as the cancel),
            # so one cancel() is not enough to end the task. wait() neither raises the task's
            # CancelledError nor swallows our own.
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.1)

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad round must not end the task
                self._logger.exception("%s: a round failed; trying again in %gs", self.name, self.interval)
            # A cancellation lost by a wait_for() inside the step is honoured here:
            # asyncio.run()'s shutdown cancels this task only once.
            task = asyncio.current_task()
            if task is not None and getattr(task, "cancelling", lambda: 0)():
                raise asyncio.CancelledError
            await asyncio.sleep(self.interval)
