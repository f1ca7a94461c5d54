"""``asyncgw gateway``: serve the HTTP API."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from aiohttp import web

from asyncgw import service
from asyncgw.gateway.app import create_app

log = logging.getLogger(__name__)


def register(commands: Any) -> None:
    """Add the ``gateway`` subcommand."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "gateway",
        help="serve the HTTP API (submit, status, results)",
        description="Serve the HTTP API of every API in the API file. Backends come from "
        "ASYNCGW_QUEUE_URL (amqp://...), ASYNCGW_STORE_URL and ASYNCGW_STORAGE_URL.",
    )
    service.add_config_argument(parser)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on [0.0.0.0]")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on [8080]")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = service.load("gateway", args)
    service.require_shared_queue(settings, "gateway")
    backends = service.Backends.from_settings(settings)
    app = create_app(settings, queue=backends.queue, store=backends.store, blobs=backends.blobs)
    log.info("gateway listening on %s:%s", args.host, args.port)
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
        shutdown_timeout=settings.grace_period_s,
    )
    return 0
