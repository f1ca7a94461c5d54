"""The ``Queue`` contract, run against every implementation (``queue`` fixture)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aio_pika
import pytest

from asyncgw.backends.interfaces import Delivery, Queue
from asyncgw.schema import Envelope, new_id, now, payload_key
from tests.integration.conftest import eventually

WAIT_S = 10.0
#: How long a test listens to be sure something does *not* arrive (a bounded wait, not a sleep).
QUIET_S = 0.5


def envelope(api: str, payload: bytes | None = b"hello", *, key: bool = False) -> Envelope:
    request_id = new_id()
    return Envelope(
        id=request_id,
        api=api,
        content_type="application/json",
        created_at=now(),
        payload=None if key else payload,
        payload_key=payload_key(api, request_id) if key else None,
    )


class Inbox:
    """A consumer callback that collects deliveries in an ``asyncio.Queue`` without settling."""

    def __init__(self) -> None:
        self.deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

    async def __call__(self, delivery: Delivery) -> None:
        await self.deliveries.put(delivery)

    async def next(self, timeout_s: float = WAIT_S) -> Delivery:
        return await asyncio.wait_for(self.deliveries.get(), timeout_s)

    async def assert_quiet(self) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.deliveries.get(), QUIET_S)


async def test_persistent_differs_on_purpose(queue: Queue, queue_kind: str) -> None:
    # RabbitMQ keeps messages over a restart; the memory queue loses them, so records must keep
    # the payload when it is in use.
    assert queue.persistent is {"rabbitmq": True, "memory": False}[queue_kind]


async def test_ping_when_open(queue: Queue) -> None:
    await queue.ping()


async def test_declare_is_idempotent(queue: Queue, api_name: str) -> None:
    await queue.declare(api_name)
    await queue.publish(envelope(api_name))
    await queue.declare(api_name)
    await queue.declare(api_name)
    assert await eventually(lambda: queue.depth(api_name), 1) == 1
    assert await queue.dead_letters(api_name) == 0


@pytest.mark.parametrize("in_blob", [False, True], ids=["inline", "blob_key"])
async def test_publish_consume_round_trip(queue: Queue, api_name: str, in_blob: bool) -> None:
    await queue.declare(api_name)
    sent = envelope(api_name, b"\x00\x01 binary \xff payload", key=in_blob)
    await queue.publish(sent)
    inbox = Inbox()
    consumer = await queue.consume(api_name, 1, inbox)
    try:
        delivery = await inbox.next()
        assert delivery.problem is None
        got = delivery.envelope
        assert got is not None
        assert got.id == sent.id
        assert got.api == sent.api
        assert got.content_type == sent.content_type
        # Every store keeps milliseconds (schema.now()); the queue must not lose them either.
        assert got.created_at == sent.created_at
        assert got.created_at.utcoffset() is not None
        assert got.payload == sent.payload
        assert got.payload_key == sent.payload_key
        if in_blob:
            assert got.payload is None
        assert delivery.redelivered is False
        await delivery.ack()
    finally:
        await consumer.cancel()
    assert await eventually(lambda: queue.depth(api_name), 0) == 0


async def test_depth_counts_ready_messages(queue: Queue, api_name: str) -> None:
    await queue.declare(api_name)
    assert await queue.depth(api_name) == 0
    for _ in range(3):
        await queue.publish(envelope(api_name))
    assert await eventually(lambda: queue.depth(api_name), 3) == 3
    assert await queue.dead_letters(api_name) == 0


async def test_prefetch_limits_unsettled_deliveries(queue: Queue, api_name: str) -> None:
    await queue.declare(api_name)
    sent = [envelope(api_name, f"m{i}".encode()) for i in range(5)]
    for e in sent:
        await queue.publish(e)
    inbox = Inbox()
    consumer = await queue.consume(api_name, 2, inbox)
    try:
        held = [await inbox.next(), await inbox.next()]
        await inbox.assert_quiet()
        # The broker holds the other three back, ready.
        assert await eventually(lambda: queue.depth(api_name), 3) == 3

        ids = set()
        first = held.pop(0)
        assert first.envelope is not None
        ids.add(first.envelope.id)
        await first.ack()
        held.append(await inbox.next())
        await inbox.assert_quiet()
        assert await eventually(lambda: queue.depth(api_name), 2) == 2

        delivered = 3
        while held:
            delivery = held.pop(0)
            assert delivery.envelope is not None
            ids.add(delivery.envelope.id)
            await delivery.ack()
            if delivered < len(sent):
                held.append(await inbox.next())
                delivered += 1
        assert ids == {e.id for e in sent}
        assert await eventually(lambda: queue.depth(api_name), 0) == 0
        await inbox.assert_quiet()
    finally:
        await consumer.cancel()


async def test_ack_removes(queue: Queue, api_name: str) -> None:
    await queue.declare(api_name)
    await queue.publish(envelope(api_name))
    inbox = Inbox()
    consumer = await queue.consume(api_name, 1, inbox)
    try:
        await (await inbox.next()).ack()
        await inbox.assert_quiet()
    finally:
        await consumer.cancel()
    assert await eventually(lambda: queue.depth(api_name), 0) == 0
    assert await queue.dead_letters(api_name) == 0


async def test_reject_requeue_redelivers(queue: Queue, api_name: str) -> None:
    await queue.declare(api_name)
    sent = envelope(api_name)
    await queue.publish(sent)
    inbox = Inbox()
    consumer = await queue.consume(api_name, 1, inbox)
    try:
        first = await inbox.next()
        assert first.redelivered is False
        await first.reject(requeue=True)
        again = await inbox.next()
        assert again.redelivered is True
        assert again.envelope is not None
        assert again.envelope.id == sent.id
        assert again.envelope.payload == sent.payload
        await again.ack()
    finally:
        await consumer.cancel()
    assert await eventually(lambda: queue.depth(api_name), 0) == 0
    assert await queue.dead_letters(api_name) == 0


async def test_reject_without_requeue_dead_letters(queue: Queue, api_name: str) -> None:
    await queue.declare(api_name)
    await queue.publish(envelope(api_name))
    inbox = Inbox()
    consumer = await queue.consume(api_name, 1, inbox)
    try:
        await (await inbox.next()).reject(requeue=False)
        await inbox.assert_quiet()
    finally:
        await consumer.cancel()
    assert await eventually(lambda: queue.dead_letters(api_name), 1) == 1
    assert await queue.depth(api_name) == 0


async def test_cancel_stops_new_deliveries(queue: Queue, api_name: str) -> None:
    await queue.declare(api_name)
    await queue.publish(envelope(api_name))
    inbox = Inbox()
    consumer = await queue.consume(api_name, 5, inbox)
    held = await inbox.next()
    await consumer.cancel()

    await queue.publish(envelope(api_name))
    await inbox.assert_quiet()
    assert await eventually(lambda: queue.depth(api_name), 1) == 1
    # A delivery held when the consumer was cancelled is still settled normally.
    await held.ack()
    assert await eventually(lambda: queue.depth(api_name), 1) == 1
    assert await queue.dead_letters(api_name) == 0


async def test_undecodable_message_differs_on_purpose(
    queue: Queue, queue_kind: str, api_name: str, request: pytest.FixtureRequest
) -> None:
    await queue.declare(api_name)
    inbox = Inbox()
    consumer = await queue.consume(api_name, 1, inbox)
    try:
        if queue_kind == "rabbitmq":
            # Anyone with access to the broker can publish to the queue: a message without
            # asyncgw's headers arrives as a delivery with no envelope and the reason why.
            connection = await aio_pika.connect(request.getfixturevalue("amqp_url"))
            async with connection:
                channel = await connection.channel()
                await channel.default_exchange.publish(
                    aio_pika.Message(body=b"not ours"), routing_key=f"asyncgw.{api_name}"
                )
            delivery = await inbox.next()
            assert delivery.envelope is None
            assert delivery.problem
            await delivery.reject(requeue=False)
            assert await eventually(lambda: queue.dead_letters(api_name), 1) == 1
        else:
            # The memory queue has no external publishers: only Envelopes go in, and every
            # published Envelope comes out decoded, with no problem.
            sent = [envelope(api_name, b""), envelope(api_name, key=True), envelope(api_name)]
            for e in sent:
                await queue.publish(e)
            for e in sent:
                delivery = await inbox.next()
                assert delivery.problem is None
                assert delivery.envelope is not None
                assert delivery.envelope.id == e.id
                await delivery.ack()
            assert await queue.dead_letters(api_name) == 0
    finally:
        await consumer.cancel()


# --- delayed publish ---------------------------------------------------------------------------

#: Every delay the tests below use, so the RabbitMQ delay queues they declare can be deleted.
DELAYS_S = (0.2, 0.3, 0.6)
#: Timers may fire a hair early; a delayed message must not arrive much earlier than asked.
EARLY_S = 0.05


@pytest.fixture
async def delay_queues(
    queue_kind: str, api_name: str, request: pytest.FixtureRequest
) -> AsyncIterator[None]:
    """Deletes the RabbitMQ delay queues of ``api_name`` after the test (the memory queue keeps
    its delayed messages in timers, which ``close`` cancels)."""
    yield
    if queue_kind != "rabbitmq":
        return
    from asyncgw.backends.amqp import delay_queue_name

    names = {delay_queue_name(api_name, round(d * 1000)) for d in DELAYS_S}
    connection = await aio_pika.connect(request.getfixturevalue("amqp_url"))
    async with connection:
        for name in names:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(name)


@pytest.mark.usefixtures("delay_queues")
async def test_delayed_publish_waits_outside_the_work_queue(queue: Queue, api_name: str) -> None:
    await queue.declare(api_name)
    sent = envelope(api_name)
    start = time.monotonic()
    await queue.publish(sent, delay_s=0.3)
    # The message waits in the queue backend, not as a ready message of the work queue.
    assert await queue.depth(api_name) == 0
    inbox = Inbox()
    consumer = await queue.consume(api_name, 1, inbox)
    try:
        delivery = await inbox.next()
        elapsed = time.monotonic() - start
        assert 0.3 - EARLY_S <= elapsed < WAIT_S
        assert delivery.problem is None
        assert delivery.envelope == sent
        assert delivery.redelivered is False
        await delivery.ack()
        await inbox.assert_quiet()
    finally:
        await consumer.cancel()
    assert await eventually(lambda: queue.depth(api_name), 0) == 0
    assert await queue.dead_letters(api_name) == 0


@pytest.mark.usefixtures("delay_queues")
async def test_short_delay_is_not_stuck_behind_a_longer_one(queue: Queue, api_name: str) -> None:
    await queue.declare(api_name)
    inbox = Inbox()
    consumer = await queue.consume(api_name, 2, inbox)
    try:
        slow, fast = envelope(api_name, b"slow"), envelope(api_name, b"fast")
        start = time.monotonic()
        await queue.publish(slow, delay_s=0.6)  # the longer wait first
        await queue.publish(fast, delay_s=0.2)
        arrivals: list[tuple[str, float]] = []
        for _ in range(2):
            delivery = await inbox.next()
            assert delivery.envelope is not None
            arrivals.append((delivery.envelope.id, time.monotonic() - start))
            await delivery.ack()
        assert [i for i, _ in arrivals] == [fast.id, slow.id]
        (_, fast_s), (_, slow_s) = arrivals
        assert 0.2 - EARLY_S <= fast_s < WAIT_S
        assert 0.6 - EARLY_S <= slow_s < WAIT_S
        await inbox.assert_quiet()
    finally:
        await consumer.cancel()


# --- restore -----------------------------------------------------------------------------------


@pytest.mark.parametrize("in_blob", [False, True], ids=["inline", "blob_key"])
async def test_restore_arrives_as_a_redelivery(queue: Queue, api_name: str, in_blob: bool) -> None:
    await queue.declare(api_name)
    restored = envelope(api_name, b"unfinished", key=in_blob)
    fresh = envelope(api_name)
    await queue.restore(restored)
    await queue.publish(fresh)
    assert await eventually(lambda: queue.depth(api_name), 2) == 2
    inbox = Inbox()
    consumer = await queue.consume(api_name, 2, inbox)
    try:
        got = {}
        for _ in range(2):
            delivery = await inbox.next()
            assert delivery.envelope is not None
            got[delivery.envelope.id] = delivery
        assert got[restored.id].redelivered is True
        assert got[restored.id].envelope == restored
        assert got[fresh.id].redelivered is False
        for delivery in got.values():
            await delivery.ack()
    finally:
        await consumer.cancel()
    assert await eventually(lambda: queue.depth(api_name), 0) == 0


# --- signals -----------------------------------------------------------------------------------


class Signals:
    """A signal callback that keeps the signals about one API and sets ``complete`` once
    ``expected`` of them have come."""

    def __init__(self, api: str, expected: int) -> None:
        self.api = api
        self.expected = expected
        self.got: list[tuple[str, str, str]] = []
        self.complete = asyncio.Event()

    def __call__(self, kind: str, api: str, request_id: str) -> None:
        if api != self.api:  # the broker is shared: other tests signal too
            return
        self.got.append((kind, api, request_id))
        if len(self.got) >= self.expected:
            self.complete.set()


async def test_signals_reach_every_subscriber(
    queue: Queue, queue_kind: str, api_name: str, request: pytest.FixtureRequest
) -> None:
    others: list[Queue] = []
    subscribers: list[Queue] = [queue]
    if queue_kind == "rabbitmq":
        # Signals cross processes through the broker: a second connection hears them.
        from asyncgw.backends.rabbitmq import RabbitQueue

        other = RabbitQueue(request.getfixturevalue("amqp_url"))
        await other.open()
        others.append(other)
        subscribers = [other, queue]
    else:
        # The memory queue lives in one process: its subscribers are that process's callbacks.
        subscribers = [queue, queue]
    try:
        listeners = [Signals(api_name, 2) for _ in subscribers]
        for subscriber, listener in zip(subscribers, listeners, strict=True):
            await subscriber.on_signal(listener)
        cancelled, finished = new_id(), new_id()
        await queue.signal("cancel", api_name, cancelled)
        await queue.signal("done", api_name, finished)
        for listener in listeners:
            await asyncio.wait_for(listener.complete.wait(), WAIT_S)
            assert listener.got == [
                ("cancel", api_name, cancelled),
                ("done", api_name, finished),
            ]
    finally:
        for other in others:
            await other.close()


async def test_signal_without_subscribers_is_fine(queue: Queue, api_name: str) -> None:
    await queue.signal("done", api_name, new_id())


# --- dead letters ------------------------------------------------------------------------------


async def dead_letter(queue: Queue, api: str, sent: list[Envelope]) -> None:
    """Publish ``sent`` and reject each without requeue, in order."""
    for e in sent:
        await queue.publish(e)
    inbox = Inbox()
    consumer = await queue.consume(api, 1, inbox)
    try:
        for e in sent:
            delivery = await inbox.next()
            assert delivery.envelope is not None
            assert delivery.envelope.id == e.id
            await delivery.reject(requeue=False)
    finally:
        await consumer.cancel()
    assert await eventually(lambda: queue.dead_letters(api), len(sent)) == len(sent)
    assert await queue.depth(api) == 0


async def test_dead_lists_without_removing(queue: Queue, api_name: str) -> None:
    await queue.declare(api_name)
    assert await queue.dead(api_name) == []
    sent = [envelope(api_name, f"d{i}".encode()) for i in range(2)]
    sent.append(envelope(api_name, key=True))
    await dead_letter(queue, api_name, sent)

    listed = await queue.dead(api_name)
    assert listed == sent  # whole envelopes, oldest first
    assert await eventually(lambda: queue.dead_letters(api_name), 3) == 3
    # Listing again sees the same letters in the same order.
    assert [e.id for e in await queue.dead(api_name)] == [e.id for e in sent]
    assert [e.id for e in await queue.dead(api_name, limit=2)] == [e.id for e in sent[:2]]
    assert await eventually(lambda: queue.dead_letters(api_name), 3) == 3
    assert await queue.depth(api_name) == 0


async def test_redrive_moves_only_chosen_and_prepared(queue: Queue, api_name: str) -> None:
    await queue.declare(api_name)
    sent = [envelope(api_name, f"r{i}".encode()) for i in range(4)]
    a, b, c, d = sent
    await dead_letter(queue, api_name, sent)

    prepared: list[str] = []

    async def prepare(e: Envelope) -> bool:
        prepared.append(e.id)
        return e.id != b.id

    moved = await queue.redrive(api_name, {a.id, b.id, c.id}, prepare)
    assert sorted(moved) == sorted([a.id, c.id])
    # prepare is asked about the chosen letters only (it resets their records).
    assert sorted(prepared) == sorted([a.id, b.id, c.id])

    assert await eventually(lambda: queue.dead_letters(api_name), 2) == 2
    assert [e.id for e in await queue.dead(api_name)] == [b.id, d.id]
    assert await eventually(lambda: queue.depth(api_name), 2) == 2
    inbox = Inbox()
    consumer = await queue.consume(api_name, 2, inbox)
    try:
        again = {}
        for _ in range(2):
            delivery = await inbox.next()
            assert delivery.problem is None
            assert delivery.envelope is not None
            again[delivery.envelope.id] = delivery.envelope
            await delivery.ack()
        assert again == {a.id: a, c.id: c}
        await inbox.assert_quiet()
    finally:
        await consumer.cancel()
    assert await queue.dead_letters(api_name) == 2


async def test_redrive_all(queue: Queue, api_name: str) -> None:
    await queue.declare(api_name)
    sent = [envelope(api_name, f"all{i}".encode()) for i in range(3)]
    await dead_letter(queue, api_name, sent)

    async def refuse(e: Envelope) -> bool:
        return False

    assert await queue.redrive(api_name, None, refuse) == []
    assert await eventually(lambda: queue.dead_letters(api_name), 3) == 3
    assert await queue.depth(api_name) == 0

    async def accept(e: Envelope) -> bool:
        return True

    assert sorted(await queue.redrive(api_name, None, accept)) == sorted(e.id for e in sent)
    assert await eventually(lambda: queue.dead_letters(api_name), 0) == 0
    assert await eventually(lambda: queue.depth(api_name), 3) == 3
    assert await queue.dead(api_name) == []

    # Unknown ids move nothing.
    assert await queue.redrive(api_name, {new_id()}, accept) == []
