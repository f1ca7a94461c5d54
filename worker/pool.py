"""The local scale target of ``asyncgw up``: each API's replicas are ``Worker``s in this
process, each with ``max_concurrency`` slots, started and stopped as the autoscaler says."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from asyncgw.config import ApiConfig
from worker.runner import Worker

log = logging.getLogger(__name__)


class WorkerPools:
    """Replicas per API; ``make(api)`` builds one (not yet started)."""

    def __init__(self, make: Callable[[ApiConfig], Worker]) -> None:
        self._make = make
        self._pools: dict[str, list[Worker]] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    async def replicas(self, api: ApiConfig) -> int:
        return len(self._pools.get(api.name, []))

    async def scale(self, api: ApiConfig, replicas: int) -> None:
        pool = self._pools.setdefault(api.name, [])
        while len(pool) < replicas:
            worker = self._make(api)
            await worker.start()
            pool.append(worker)
        while len(pool) > replicas:
            # A replica going away finishes its requests within the grace period, like a pod;
            # the autoscaler does not wait for it.
            task = asyncio.create_task(pool.pop().stop())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def stop(self) -> None:
        """Stop every replica (each within its grace period) and wait for them."""
        workers = [w for pool in self._pools.values() for w in pool]
        self._pools.clear()
        await asyncio.gather(*(w.stop() for w in workers), *self._stopping)
