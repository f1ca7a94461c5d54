"""``Prefer: wait`` parsing, the waiters woken by ``done`` signals, and the cached queue depths.

Depths run against the real in-process ``MemoryQueue`` (a subclass of it counts the ``depth``
calls); nothing is mocked."""

from __future__ import annotations

import asyncio

import pytest

from asyncgw.backends.memory import MemoryQueue
from asyncgw.errors import BackendUnavailable
from asyncgw.gateway.signals import DEPTH_TTL_S, Depths, Waiters
from asyncgw.gateway.submit import MAX_WAIT_S, preferred_wait_s
from asyncgw.schema import Envelope, new_id, now

API = "signals"
#: Bounded waits for things that must happen (generous) and must not (short).
WAIT_S = 5.0
SHORT_S = 0.05


# --- Prefer: wait ------------------------------------------------------------------------------


def test_max_wait_is_a_minute() -> None:
    assert MAX_WAIT_S == 60


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("wait=5", 5),
        ("respond-async, wait=10", 10),
        ("respond-async,wait=7", 7),
        ("respond-async; wait=2", 2),
        ("handling=lenient;wait=4", 4),
        ("wait=10, respond-async", 10),
        ("WAIT=3", 3),
        ("Wait=8", 8),
        ("wait = 9", 9),
        ("  wait=1", 1),
        ("wait=0", 0),
        ("wait=59", 59),
        ("wait=60", 60),
        ("wait=61", 60),
        ("wait=999", 60),
        ("wait=99999999999999999999", 60),
    ],
)
def test_preferred_wait(header: str, seconds: int) -> None:
    assert preferred_wait_s(header) == seconds


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "respond-async",
        "wait",
        "wait=",
        "wait=abc",
        "wait=-5",
        "nowait=5",
        "await=5",
        "return=minimal",
        "garbage!!",
    ],
)
def test_preferred_wait_absent_or_garbage_is_zero(header: str | None) -> None:
    assert preferred_wait_s(header) == 0


# --- Waiters -----------------------------------------------------------------------------------


async def test_register_returns_the_same_future_twice() -> None:
    waiters = Waiters()
    request_id = new_id()
    first = waiters.register(request_id)
    assert waiters.register(request_id) is first
    assert waiters.register(new_id()) is not first
    assert not first.done()


async def test_done_signal_resolves_the_future() -> None:
    waiters = Waiters()
    request_id = new_id()
    future = waiters.register(request_id)
    waiters.on_signal("done", API, request_id)
    assert future.done()
    assert future.result() is None
    assert await waiters.wait(future, SHORT_S) is True
    # A second done signal (another worker, a retried signal) is harmless.
    waiters.on_signal("done", API, request_id)
    assert future.result() is None


async def test_other_kinds_and_other_ids_do_not_resolve() -> None:
    waiters = Waiters()
    request_id = new_id()
    future = waiters.register(request_id)
    waiters.on_signal("cancel", API, request_id)
    waiters.on_signal("started", API, request_id)
    waiters.on_signal("done", API, new_id())
    waiters.on_signal("done", API, request_id.upper())
    assert not future.done()
    assert await waiters.wait(future, SHORT_S) is False


async def test_done_signal_for_unregistered_request_is_ignored() -> None:
    waiters = Waiters()
    waiters.on_signal("done", API, new_id())  # nobody waits: nothing happens, nothing raises
    waiters.on_signal("cancel", API, new_id())


async def test_wait_true_when_done_arrives_during_the_wait() -> None:
    waiters = Waiters()
    request_id = new_id()
    future = waiters.register(request_id)
    asyncio.get_running_loop().call_soon(waiters.on_signal, "done", API, request_id)
    assert await waiters.wait(future, WAIT_S) is True


async def test_wait_timeout_leaves_the_future_pending() -> None:
    waiters = Waiters()
    request_id = new_id()
    future = waiters.register(request_id)
    assert await waiters.wait(future, SHORT_S) is False
    # The timeout must not cancel the shared future: a later wait can still be woken.
    assert not future.cancelled()
    assert not future.done()
    waiters.on_signal("done", API, request_id)
    assert await waiters.wait(future, SHORT_S) is True


