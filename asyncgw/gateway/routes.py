"""The gateway's request handlers, one per route of SPEC §3."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web

from asyncgw.config import ApiConfig
from asyncgw.errors import BackendUnavailable, BlobNotFound, PayloadTooLarge
from asyncgw.gateway.context import (
    BLOBS,
    QUEUE,
    STORE,
    api_of,
    error,
    json_response,
)
from asyncgw.schema import (
    INLINE_PAYLOAD_LIMIT,
    Record,
    Status,
    new_id,
    now,
    payload_key,
    record_view,
    result_key,
)

log = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.Response(text="ok")


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the queue and the store can be used now."""
    problems = []
    for backend in (request.app[QUEUE], request.app[STORE]):
        try:
            await backend.ping()
        except BackendUnavailable as exc:
            problems.append(str(exc))
    if problems:
        return error(503, "; ".join(problems))
    return json_response({"status": "ready"})


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


async def submit(request: web.Request) -> web.Response:
    """``POST /{api}``: store the payload, insert the record, queue the message (in that order),
    so an accepted request is never orphaned."""
    api = api_of(request)
    limit = api.max_payload_size_bytes
    if request.content_length is not None and request.content_length > limit:
        return error(413, f"payload is larger than the limit of {limit} bytes")
    queue, store, blobs = request.app[QUEUE], request.app[STORE], request.app[BLOBS]
    content_type = request.headers.get("Content-Type") or "application/octet-stream"
    request_id = new_id()
    head, complete = await _read_head(request, min(INLINE_PAYLOAD_LIMIT, limit))
    key: str | None = None
    if complete:
        size = len(head)
    elif len(head) > limit:
        return error(413, f"payload is larger than the limit of {limit} bytes")
    else:
        key = payload_key(api.name, request_id)
        try:
            size = await blobs.put_stream(key, _rest(head, request), content_type, max_size=limit)
        except PayloadTooLarge:
            return error(413, f"payload is larger than the limit of {limit} bytes")
    created = now()
    record = Record(
        id=request_id,
        api=api.name,
        status=Status.IN_QUEUE,
        created_at=created,
        expires_at=created + timedelta(seconds=api.retention_s),
        content_type=content_type,
        payload_size=size,
        payload=head if key is None and not queue.persistent else None,
        payload_key=key,
        webhook_url=request.headers.get("X-Webhook-Url") or api.webhook.url,
    )
    try:
        await store.insert(record)
    except BackendUnavailable:
        if key is not None:
            with contextlib.suppress(BackendUnavailable):
                await blobs.delete(key)
        raise
    envelope = record.envelope()
    envelope.payload = head if key is None else None
    try:
        await queue.publish(envelope)
    except BackendUnavailable as exc:
        await _abandon(request, record, exc)
        raise
    log.debug("queued", extra={"api": api.name, "request_id": request_id})
    return json_response(
        {"id": request_id, "status": Status.IN_QUEUE.value},
        status=202,
        headers={"Location": f"/{api.endpoint}/{request_id}"},
    )


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
            },
        )
    except BackendUnavailable:
        log.error(
            "request accepted into the store but not queued; it stays in_queue",
            extra={"api": record.api, "request_id": record.id},
        )


async def _record(request: web.Request, api: ApiConfig) -> Record:
    request_id = request.match_info["id"]
    record = await request.app[STORE].get(request_id)
    if record is None or record.api != api.name:
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"id {request_id} not found"}),
            content_type="application/json",
        )
    return record


async def status(request: web.Request) -> web.Response:
    """``GET /{api}/{id}``: the record."""
    record = await _record(request, api_of(request))
    return json_response(record_view(record))


def _byte_range(header: str | None) -> tuple[int, int | None] | None:
    """``(start, end)`` of a single ``bytes=`` range; ``None`` for none or one we do not serve."""
    if not header or not (m := _RANGE.fullmatch(header.strip())):
        return None
    first, last = m.groups()
    if not first:
        return None
    start = int(first)
    end = int(last) if last else None
    if end is not None and end < start:
        return None
    return start, end


async def result(request: web.Request) -> web.StreamResponse:
    """``GET /{api}/{id}/result``: the result bytes, streamed, with their Content-Type; a single
    ``Range: bytes=a-b`` is honoured for results kept in the blob store."""
    api = api_of(request)
    record = await _record(request, api)
    if record.status is not Status.COMPLETED:
        return error(409, f"request {record.id} is {record.status.value}, not completed")
    if record.result_json is not None:
        return web.Response(text=record.result_json, content_type="application/json")
    wanted = _byte_range(request.headers.get("Range"))
    try:
        if wanted is None:
            blob = await request.app[BLOBS].get(result_key(api.name, record.id))
        else:
            blob = await request.app[BLOBS].get(result_key(api.name, record.id), *wanted)
    except BlobNotFound:
        return error(404, f"result of {record.id} is no longer stored")
    except ValueError:
        return error(416, "requested range not satisfiable")
    response = web.StreamResponse(status=206 if wanted else 200)
    response.headers["Content-Type"] = blob.content_type
    response.headers["Accept-Ranges"] = "bytes"
    response.content_length = blob.end - blob.start + 1
    if wanted:
        response.headers["Content-Range"] = f"bytes {blob.start}-{blob.end}/{blob.size}"
    await response.prepare(request)
    async for chunk in blob.chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


async def summary(request: web.Request) -> web.Response:
    """``GET /{api}``: counts by status and queue depth."""
    api = api_of(request)
    counts = await request.app[STORE].counts(api.name)
    queue = request.app[QUEUE]
    return json_response(
        {
            "api": api.name,
            "endpoint": f"/{api.endpoint}",
            "queue": {
                "ready": await queue.depth(api.name),
                "dead": await queue.dead_letters(api.name),
            },
            "in_flight": counts[Status.IN_QUEUE] + counts[Status.IN_PROGRESS],
            "counts": {s.value: n for s, n in counts.items()},
        }
    )
