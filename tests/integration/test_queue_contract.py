"""The ``Queue`` contract, run against every implementation (``queue`` fixture)."""

from __future__ import annotations

import asyncio

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
