"""What the gateway learns from the queue's signals: clients waiting on ``Prefer: wait`` are
woken when their request ends, and the backlog of each API is known without asking the broker on
every submit."""

from __future__ import annotations

import asyncio
import time

from asyncgw.backends import Queue

#: How old a cached queue depth may be before a submit asks the broker again.
DEPTH_TTL_S = 1.0


class Waiters:
    """Futures of requests a client is waiting for, resolved by ``done`` signals."""

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[None]] = {}

    def register(self, request_id: str) -> asyncio.Future[None]:
        future = self._futures.get(request_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._futures[request_id] = future
        return future

    def discard(self, request_id: str) -> None:
        self._futures.pop(request_id, None)

    def on_signal(self, kind: str, api: str, request_id: str) -> None:
        future = self._futures.get(request_id)
        if kind == "done" and future is not None and not future.done():
            future.set_result(None)

    async def wait(self, future: asyncio.Future[None], timeout_s: float) -> bool:
        """Whether the request ended within ``timeout_s``."""
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            return False
        return True


class Depths:
    """Ready-message counts per API, refreshed at most once per ``DEPTH_TTL_S``, so that
    ``max_queue_length`` costs one broker round trip per second, not one per submit."""

    def __init__(self, queue: Queue, ttl_s: float = DEPTH_TTL_S) -> None:
        self._queue = queue
        self._ttl_s = ttl_s
        self._known: dict[str, tuple[float, int]] = {}
        self._pending: dict[str, asyncio.Task[int]] = {}

    async def get(self, api: str) -> int:
        known = self._known.get(api)
        if known is not None and time.monotonic() - known[0] < self._ttl_s:
            return known[1]
        task = self._pending.get(api)
        if task is None:
            task = asyncio.create_task(self._queue.depth(api))
            self._pending[api] = task
            task.add_done_callback(lambda _: self._pending.pop(api, None))
        depth = await asyncio.shield(task)
        self._known[api] = (time.monotonic(), depth)
        return depth
