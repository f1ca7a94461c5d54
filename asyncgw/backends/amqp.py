"""How asyncgw lays out its RabbitMQ messages and names its queues: a message's body is the
payload itself (empty when the payload is in the blob store), and its properties and headers carry
the rest of the envelope, so nothing is encoded twice."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from asyncgw.schema import Envelope

HEADER_API = "x-asyncgw-api"
HEADER_PAYLOAD_KEY = "x-asyncgw-payload-key"
HEADER_CREATED_MS = "x-asyncgw-created-ms"
HEADER_RESTORED = "x-asyncgw-restored"
HEADER_NOTIFY = "x-asyncgw-notify"
HEADER_WEBHOOK = "x-asyncgw-webhook"
HEADER_KIND = "x-asyncgw-kind"


def queue_name(api: str) -> str:
    """The API's work queue."""
    return f"asyncgw.{api}"


def dead_queue_name(api: str) -> str:
    """The API's dead-letter queue."""
    return f"asyncgw.{api}.dead"


def delay_queue_name(api: str, delay_ms: int) -> str:
    """The delay queue for a wait of ``delay_ms``: one per quarter octave of delays, so messages
    in one queue wait within 19 % of each other and a short wait is never stuck for long behind
    a longer one (a queue expires messages from its head only)."""
    bucket = max(0, round(math.log2(max(delay_ms, 1)) * 4))
    return f"asyncgw.{api}.delay.{bucket}"


def to_message(envelope: Envelope) -> aio_pika.Message:
    """The AMQP message for an envelope."""
    headers: dict[str, Any] = {
        HEADER_API: envelope.api,
        # AMQP's timestamp property holds whole seconds; the record keeps milliseconds.
        HEADER_CREATED_MS: round(envelope.created_at.timestamp() * 1000),
    }
    if envelope.payload_key is not None:
        headers[HEADER_PAYLOAD_KEY] = envelope.payload_key
    if envelope.notify:
        headers[HEADER_NOTIFY] = True
    if envelope.webhook:
        headers[HEADER_WEBHOOK] = True
    return aio_pika.Message(
        body=envelope.payload or b"",
        content_type=envelope.content_type,
        message_id=envelope.id,
        timestamp=envelope.created_at,
        headers=headers,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def from_message(message: AbstractIncomingMessage) -> Envelope:
    """The envelope in an AMQP message; ``ValueError`` saying why when it is not one of ours."""
    headers = message.headers or {}
    api = headers.get(HEADER_API)
    if not isinstance(api, str) or not api:
        raise ValueError(f"message has no {HEADER_API} header")
    if not message.message_id:
        raise ValueError("message has no message_id")
    key = headers.get(HEADER_PAYLOAD_KEY)
    if key is not None and not isinstance(key, str):
        raise ValueError(f"{HEADER_PAYLOAD_KEY} header is not a string")
    created_ms = headers.get(HEADER_CREATED_MS)
    if isinstance(created_ms, int) and not isinstance(created_ms, bool):
        seconds, millis = divmod(created_ms, 1000)
        created = datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)
    else:
        created = message.timestamp or datetime.now(UTC)
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
    return Envelope(
        id=message.message_id,
        api=api,
        content_type=message.content_type or "application/octet-stream",
        created_at=created,
        payload=None if key is not None else message.body,
        payload_key=key,
        notify=headers.get(HEADER_NOTIFY) is True,
        webhook=headers.get(HEADER_WEBHOOK) is True,
    )
