"""``POST /{api}``: accept a request. The payload is stored (in the blob store when large,
streamed), the record inserted ``in_queue``, the message published with a confirm — in that
order, so a 202 means the request is durable and no accepted request is ever orphaned."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web

from asyncgw import metrics
from asyncgw.config import ApiConfig
from asyncgw.errors import BackendUnavailable, DuplicateRequest, PayloadTooLarge
from asyncgw.gateway.context import (
    BLOBS,
    DEPTHS,
    QUEUE,
    RETRY_AFTER_S,
    SETTINGS,
    STORE,
    WAITERS,
    api_of,
    error,
    json_response,
)
from asyncgw.schema import (
    INLINE_PAYLOAD_LIMIT,
    TERMINAL,
    Record,
    Status,
    new_id,
    now,
    payload_key,
    record_view,
)
from asyncgw.webhooks import UnsafeWebhookUrl, check_url

log = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
#: The longest ``Prefer: wait=N`` honoured.
MAX_WAIT_S = 60
MAX_IDEMPOTENCY_KEY = 255
_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+)", re.IGNORECASE)


def preferred_wait_s(header: str | None) -> int:
    """Seconds asked for by ``Prefer: wait=N`` (0 when absent), at most ``MAX_WAIT_S``."""
    if not header or not (match := _WAIT.search(header)):
        return 0
    return min(int(match.group(1)), MAX_WAIT_S)


async def _read_head(request: web.Request, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit + 1`` bytes of the body, and whether the body ended within them."""
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            return b"".join(parts), True
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts), False


async def _rest(head: bytes, request: web.Request) -> AsyncIterator[bytes]:
    yield head
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        yield chunk


def _too_large(limit: int) -> web.Response:
    return error(413, f"payload is larger than the limit of {limit} bytes")


def _existing(record: Record, api: ApiConfig) -> web.Response:
    return json_response(record_view(record, api.endpoint), status=200)


async def submit(request: web.Request) -> web.Response:
    """``POST /{api}``; see the module docstring."""
    api = api_of(request)
    store, blobs = request.app[STORE], request.app[BLOBS]
    limit = api.max_payload_size_bytes
    if request.content_length is not None and request.content_length > limit:
        return _too_large(limit)
    webhook_url = request.headers.get("X-Webhook-Url")
    if webhook_url is not None:
        try:
            await check_url(webhook_url, allow_private=request.app[SETTINGS].webhook_allow_private)
        except UnsafeWebhookUrl as exc:
            return error(400, str(exc))
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None:
        if not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            return error(400, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
        if (known := await store.find_idempotent(api.name, idempotency_key)) is not None:
            return _existing(known, api)
    if api.max_queue_length and await request.app[DEPTHS].get(api.name) >= api.max_queue_length:
        return error(
            429,
            f"queue of {api.name} is full ({api.max_queue_length} requests waiting)",
            {"Retry-After": str(RETRY_AFTER_S)},
        )
    request_id = new_id()
    head, complete = await _read_head(request, min(INLINE_PAYLOAD_LIMIT, limit))
    key: str | None = None
    if complete:
        size = len(head)
    elif len(head) > limit:
        return _too_large(limit)
    else:
        key = payload_key(api.name, request_id)
        content_type = request.headers.get("Content-Type") or "application/octet-stream"
        try:
            size = await blobs.put_stream(key, _rest(head, request), content_type, max_size=limit)
        except PayloadTooLarge:
            return _too_large(limit)
    record = _new_record(request, api, request_id, head if key is None else None, key, size)
    record.idempotency_key = idempotency_key
    try:
        await store.insert(record)
    except (BackendUnavailable, DuplicateRequest) as exc:
        if key is not None:
            with contextlib.suppress(BackendUnavailable):
                await blobs.delete(key)
        known = None
        if isinstance(exc, DuplicateRequest) and idempotency_key is not None:
            known = await store.find_idempotent(api.name, idempotency_key)
        if known is None:
            raise
        return _existing(known, api)
    return await _enqueue(request, api, record, head if key is None else None)


def _new_record(
    request: web.Request,
    api: ApiConfig,
    request_id: str,
    inline: bytes | None,
    key: str | None,
    size: int,
) -> Record:
    created = now()
    return Record(
        id=request_id,
        api=api.name,
        status=Status.IN_QUEUE,
        created_at=created,
        expires_at=created + timedelta(seconds=api.retention_s),
        content_type=request.headers.get("Content-Type") or "application/octet-stream",
        payload_size=size,
        # A queue that keeps nothing across restarts is rebuilt from the records.
        payload=None if request.app[QUEUE].persistent else inline,
        payload_key=key,
        webhook_url=request.headers.get("X-Webhook-Url") or api.webhook.url,
    )


async def _enqueue(
    request: web.Request, api: ApiConfig, record: Record, inline: bytes | None
) -> web.Response:
    """Publish the message, then answer 202 — or 200 with the record when the client asked to
    wait and the request ended in time."""
    wait_s = preferred_wait_s(request.headers.get("Prefer"))
    waiters = request.app[WAITERS]
    envelope = record.envelope()
    envelope.payload = inline
    envelope.notify = wait_s > 0
    future = waiters.register(record.id) if wait_s else None
    try:
        try:
            await request.app[QUEUE].publish(envelope)
        except BackendUnavailable as exc:
            await _abandon(request, record, exc)
            raise
        log.debug("queued", extra={"api": api.name, "request_id": record.id})
        metrics.SUBMITTED.labels(api.name).inc()
        headers = {"Location": f"/{api.endpoint}/{record.id}"}
        if future is not None:
            headers["Preference-Applied"] = f"wait={wait_s}"
            if await waiters.wait(future, wait_s):
                with contextlib.suppress(BackendUnavailable):  # it is queued: 202 stays true
                    done = await request.app[STORE].get(record.id)
                    if done is not None and done.status in TERMINAL:
                        view = record_view(done, api.endpoint)
                        return json_response(view, status=200, headers=headers)
        return json_response(
            {"id": record.id, "status": Status.IN_QUEUE.value}, status=202, headers=headers
        )
    finally:
        if future is not None:
            waiters.discard(record.id)


async def _abandon(request: web.Request, record: Record, exc: BackendUnavailable) -> None:
    """Mark a request whose message could not be queued as failed, so no one waits for it."""
    try:
        await request.app[STORE].transition(
            record.id,
            [Status.IN_QUEUE],
            Status.FAILED,
            fields={
                "completed_at": now(),
                "error": {"type": "QueueUnavailable", "message": str(exc)},
                # The client was told 503: a retry with the same key must create the request.
                "idempotency_key": None,
            },
        )
    except BackendUnavailable:
        log.error(
            "request accepted into the store but not queued; it stays in_queue",
            extra={"api": record.api, "request_id": record.id},
        )
