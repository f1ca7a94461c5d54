"""A coroutine run every few seconds in the background, for sweeps and autoscaling ticks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    """Runs ``step`` every ``interval_s`` (counted from the start of each run) until stopped,
    the first time at once when ``now`` is set; a failing run is logged and the next one happens
    as planned."""

    def __init__(
        self,
        interval_s: float,
        step: Callable[[], Awaitable[object]],
        what: str,
        *,
        now: bool = False,
    ) -> None:
        self.interval_s = interval_s
        self.step = step
        self.what = what
        self.now = now
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        due = self.now
        while True:
            began = time.monotonic()
            if due:
                try:
                    await self.step()
                except Exception:
                    log.exception("%s failed", self.what)
            due = True
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - began)))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
