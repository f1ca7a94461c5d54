"""The shared schema: request statuses and their transitions, the request record, the message
envelope, request ids and blob keys. Gateway, worker and scaler all speak these types."""

from __future__ import annotations

import dataclasses
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

#: Payloads up to this size travel inside the queue message; larger ones go to the blob store.
INLINE_PAYLOAD_LIMIT = 256 * 1024
#: JSON results up to this size are kept in the record itself and shown in ``GET /{api}/{id}``.
INLINE_RESULT_LIMIT = 1024 * 1024


class Status(StrEnum):
    """A request's status; see ``TRANSITIONS`` for the moves between them."""

    IN_QUEUE = "in_queue"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL: frozenset[Status] = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELED})

#: Every legal move. ``in_progress -> in_progress`` is a redelivered message taking over from a
#: worker that died; ``in_progress -> in_queue`` is a request handed back between attempts;
#: ``in_queue -> failed`` is a request whose message could not be queued or was undecodable.
TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.IN_QUEUE: frozenset({Status.IN_PROGRESS, Status.FAILED, Status.CANCELED}),
    Status.IN_PROGRESS: frozenset(
        {Status.IN_PROGRESS, Status.IN_QUEUE, Status.COMPLETED, Status.FAILED, Status.CANCELED}
    ),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELED: frozenset(),
}


def can_transition(current: Status, target: Status) -> bool:
    """Whether a record in ``current`` may move to ``target``."""
    return target in TRANSITIONS[current]


def sources(target: Status) -> tuple[Status, ...]:
    """The statuses a record may be in for a move to ``target``: the condition of the update."""
    return tuple(s for s in Status if target in TRANSITIONS[s])


def new_id() -> str:
    """A fresh request id: a random UUID4 (122 random bits), so no id predicts another."""
    return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))


def now() -> datetime:
    """The current time, UTC, at the millisecond precision every store keeps."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def rfc3339(t: datetime | None) -> str | None:
    """``2026-01-02T03:04:05.678Z`` for a UTC datetime, ``None`` for ``None``."""
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload_key(api: str, request_id: str) -> str:
    """Blob key of a request's payload (below the store's prefix)."""
    return f"{api}/{request_id}/payload"


def webhook_channel(api: str) -> str:
    """The queue channel of an API's webhook deliveries (API names have no dots)."""
    return f"{api}.webhooks"


def webhook_job(api: str, request_id: str) -> Envelope:
    """The message that has a worker deliver a request's webhook."""
    return Envelope(
        id=request_id,
        api=webhook_channel(api),
        content_type="application/json",
        created_at=now(),
        payload=b"",
    )


def result_key(api: str, request_id: str) -> str:
    """Blob key of a request's result (below the store's prefix)."""
    return f"{api}/{request_id}/result"


@dataclass(slots=True)
class Record:
    """One request, as the status store keeps it."""

    id: str
    api: str
    status: Status
    created_at: datetime
    expires_at: datetime
    content_type: str
    payload_size: int
    #: The payload, kept in the record only when the queue itself does not persist messages.
    payload: bytes | None = None
    #: Set when the payload lives in the blob store instead of the message.
    payload_key: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    attempts: int = 0
    #: A JSON result small enough to live in the record, as JSON text; otherwise the result is in
    #: the blob store.
    result_json: str | None = None
    result_content_type: str | None = None
    result_size: int | None = None
    error: dict[str, str] | None = None
    webhook_url: str | None = None
    webhook: dict[str, Any] | None = None
    idempotency_key: str | None = None

    def envelope(self) -> Envelope:
        """The message that queues this request (used when a queue is rebuilt from records)."""
        return Envelope(
            id=self.id,
            api=self.api,
            content_type=self.content_type,
            created_at=self.created_at,
            payload=self.payload,
            payload_key=self.payload_key,
            webhook=self.webhook_url is not None,
        )


RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(Record))


def record_view(r: Record, endpoint: str | None = None) -> dict[str, Any]:
    """The record as ``GET /{api}/{id}`` shows it (SPEC §3): Cortex's fields plus asyncgw's.
    ``endpoint`` is the API's path segment when it is not the API's name."""
    view: dict[str, Any] = {
        "id": r.id,
        "api": r.api,
        "status": r.status.value,
        "created_at": rfc3339(r.created_at),
        "started_at": rfc3339(r.started_at),
        "completed_at": rfc3339(r.completed_at),
        "timestamp": rfc3339(r.completed_at),
        "attempts": r.attempts,
    }
    if r.status is Status.COMPLETED:
        if r.result_json is not None:
            view["result"] = json.loads(r.result_json)
        view["result_url"] = f"/{endpoint or r.api}/{r.id}/result"
    if r.error is not None:
        view["error"] = r.error
    if r.webhook is not None:
        view["webhook"] = r.webhook
    return view


@dataclass(slots=True)
class Envelope:
    """What a queue message carries: the request's identity and its payload or the payload's key."""

    id: str
    api: str
    content_type: str
    created_at: datetime
    payload: bytes | None = None
    payload_key: str | None = None
    #: A client waits for the outcome (``Prefer: wait``): signal ``done`` when it is terminal.
    notify: bool = False
    #: The request has a webhook to call when it ends.
    webhook: bool = False
