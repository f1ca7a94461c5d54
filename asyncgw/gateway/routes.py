"""The gateway's request handlers, one per route of SPEC §3."""

from __future__ import annotations

import json
import logging
import re

from aiohttp import web

from asyncgw.config import ApiConfig
from asyncgw.errors import BackendUnavailable, BlobNotFound
from asyncgw.gateway.context import (
    BLOBS,
    QUEUE,
    REPLICAS,
    STORE,
    api_of,
    error,
    json_response,
)
from asyncgw.schema import (
    TERMINAL,
    Record,
    Status,
    now,
    record_view,
    result_key,
    webhook_job,
)

log = logging.getLogger(__name__)

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.Response(text="ok")


async def get_only(request: web.Request) -> web.Response:
    """Any other method on the service paths (which are not APIs)."""
    raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the queue and the store can be used now."""
    problems = []
    for backend in (request.app[QUEUE], request.app[STORE]):
        try:
            await backend.ping()
        except BackendUnavailable as exc:
            log.warning("not ready: %s", exc)
            problems.append(f"{exc.backend} unavailable")
    if problems:
        return error(503, "; ".join(problems))
    return json_response({"status": "ready"})


async def _record(request: web.Request, api: ApiConfig) -> Record:
    request_id = request.match_info["id"]
    record = await request.app[STORE].get(request_id)
    if record is None or record.api != api.name:
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"id {request_id} not found"}),
            content_type="application/json",
        )
    return record


async def cancel(request: web.Request) -> web.Response:
    """``DELETE /{api}/{id}``: an ``in_queue`` request will never start; a running one has its
    task cancelled on whichever worker runs it."""
    api = api_of(request)
    record = await _record(request, api)
    store, queue = request.app[STORE], request.app[QUEUE]
    if record.status not in TERMINAL and await store.transition(
        record.id,
        [Status.IN_QUEUE, Status.IN_PROGRESS],
        Status.CANCELED,
        fields={"completed_at": now()},
    ):
        context = {"api": api.name, "request_id": record.id}
        log.info("canceled", extra=context)
        for kind in ("cancel", "done"):
            try:
                await queue.signal(kind, api.name, record.id)
            except BackendUnavailable as exc:
                log.warning("could not signal %s: %s", kind, exc, extra=context)
        record = await _record(request, api)
        return json_response(record_view(record, api.endpoint))
    record = await _record(request, api)
    return error(409, f"request {record.id} is already {record.status.value}")


async def redeliver_webhook(request: web.Request) -> web.Response:
    """``POST /{api}/{id}/webhook``: deliver the ended request's webhook again, as a new
    delivery (a new ``webhook-id``, attempts counted from zero)."""
    api = api_of(request)
    record = await _record(request, api)
    if record.webhook_url is None:
        return error(409, f"request {record.id} has no webhook URL")
    if record.status not in TERMINAL:
        return error(409, f"request {record.id} is {record.status.value}; webhooks follow its end")
    delivery = int((record.webhook or {}).get("delivery", 0)) + 1
    state = {"url": record.webhook_url, "delivery": delivery, "attempts": 0, "outcome": "pending"}
    if not await request.app[STORE].transition(
        record.id, [record.status], record.status, fields={"webhook": state}
    ):
        return error(409, f"request {record.id} changed; try again")
    await request.app[QUEUE].publish(webhook_job(record.api, record.id))
    return json_response({"id": record.id, "webhook": state}, status=202)


async def status(request: web.Request) -> web.Response:
    """``GET /{api}/{id}``: the record."""
    api = api_of(request)
    record = await _record(request, api)
    return json_response(record_view(record, api.endpoint))


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
    replicas: dict[str, int | None] = {"desired": None, "current": None}
    if REPLICAS in request.app:
        replicas = await request.app[REPLICAS](api.name)
    return json_response(
        {
            "api": api.name,
            "endpoint": f"/{api.endpoint}",
            "queue": {
                "ready": await queue.depth(api.name),
                "dead": await queue.dead_letters(api.name),
            },
            "in_flight": counts[Status.IN_QUEUE] + counts[Status.IN_PROGRESS],
            "replicas": replicas,
            "counts": {s.value: n for s, n in counts.items()},
        }
    )
