"""Group concurrent writes into one round trip.

A :class:`Batcher` takes items from many coroutines and hands them to one ``flush`` call at a
time. There is no timer: the first item after a quiet spell is flushed on the next turn of the
event loop, and whatever arrives while a flush is on the wire waits for the following one. Under
light load every write goes alone, as fast as before; under heavy load writes share round trips,
which is what a store that spends its time per command, not per document, needs.

Each caller gets its own item's outcome, or its own exception, exactly as if it had written alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Coalesce concurrent :meth:`submit` calls into calls of ``flush(items)``.

    ``flush`` returns one outcome per item, in order; an exception it raises is every item's
    outcome. ``key`` names what an item writes to: two items with the same key never share a
    flush, so they apply in the order they were submitted.
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        key: Callable[[T], Hashable],
        max_items: int = 256,
    ) -> None:
        self._flush = flush
        self._key = key
        self._max_items = max_items
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        # A caller that gives up does not take its write back: the flush still carries it.
        return await future

    async def _run(self) -> None:
        while self._pending:
            batch = self._take()
            try:
                outcomes = await self._flush([item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch + self._pending:
                    future.cancel()
                self._pending = []
                raise
            except Exception as exc:  # every waiter of the batch hears how its write ended
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        """The next batch: items in submission order, up to the first repeated key."""
        seen: set[Hashable] = set()
        count = 0
        for item, _ in self._pending:
            key = self._key(item)
            if key in seen or count == self._max_items:
                break
            seen.add(key)
            count += 1
        batch, self._pending = self._pending[:count], self._pending[count:]
        return batch
