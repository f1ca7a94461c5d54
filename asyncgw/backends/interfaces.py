"""The three backend interfaces — queue, status store, blob store — that every implementation,
production or embedded, provides. Services depend on these, never on a concrete backend."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from asyncgw.schema import Envelope, Record, Status


class Delivery(Protocol):
    """One message handed to a consumer; exactly one of ack / reject settles it."""

    #: The decoded envelope, or ``None`` when the message is undecodable (see ``problem``).
    envelope: Envelope | None
    problem: str | None
    #: True when the broker delivered this message before (a consumer died holding it).
    redelivered: bool

    async def ack(self) -> None: ...

    async def reject(self, *, requeue: bool) -> None:
        """Give the message back (``requeue``) or move it to the API's dead-letter queue."""
        ...


class Consumer(Protocol):
    """A running subscription; ``cancel`` stops new deliveries (held ones stay unsettled)."""

    async def cancel(self) -> None: ...

    async def close(self) -> None:
        """Release what the subscription holds, once its deliveries are settled (unsettled ones
        go back to the queue)."""
        ...


class Queue(Protocol):
    """A durable work queue per API with a dead-letter queue beside it."""

    #: Whether messages survive a restart of the process; if not, records keep the payload.
    persistent: bool

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise ``BackendUnavailable`` unless the queue can be used now."""
        ...

    async def declare(self, api: str) -> None:
        """Create the API's queue and dead-letter queue if missing (idempotent)."""
        ...

    async def publish(self, envelope: Envelope, *, delay_s: float = 0.0) -> None:
        """Queue the message durably; returns once the broker has confirmed it. With
        ``delay_s`` the message waits in the queue backend (not in a consumer) that long before
        it becomes ready."""
        ...

    async def restore(self, envelope: Envelope) -> None:
        """Queue a request found unfinished in the store again, delivered as a redelivery (it
        may have been running when the process died)."""
        ...

    async def signal(self, kind: str, api: str, request_id: str) -> None:
        """Tell every subscriber (other workers and gateways) about a request: ``cancel`` or
        ``done``. Best effort and not persisted: a subscriber that is down misses it."""
        ...

    async def on_signal(self, callback: Callable[[str, str, str], None]) -> Consumer:
        """Call ``callback(kind, api, request_id)`` for every signal until cancelled."""
        ...

    async def dead(self, api: str, limit: int = 1000) -> list[Envelope]:
        """The messages in the API's dead-letter queue, oldest first, left where they are."""
        ...

    async def redrive(
        self,
        api: str,
        ids: Collection[str] | None,
        prepare: Callable[[Envelope], Awaitable[bool]],
    ) -> list[str]:
        """Move dead letters (all, or those of ``ids``) back to the work queue, each only if
        ``await prepare(envelope)`` says so; return the ids moved."""
        ...

    async def consume(
        self, api: str, prefetch: int, callback: Callable[[Delivery], Awaitable[None]]
    ) -> Consumer:
        """Deliver up to ``prefetch`` unsettled messages at a time to ``callback``."""
        ...

    async def depth(self, api: str) -> int:
        """Messages ready for delivery in the API's queue."""
        ...

    async def dead_letters(self, api: str) -> int:
        """Messages in the API's dead-letter queue."""
        ...


class StatusStore(Protocol):
    """The request records, with status moves as conditional updates."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def insert(self, record: Record) -> None:
        """Insert a new record; ``DuplicateRequest`` when its API already has a record with its
        ``idempotency_key``."""
        ...

    async def find_idempotent(self, api: str, key: str) -> Record | None:
        """The API's record with this idempotency key."""
        ...

    async def by_status(self, api: str, status: Status, limit: int = 1000) -> list[Record]:
        """Records of the API with the status, oldest first."""
        ...

    async def get(self, request_id: str) -> Record | None: ...

    async def transition(
        self,
        request_id: str,
        expected: Collection[Status],
        target: Status,
        *,
        started_at: datetime | None = None,
        increment_attempts: bool = False,
        fields: Mapping[str, Any] | None = None,
    ) -> bool:
        """Move the record to ``target`` if its status is one of ``expected`` (and, when given,
        its ``started_at`` equals ``started_at``: the attempt that began then is still the
        current one), setting ``fields`` (``None`` removes a field); return whether it moved.
        One round trip, and no document comes back: callers that need the record ``get`` it."""
        ...

    async def counts(self, api: str) -> dict[Status, int]:
        """Number of records of the API by status."""
        ...

    async def count(self, api: str, status: Status) -> int:
        """Number of records of the API with the status."""
        ...

    async def oldest(self, api: str, status: Status) -> datetime | None:
        """``created_at`` of the API's oldest record with the status."""
        ...

    def unfinished(self) -> AsyncIterator[Record]:
        """Every record ``in_queue`` or ``in_progress``, oldest first."""
        ...

    def undelivered_webhooks(self) -> AsyncIterator[Record]:
        """Every ended record with a webhook URL whose delivery has not reached an outcome
        (not tried yet, or to be retried)."""
        ...


@dataclass(slots=True)
class Blob:
    """An open blob: its type, sizes and a stream of its bytes (``start``..``end`` inclusive)."""

    content_type: str
    size: int
    start: int
    end: int
    chunks: AsyncIterator[bytes]


class BlobStore(Protocol):
    """Payloads and results, keyed ``<api>/<id>/payload`` and ``<api>/<id>/result``."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        content_type: str,
        *,
        max_size: int | None = None,
    ) -> int:
        """Store a stream without holding it whole; return its size. Past ``max_size`` bytes the
        upload is abandoned, nothing is left behind, and ``PayloadTooLarge`` is raised."""
        ...

    async def get(self, key: str, start: int = 0, end: int | None = None) -> Blob:
        """Open the blob for streaming; ``BlobNotFound`` when it does not exist."""
        ...

    async def read(self, key: str) -> bytes:
        """The whole blob."""
        ...

    async def delete(self, key: str) -> None: ...

    async def expire_after(self, api: str, retention_s: float) -> None:
        """Have the API's blobs deleted once they are ``retention_s`` old, like its records."""
        ...
