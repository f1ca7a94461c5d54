"""``asyncgw worker --api NAME``: run one API's handler against its queue until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from typing import Any

from aiohttp import web

from asyncgw import service
from asyncgw.config import ApiConfig
from asyncgw.errors import BackendUnavailable, ConfigError
from asyncgw.metrics import MetricsClient, metrics_app
from asyncgw.settings import Settings
from worker.handler import LoadedHandler, load_handler
from worker.runner import Worker
from worker.webhooks import load_secret

log = logging.getLogger(__name__)


def register(commands: Any) -> None:
    """Add the ``worker`` subcommand."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "worker",
        help="run one API's handler on its queue",
        description="Consume the API's queue and run its handler, up to handler.max_concurrency "
        "requests at once. SIGTERM or SIGINT stops intake, lets running requests finish within "
        "ASYNCGW_GRACE_PERIOD (30s) and requeues the rest.",
    )
    parser.add_argument("--api", required=True, help="name of the API in the API file")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=9090,
        help="port of the worker's /metrics; 0 turns it off [9090]",
    )
    service.add_config_argument(parser)
    parser.set_defaults(run=run)


def prepare_handler(api: ApiConfig) -> LoadedHandler:
    """Apply the API's ``handler.env`` and ``log_level``, then import and construct its handler."""
    os.environ.update(api.handler.env)
    if api.handler.log_level:
        logging.getLogger().setLevel(api.handler.log_level.upper())
    return load_handler(
        api.handler_path,
        api.python_path,
        api.handler.config,
        module_name=f"asyncgw_handler_{api.name.replace('-', '_')}",
        metrics_client=MetricsClient(api.name),
    )


async def serve(
    settings: Settings,
    api: ApiConfig,
    handler: LoadedHandler,
    secret: str | None,
    metrics_port: int = 0,
) -> int:
    """Run the worker until a stop signal, then shut down in order."""
    backends = service.Backends.from_settings(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await backends.open()
        worker = Worker(
            api,
            handler,
            queue=backends.queue,
            store=backends.store,
            blobs=backends.blobs,
            grace_period_s=settings.grace_period_s,
            webhook_secret=secret,
            webhook_allow_private=settings.webhook_allow_private,
        )
        await worker.start()
    except BackendUnavailable as exc:
        log.error("cannot start: %s", exc, extra={"api": api.name})
        await backends.close()
        return 1
    runner = web.AppRunner(metrics_app(), access_log=None)
    await runner.setup()
    if metrics_port:
        await web.TCPSite(runner, "0.0.0.0", metrics_port).start()
    await stop.wait()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    log.info("stop signal received; shutting down", extra={"api": api.name})
    await worker.stop()
    await runner.cleanup()
    await backends.close()
    log.info("worker stopped", extra={"api": api.name})
    return 0


def run(args: argparse.Namespace) -> int:
    settings = service.load("worker", args)
    service.require_shared_queue(settings, "worker")
    try:
        api = settings.api(args.api)
    except ConfigError as exc:
        log.error("%s", exc)
        print(exc, file=sys.stderr)
        return 2
    try:
        secret = load_secret(api, dict(os.environ))
    except ValueError as exc:
        log.error("%s", exc, extra={"api": api.name})
        print(f"api {api.name}: {exc}", file=sys.stderr)
        return 2
    try:
        handler = prepare_handler(api)
    except Exception:
        log.exception("handler failed to load; exiting", extra={"api": api.name})
        return 1
    code = asyncio.run(serve(settings, api, handler, secret, args.metrics_port))
    exit_now_if_threads_stuck(code)
    return code


def exit_now_if_threads_stuck(code: int) -> None:
    """A sync handler still running past the grace period cannot be interrupted, and Python
    would wait for its thread at exit; its message is already back in the queue, so leave."""
    if any(t.name.startswith("handler-") and t.is_alive() for t in threading.enumerate()):
        logging.shutdown()
        os._exit(code)