async def test_two_waiters_on_one_request_both_wake() -> None:
    waiters = Waiters()
    request_id = new_id()
    future = waiters.register(request_id)
    both = asyncio.gather(waiters.wait(future, WAIT_S), waiters.wait(future, WAIT_S))
    asyncio.get_running_loop().call_soon(waiters.on_signal, "done", API, request_id)
    assert await both == [True, True]


async def test_discard_forgets_the_request() -> None:
    waiters = Waiters()
    request_id = new_id()
    old = waiters.register(request_id)
    waiters.discard(request_id)
    waiters.discard(request_id)  # twice: fine
    waiters.discard(new_id())  # unknown: fine
    waiters.on_signal("done", API, request_id)
    assert not old.done()
    fresh = waiters.register(request_id)
    assert fresh is not old
    waiters.on_signal("done", API, request_id)
    assert fresh.done()
    assert not old.done()


# --- Depths ------------------------------------------------------------------------------------


class CountingQueue(MemoryQueue):
    """The memory queue, counting ``depth`` calls; with ``gate`` set, ``depth`` holds until the
    gate opens (and sets ``entered`` when it starts), so concurrent callers overlap for sure."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.fail_next = False

    async def depth(self, api: str) -> int:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise BackendUnavailable("memory queue", "injected by the test")
        return await super().depth(api)


def envelope(api: str = API) -> Envelope:
    return Envelope(id=new_id(), api=api, content_type="application/json", created_at=now())


@pytest.fixture
async def counting() -> CountingQueue:
    queue = CountingQueue()
    await queue.open()
    await queue.declare(API)
    return queue


async def publish(queue: MemoryQueue, n: int, api: str = API) -> None:
    for _ in range(n):
        await queue.publish(envelope(api))


def test_default_ttl_is_a_second() -> None:
    assert DEPTH_TTL_S == 1.0


async def test_depth_is_cached_for_the_ttl(counting: CountingQueue) -> None:
    depths = Depths(counting, ttl_s=3600)
    await publish(counting, 2)
    assert await depths.get(API) == 2
    await publish(counting, 3)
    assert await counting.depth(API) == 5  # the queue knows ...
    counting.calls = 0
    for _ in range(5):
        assert await depths.get(API) == 2  # ... but the cache answers, without asking
    assert counting.calls == 0


async def test_depth_is_refreshed_once_the_ttl_passed(counting: CountingQueue) -> None:
    depths = Depths(counting, ttl_s=0)
    await publish(counting, 2)
    assert await depths.get(API) == 2
    await publish(counting, 3)
    assert await depths.get(API) == 5
    assert await depths.get(API) == 5
    assert counting.calls == 3


async def test_depth_is_cached_per_api(counting: CountingQueue) -> None:
    await counting.declare("other")
    depths = Depths(counting, ttl_s=3600)
    await publish(counting, 1)
    await publish(counting, 4, "other")
    assert await depths.get(API) == 1
    assert await depths.get("other") == 4
    assert counting.calls == 2
    await publish(counting, 1, "other")
    assert await depths.get(API) == 1
    assert await depths.get("other") == 4
    assert counting.calls == 2


async def test_concurrent_gets_share_one_depth_call(counting: CountingQueue) -> None:
    depths = Depths(counting, ttl_s=0)  # even with no caching at all
    await publish(counting, 3)
    counting.gate = asyncio.Event()
    tasks = [asyncio.create_task(depths.get(API)) for _ in range(8)]
    # All eight are waiting on the one depth call by the time it starts.
    await asyncio.wait_for(counting.entered.wait(), WAIT_S)
    assert not any(t.done() for t in tasks)
    counting.gate.set()
    assert await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S) == [3] * 8
    assert counting.calls == 1

    # Once that call is over, the next get asks again.
    counting.gate = None
    await publish(counting, 1)
    assert await depths.get(API) == 4
    assert counting.calls == 2


async def test_failed_depth_call_is_not_cached(counting: CountingQueue) -> None:
    depths = Depths(counting, ttl_s=3600)
    await publish(counting, 2)
    counting.fail_next = True
    with pytest.raises(BackendUnavailable):
        await depths.get(API)
    assert await depths.get(API) == 2
    assert counting.calls == 2
