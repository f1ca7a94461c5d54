"""The production queue: RabbitMQ through aio-pika. One robust connection per process, durable
quorum queues ``asyncgw.<api>`` dead-lettering into ``asyncgw.<api>.dead``, persistent messages
(laid out as ``amqp.py`` says), and a publisher confirm awaited on every publish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from asyncgw.backends.amqp import (
    HEADER_API,
    HEADER_KIND,
    HEADER_RESTORED,
    dead_queue_name,
    delay_queue_name,
    from_message,
    queue_name,
    to_message,
)
from asyncgw.backends.interfaces import Consumer, Delivery
from asyncgw.errors import BackendUnavailable
from asyncgw.schema import Envelope

log = logging.getLogger(__name__)

SIGNALS_EXCHANGE = "asyncgw.signals"
#: Seconds between attempts to reach a broker that went away.
RECONNECT_INTERVAL_S = 2.0
#: What aio-pika raises while the broker is out of reach or the channel is being restored.
_ERRORS = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
)


class _RabbitDelivery:
    __slots__ = ("_message", "envelope", "problem", "redelivered")

    def __init__(self, message: AbstractIncomingMessage) -> None:
        self._message = message
        headers = message.headers or {}
        self.redelivered = bool(message.redelivered) or headers.get(HEADER_RESTORED) is True
        self.envelope: Envelope | None = None
        self.problem: str | None = None
        try:
            self.envelope = from_message(message)
        except ValueError as exc:
            self.problem = str(exc)

    async def ack(self) -> None:
        try:
            await self._message.ack()
        except _ERRORS as exc:
            self._unsettled(exc)

    async def reject(self, *, requeue: bool) -> None:
        try:
            await self._message.reject(requeue=requeue)
        except _ERRORS as exc:
            self._unsettled(exc)

    def _unsettled(self, exc: BaseException) -> None:
        # The channel that carried the message is gone, and with it the message's lease: the
        # broker delivers it again, and the record's status tells the next worker what to do.
        log.warning(
            "could not settle the message (%s); the broker will deliver it again",
            str(exc) or type(exc).__name__,
            extra={"request_id": self.envelope.id if self.envelope else None},
        )


class _RabbitConsumer:
    def __init__(
        self,
        channel: AbstractRobustChannel,
        queue: AbstractQueue,
        tag: str,
        channels: list[AbstractRobustChannel],
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._tag = tag
        self._channels = channels

    async def cancel(self) -> None:
        """Stop deliveries; the channel stays open for settling the messages held."""
        try:
            await self._queue.cancel(self._tag)
        except _ERRORS as exc:
            log.warning("cancelling consumer %s failed: %s", self._tag, exc)

    async def close(self) -> None:
        await self.cancel()
        if self._channel in self._channels:
            self._channels.remove(self._channel)
        with contextlib.suppress(*_ERRORS):
            await self._channel.close()


class RabbitQueue:
    """``amqp://user:pass@host:port/vhost`` — see the module docstring."""

    persistent = True

    def __init__(self, url: str, *, publish_timeout_s: float = 10.0) -> None:
        self._url = url
        self._publish_timeout_s = publish_timeout_s
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._inspector: AbstractRobustChannel | None = None
        self._consumer_channels: list[AbstractRobustChannel] = []
        self._delay_queues: set[str] = set()
        self._signals: AbstractExchange | None = None

    async def open(self) -> None:
        try:
            self._connection = await aio_pika.connect_robust(
                self._url,
                client_properties={"connection_name": "asyncgw"},
                reconnect_interval=RECONNECT_INTERVAL_S,
            )
            self._publisher = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            self._inspector = await self._connection.channel(publisher_confirms=False)
            self._signals = await self._inspector.declare_exchange(
                SIGNALS_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
            )
        except _ERRORS as exc:
            raise BackendUnavailable("rabbitmq", str(exc) or type(exc).__name__) from exc

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    def _channel(self) -> AbstractRobustChannel:
        if self._publisher is None:
            raise BackendUnavailable("rabbitmq", "queue is not open")
        return self._publisher

    async def ping(self) -> None:
        if self._connection is None or self._connection.is_closed:
            raise BackendUnavailable("rabbitmq", "not connected")
        if self._publisher is None or self._publisher.is_closed:
            raise BackendUnavailable("rabbitmq", "channel closed")

    async def declare(self, api: str) -> None:
        channel = self._channel()
        try:
            await channel.declare_queue(
                dead_queue_name(api), durable=True, arguments={"x-queue-type": "quorum"}
            )
            await channel.declare_queue(
                queue_name(api),
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": dead_queue_name(api),
                },
            )
        except _ERRORS as exc:
            raise BackendUnavailable("rabbitmq", str(exc) or type(exc).__name__) from exc

    async def publish(self, envelope: Envelope, *, delay_s: float = 0.0) -> None:
        message = to_message(envelope)
        routing_key = queue_name(envelope.api)
        if delay_s > 0:
            delay_ms = max(1, round(delay_s * 1000))
            routing_key = await self._delay_queue(envelope.api, delay_ms)
            message.expiration = delay_ms / 1000
        await self._publish(message, routing_key)

    async def restore(self, envelope: Envelope) -> None:
        message = to_message(envelope)
        message.headers[HEADER_RESTORED] = True
        await self._publish(message, queue_name(envelope.api))

    async def _delay_queue(self, api: str, delay_ms: int) -> str:
        name = delay_queue_name(api, delay_ms)
        if name not in self._delay_queues:
            try:
                await self._channel().declare_queue(
                    name,
                    durable=True,
                    arguments={
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": queue_name(api),
                    },
                )
            except _ERRORS as exc:
                raise BackendUnavailable("rabbitmq", str(exc) or type(exc).__name__) from exc
            self._delay_queues.add(name)
        return name

    async def _publish(self, message: aio_pika.Message, routing_key: str) -> None:
        channel = self._channel()
        try:
            async with asyncio.timeout(self._publish_timeout_s):
                await channel.default_exchange.publish(
                    message, routing_key=routing_key, mandatory=True
                )
        except TimeoutError as exc:
            raise BackendUnavailable("rabbitmq", "publish not confirmed in time") from exc
        except aio_pika.exceptions.DeliveryError as exc:
            raise BackendUnavailable("rabbitmq", f"publish refused: {exc}") from exc
        except _ERRORS as exc:
            raise BackendUnavailable("rabbitmq", str(exc) or type(exc).__name__) from exc

    async def signal(self, kind: str, api: str, request_id: str) -> None:
        if self._signals is None:
            raise BackendUnavailable("rabbitmq", "queue is not open")
        message = aio_pika.Message(
            body=request_id.encode(), headers={HEADER_KIND: kind, HEADER_API: api}
        )
        try:
            await self._signals.publish(message, routing_key="")
        except _ERRORS as exc:
            raise BackendUnavailable("rabbitmq", str(exc) or type(exc).__name__) from exc

    async def on_signal(self, callback: Callable[[str, str, str], None]) -> Consumer:
        if self._connection is None:
            raise BackendUnavailable("rabbitmq", "queue is not open")
        channel = await self._connection.channel(publisher_confirms=False)
        self._consumer_channels.append(channel)
        exchange = await channel.declare_exchange(
            SIGNALS_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange)

        async def on_message(message: AbstractIncomingMessage) -> None:
            headers = message.headers or {}
            kind, api = headers.get(HEADER_KIND), headers.get(HEADER_API)
            if isinstance(kind, str) and isinstance(api, str):
                callback(kind, api, message.body.decode(errors="replace"))

        tag = await queue.consume(on_message, no_ack=True)
        return _RabbitConsumer(channel, queue, tag, self._consumer_channels)

    async def dead(self, api: str, limit: int = 1000) -> list[Envelope]:
        found: list[Envelope] = []

        async def keep(message: AbstractIncomingMessage) -> bool:
            with contextlib.suppress(ValueError):
                found.append(from_message(message))
            return False

        await self._walk_dead(api, limit, keep)
        return found

    async def redrive(
        self,
        api: str,
        ids: Collection[str] | None,
        prepare: Callable[[Envelope], Awaitable[bool]],
    ) -> list[str]:
        moved: list[str] = []

        async def move(message: AbstractIncomingMessage) -> bool:
            try:
                envelope = from_message(message)
            except ValueError:
                return False
            if ids is not None and envelope.id not in ids:
                return False
            if not await prepare(envelope):
                return False
            await self._publish(to_message(envelope), queue_name(api))
            moved.append(envelope.id)
            return True

        await self._walk_dead(api, None, move)
        return moved

    async def _walk_dead(
        self,
        api: str,
        limit: int | None,
        visit: Callable[[AbstractIncomingMessage], Awaitable[bool]],
    ) -> None:
        """Take the dead letters one by one; ``visit`` returns True to remove one. Those kept go
        back when the walk's channel closes, in their order."""
        if self._connection is None:
            raise BackendUnavailable("rabbitmq", "queue is not open")
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            queue = await channel.declare_queue(dead_queue_name(api), passive=True, robust=False)
            seen = 0
            while limit is None or seen < limit:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                seen += 1
                if await visit(message):
                    await message.ack()
        except _ERRORS as exc:
            raise BackendUnavailable("rabbitmq", str(exc) or type(exc).__name__) from exc
        finally:
            with contextlib.suppress(*_ERRORS):
                await channel.close()

    async def consume(
        self, api: str, prefetch: int, callback: Callable[[Delivery], Awaitable[None]]
    ) -> Consumer:
        if self._connection is None:
            raise BackendUnavailable("rabbitmq", "queue is not open")
        channel = await self._connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=prefetch)
        self._consumer_channels.append(channel)
        queue = await channel.get_queue(queue_name(api), ensure=True)

        async def on_message(message: AbstractIncomingMessage) -> None:
            await callback(_RabbitDelivery(message))

        tag = await queue.consume(on_message)
        return _RabbitConsumer(channel, queue, tag, self._consumer_channels)

    async def _count(self, name: str) -> int:
        if self._inspector is None:
            raise BackendUnavailable("rabbitmq", "queue is not open")
        try:
            # Not robust: a robust channel caches declarations, and with them the counts.
            queue = await self._inspector.declare_queue(name, passive=True, robust=False)
        except _ERRORS as exc:
            raise BackendUnavailable("rabbitmq", str(exc) or type(exc).__name__) from exc
        result = queue.declaration_result
        return int(result.message_count or 0)

    async def depth(self, api: str) -> int:
        return await self._count(queue_name(api))

    async def dead_letters(self, api: str) -> int:
        return await self._count(dead_queue_name(api))
