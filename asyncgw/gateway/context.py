"""What the gateway's handlers share: typed app keys and the JSON answer helpers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import partial

from aiohttp import web

from asyncgw.backends import BlobStore, Queue, StatusStore
from asyncgw.config import RESERVED_NAMES, ApiConfig
from asyncgw.gateway.signals import Depths, Waiters
from asyncgw.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
QUEUE = web.AppKey("queue", Queue)
STORE = web.AppKey("store", StatusStore)
BLOBS = web.AppKey("blobs", BlobStore)
#: APIs by endpoint segment.
APIS = web.AppKey("apis", dict[str, ApiConfig])
WAITERS = web.AppKey("waiters", Waiters)
#: Where the summary's replica counts come from, when this process knows them (``asyncgw up``).
ReplicaCounts = Callable[[str], Awaitable[dict[str, int | None]]]
REPLICAS: web.AppKey[ReplicaCounts] = web.AppKey("replicas")
DEPTHS = web.AppKey("depths", Depths)

#: Seconds a client is asked to wait before retrying when a backend is down.
RETRY_AFTER_S = 5

json_response = partial(web.json_response, dumps=json.dumps)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error answer: ``{"error": message}`` with the given status."""
    return json_response({"error": message}, status=status, headers=headers)


def api_of(request: web.Request) -> ApiConfig:
    """The API the request's path names; a JSON 404 when there is none."""
    name = request.match_info["api"]
    api = request.app[APIS].get(name)
    if api is None and name in RESERVED_NAMES:  # /healthz and friends answer GET only
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
    if api is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"api {request.match_info['api']} not found"}),
            content_type="application/json",
        )
    return api
