"""The embedded queue: in-process, with the broker's prefetch, ack, requeue and dead-letter
behaviour. It keeps nothing itself: ``asyncgw up`` rebuilds it from the status store at start,
which is why the gateway keeps small payloads in the record when this queue is in use."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

from asyncgw.backends.interfaces import Consumer, Delivery
from asyncgw.errors import BackendUnavailable
from asyncgw.schema import Envelope

log = logging.getLogger(__name__)

#: Dead letters kept per API; older ones are dropped (their records stay failed).
MAX_DEAD = 10_000


@dataclass(slots=True)
class _Message:
    envelope: Envelope
    redelivered: bool = False


class _MemoryDelivery:
    __slots__ = ("_consumer", "_message", "_settled", "envelope", "problem", "redelivered")

    def __init__(self, consumer: _MemoryConsumer, message: _Message) -> None:
        self._consumer = consumer
        self._message = message
        self._settled = False
        self.envelope: Envelope | None = message.envelope
        self.problem: str | None = None
        self.redelivered = message.redelivered

    def _settle(self) -> None:
        if self._settled:
            raise RuntimeError("message already settled")
        self._settled = True
        self._consumer.unsettled -= 1

    async def ack(self) -> None:
        self._settle()
        self._consumer.channel.dispatch()

    async def reject(self, *, requeue: bool) -> None:
        self._settle()
        channel = self._consumer.channel
        if requeue:
            self._message.redelivered = True
            channel.ready.appendleft(self._message)
        else:
            channel.dead.append(self._message)
            del channel.dead[:-MAX_DEAD]  # failed records, not this list, are what lasts
        channel.dispatch()


@dataclass(eq=False)
class _MemoryConsumer:
    channel: _Channel
    prefetch: int
    callback: Callable[[Delivery], Awaitable[None]]
    unsettled: int = 0
    active: bool = True

    async def cancel(self) -> None:
        self.active = False
        if self in self.channel.consumers:
            self.channel.consumers.remove(self)

    async def close(self) -> None:
        await self.cancel()


@dataclass(eq=False)
class _Channel:
    """One API's queue, its dead letters and its consumers."""

    ready: deque[_Message] = field(default_factory=deque)
    dead: list[_Message] = field(default_factory=list)
    consumers: list[_MemoryConsumer] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def dispatch(self) -> None:
        """Hand ready messages to consumers with room, taking turns."""
        while self.ready:
            open_ = [c for c in self.consumers if c.active and c.unsettled < c.prefetch]
            if not open_:
                return
            consumer = open_[next(self._turn) % len(open_)]
            message = self.ready.popleft()
            consumer.unsettled += 1
            task = asyncio.get_running_loop().create_task(
                _deliver(consumer, _MemoryDelivery(consumer, message))
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


@dataclass(eq=False)
class _Listener:
    listeners: list[Callable[[str, str, str], None]]
    callback: Callable[[str, str, str], None]

    async def cancel(self) -> None:
        if self.callback in self.listeners:
            self.listeners.remove(self.callback)

    async def close(self) -> None:
        await self.cancel()


async def _deliver(consumer: _MemoryConsumer, delivery: _MemoryDelivery) -> None:
    await consumer.callback(delivery)


class MemoryQueue:
    """``memory://`` — lives and dies with the process."""

    persistent = False

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}
        self._open = False
        self._listeners: list[Callable[[str, str, str], None]] = []
        self._timers: set[asyncio.TimerHandle] = set()

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for channel in self._channels.values():
            channel.consumers.clear()

    async def ping(self) -> None:
        if not self._open:
            raise BackendUnavailable("memory queue", "not open")

    def _channel(self, api: str) -> _Channel:
        if not self._open:
            raise BackendUnavailable("memory queue", "not open")
        channel = self._channels.get(api)
        if channel is None:
            channel = self._channels[api] = _Channel()
        return channel

    async def declare(self, api: str) -> None:
        self._channel(api)

    async def publish(self, envelope: Envelope, *, delay_s: float = 0.0) -> None:
        channel = self._channel(envelope.api)
        if delay_s <= 0:
            channel.ready.append(_Message(envelope))
            channel.dispatch()
            return

        def ready() -> None:
            self._timers.discard(timer)
            channel.ready.append(_Message(envelope))
            channel.dispatch()

        timer = asyncio.get_running_loop().call_later(delay_s, ready)
        self._timers.add(timer)

    async def restore(self, envelope: Envelope) -> None:
        channel = self._channel(envelope.api)
        channel.ready.append(_Message(envelope, redelivered=True))
        channel.dispatch()

    async def signal(self, kind: str, api: str, request_id: str) -> None:
        self._channel(api)
        for listener in list(self._listeners):
            listener(kind, api, request_id)

    async def on_signal(self, callback: Callable[[str, str, str], None]) -> Consumer:
        self._listeners.append(callback)
        return _Listener(self._listeners, callback)

    async def dead(self, api: str, limit: int = 1000) -> list[Envelope]:
        return [m.envelope for m in self._channel(api).dead[:limit]]

    async def redrive(
        self,
        api: str,
        ids: Collection[str] | None,
        prepare: Callable[[Envelope], Awaitable[bool]],
    ) -> list[str]:
        channel = self._channel(api)
        moved: list[str] = []
        for message in list(channel.dead):
            envelope = message.envelope
            if (ids is None or envelope.id in ids) and await prepare(envelope):
                channel.dead.remove(message)
                channel.ready.append(_Message(envelope))
                moved.append(envelope.id)
        channel.dispatch()
        return moved

    async def consume(
        self, api: str, prefetch: int, callback: Callable[[Delivery], Awaitable[None]]
    ) -> Consumer:
        channel = self._channel(api)
        consumer = _MemoryConsumer(channel, prefetch, callback)
        channel.consumers.append(consumer)
        channel.dispatch()
        return consumer

    async def depth(self, api: str) -> int:
        return len(self._channel(api).ready)

    async def dead_letters(self, api: str) -> int:
        return len(self._channel(api).dead)
