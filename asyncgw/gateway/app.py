"""The gateway's aiohttp application factory: typed app keys, one route table, backends opened
and closed in ``cleanup_ctx``, and one middleware that turns errors into JSON answers."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from asyncgw import metrics
from asyncgw.backends import BlobStore, Queue, StatusStore
from asyncgw.errors import BackendUnavailable
from asyncgw.gateway import routes
from asyncgw.gateway.context import (
    APIS,
    BLOBS,
    DEPTHS,
    QUEUE,
    REPLICAS,
    RETRY_AFTER_S,
    SETTINGS,
    STORE,
    WAITERS,
    error,
)
from asyncgw.gateway.openapi import openapi_handler
from asyncgw.gateway.signals import Depths, Waiters
from asyncgw.gateway.submit import submit
from asyncgw.service import Backends
from asyncgw.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON; an unreachable backend is a 503 with ``Retry-After``."""
    try:
        return await handler(request)
    except BackendUnavailable as exc:
        # The details (hosts, buckets) go to the log, not to clients.
        log.warning("answering 503: %s", exc)
        message = f"{exc.backend} unavailable, try again later"
        return error(503, message, {"Retry-After": str(RETRY_AFTER_S)})
    except web.HTTPException as exc:
        if exc.content_type == "application/json":
            raise
        kept = {k: v for k, v in exc.headers.items() if k in {"Allow", "Retry-After"}}
        return error(exc.status, exc.reason, kept)
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return error(500, "internal error")


@web.middleware
async def measured(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every answer, labelled by API (only known ones: labels stay bounded)."""
    started = time.perf_counter()
    code = 500
    try:
        response = await handler(request)
        code = response.status
        return response
    except web.HTTPException as exc:
        code = exc.status
        raise
    finally:
        api = request.app[APIS].get(request.match_info.get("api", ""))
        name = api.name if api is not None else ""
        metrics.HTTP_REQUESTS.labels(name, request.method, str(code)).inc()
        metrics.HTTP_DURATION.labels(name, request.method).observe(time.perf_counter() - started)


def _backends(
    backends: Backends, settings: Settings
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await backends.open()
        await backends.prepare(settings.apis)
        log.info("backends open")
        yield
        log.info("closing backends")
        await backends.close()

    return lifecycle


async def _listen(app: web.Application) -> None:
    """Wake waiting clients when their requests end (runs after the backends are open)."""
    await app[QUEUE].on_signal(app[WAITERS].on_signal)


def create_app(
    settings: Settings,
    *,
    queue: Queue,
    store: StatusStore,
    blobs: BlobStore,
    manage_backends: bool = True,
    replicas: Callable[[str], Awaitable[dict[str, int | None]]] | None = None,
) -> web.Application:
    """The gateway application. With ``manage_backends`` false the caller opens and closes the
    backends (as ``asyncgw up`` does, sharing them with its workers)."""
    app = web.Application(middlewares=[measured, errors_as_json])
    app[SETTINGS] = settings
    app[QUEUE] = queue
    app[STORE] = store
    app[BLOBS] = blobs
    app[APIS] = {api.endpoint: api for api in settings.apis}
    app[WAITERS] = Waiters()
    app[DEPTHS] = Depths(queue)
    if replicas is not None:
        app[REPLICAS] = replicas
    if manage_backends:
        app.cleanup_ctx.append(_backends(Backends(queue, store, blobs), settings))
    app.on_startup.append(_listen)
    app.add_routes(
        [
            web.get("/healthz", routes.healthz),
            web.route("*", "/healthz", routes.get_only),
            web.get("/readyz", routes.readyz),
            web.route("*", "/readyz", routes.get_only),
            web.get("/metrics", metrics.metrics_handler),
            web.route("*", "/metrics", routes.get_only),
            web.get("/openapi.json", openapi_handler),
            web.route("*", "/openapi.json", routes.get_only),
            web.post("/{api}", submit),
            web.get("/{api}", routes.summary),
            web.get("/{api}/{id}", routes.status),
            web.delete("/{api}/{id}", routes.cancel),
            web.post("/{api}/{id}/webhook", routes.redeliver_webhook),
            web.get("/{api}/{id}/result", routes.result),
        ]
    )
    return app
