"""The write batcher: concurrent submits share flushes, and each caller gets its own outcome."""

from __future__ import annotations

import asyncio

import pytest

from asyncgw.backends.batching import Batcher


class Recorder:
    """A flush that records the batches it is given and answers each item with ``item * 10``,
    or with an exception for items named in ``errors``."""

    def __init__(self, errors: frozenset[int] = frozenset()) -> None:
        self.batches: list[list[int]] = []
        self.errors = errors
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        self.entered.set()
        await self.gate.wait()
        return [ValueError(i) if i in self.errors else i * 10 for i in items]


async def test_a_lone_submit_is_flushed_alone() -> None:
    flush = Recorder()
    batcher: Batcher[int, int] = Batcher(flush, key=lambda i: i)
    assert await batcher.submit(1) == 10
    assert flush.batches == [[1]]


async def test_concurrent_submits_share_one_flush() -> None:
    flush = Recorder()
    batcher: Batcher[int, int] = Batcher(flush, key=lambda i: i)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert flush.batches == [[0, 1, 2, 3, 4]]


async def test_submits_during_a_flush_wait_for_the_next_one() -> None:
    flush = Recorder()
    flush.gate.clear()
    batcher: Batcher[int, int] = Batcher(flush, key=lambda i: i)
    first = asyncio.create_task(batcher.submit(1))
    await flush.entered.wait()
    later = [asyncio.create_task(batcher.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0)
    assert flush.batches == [[1]]
    flush.gate.set()
    assert await first == 10
    assert [await t for t in later] == [20, 30]
    assert flush.batches == [[1], [2, 3]]


async def test_items_with_the_same_key_never_share_a_flush() -> None:
    flush = Recorder()
    batcher: Batcher[int, int] = Batcher(flush, key=lambda i: i % 2)
    await asyncio.gather(*(batcher.submit(i) for i in (1, 2, 3, 4)))
    assert flush.batches == [[1, 2], [3, 4]]


async def test_batches_are_capped() -> None:
    flush = Recorder()
    batcher: Batcher[int, int] = Batcher(flush, key=lambda i: i, max_items=2)
    await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    assert flush.batches == [[0, 1], [2, 3], [4]]


async def test_each_caller_gets_its_own_exception() -> None:
    flush = Recorder(errors=frozenset({2}))
    batcher: Batcher[int, int] = Batcher(flush, key=lambda i: i)
    results = await asyncio.gather(*(batcher.submit(i) for i in (1, 2, 3)), return_exceptions=True)
    assert results[0] == 10 and results[2] == 30
    assert isinstance(results[1], ValueError)


async def test_a_failed_flush_fails_its_batch_and_the_next_batch_still_runs() -> None:
    calls: list[list[int]] = []

    async def flush(items: list[int]) -> list[int | BaseException]:
        calls.append(items)
        if len(calls) == 1:
            raise ConnectionError("store down")
        return [i for i in items]

    batcher: Batcher[int, int] = Batcher(flush, key=lambda i: i)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)
    second = asyncio.create_task(batcher.submit(2))
    with pytest.raises(ConnectionError):
        await first
    assert await second == 2


async def test_a_caller_that_gives_up_does_not_take_its_write_back() -> None:
    flush = Recorder()
    flush.gate.clear()
    batcher: Batcher[int, int] = Batcher(flush, key=lambda i: i)
    gone = asyncio.create_task(batcher.submit(1))
    stays = asyncio.create_task(batcher.submit(2))
    await flush.entered.wait()
    gone.cancel()
    flush.gate.set()
    assert await stays == 20
    assert flush.batches == [[1, 2]]
    assert gone.cancelled()
