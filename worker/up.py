"""``asyncgw up``: the gateway and a worker pool for every API in one process, on embedded
backends unless ``ASYNCGW_*_URL`` say otherwise. An in-process queue is rebuilt from the status
store at start, so a crash loses no accepted request."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from asyncgw import service
from asyncgw.autoscaling import Autoscaler
from asyncgw.autoscaling.autoscaler import export_metrics
from asyncgw.backends import Queue, StatusStore
from asyncgw.config import ApiConfig
from asyncgw.errors import BackendUnavailable
from asyncgw.gateway import create_app
from asyncgw.schema import webhook_job
from asyncgw.settings import DEFAULT_DATA_DIR, Settings
from worker.cli import exit_now_if_threads_stuck, prepare_handler
from worker.pool import WorkerPools
from worker.runner import Worker
from worker.webhooks import load_secret

log = logging.getLogger(__name__)


def register(commands: Any) -> None:
    """Add the ``up`` subcommand."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "up",
        help="run everything in one process (no servers needed)",
        description="Run the gateway and a worker pool for every API in the API file, in one "
        "process. With no ASYNCGW_*_URL set it keeps records in SQLite and blobs in files below "
        "--data-dir and queues in memory (rebuilt from the records at start). Ctrl+C stops it "
        "gracefully.",
    )
    service.add_config_argument(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on [8080]")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"where embedded backends keep data [$ASYNCGW_DATA_DIR or ./{DEFAULT_DATA_DIR}]",
    )
    parser.set_defaults(run=run)


async def requeue_unfinished(settings: Settings, queue: Queue, store: StatusStore) -> int:
    """Queue again every ``in_queue`` or ``in_progress`` request of a known API, and every
    webhook still to deliver (for a queue that does not keep messages itself); return how many."""
    known = {api.name for api in settings.apis}
    count = 0
    async for record in store.unfinished():
        if record.api not in known:
            log.warning(
                "unfinished request of an API not in the API file; left as it is",
                extra={"api": record.api, "request_id": record.id},
            )
            continue
        await queue.restore(record.envelope())
        count += 1
    async for record in store.undelivered_webhooks():
        if record.api in known:
            await queue.publish(webhook_job(record.api, record.id))
            count += 1
    return count


async def serve(settings: Settings, host: str, port: int) -> int:
    """Run until SIGINT/SIGTERM, then stop in order: intake, workers, backends."""
    secrets = {api.name: load_secret(api, dict(os.environ)) for api in settings.apis}
    handlers = {api.name: prepare_handler(api) for api in settings.apis}
    backends = service.Backends.from_settings(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await backends.open()
        await backends.prepare(settings.apis)
        if not backends.queue.persistent:
            restored = await requeue_unfinished(settings, backends.queue, backends.store)
            if restored:
                log.info("queued %d unfinished requests again", restored)
    except BackendUnavailable as exc:
        log.error("cannot start: %s", exc)
        await backends.close()
        return 1

    def make(api: ApiConfig) -> Worker:
        return Worker(
            api,
            handlers[api.name],
            queue=backends.queue,
            store=backends.store,
            blobs=backends.blobs,
            grace_period_s=settings.grace_period_s,
            webhook_secret=secrets[api.name],
            webhook_allow_private=settings.webhook_allow_private,
        )

    pools = WorkerPools(make)
    for api in settings.apis:
        await pools.scale(api, api.init_replicas)
    autoscaler = Autoscaler(
        settings.apis,
        pools,
        backends.queue,
        backends.store,
        interval_s=settings.scaler_interval_s,
        observer=export_metrics,
    )
    autoscaler.start()
    by_name = {api.name: api for api in settings.apis}

    async def replicas(name: str) -> dict[str, int | None]:
        current = await pools.replicas(by_name[name])
        return {"desired": autoscaler.desired.get(name, current), "current": current}

    app = create_app(
        settings,
        queue=backends.queue,
        store=backends.store,
        blobs=backends.blobs,
        manage_backends=False,
        replicas=replicas,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", host, port, exc.strerror)
        await runner.cleanup()
        await autoscaler.stop()
        await pools.stop()
        await backends.close()
        return 1
    _banner(settings, host, port)
    await stop.wait()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    log.info("stop signal received; shutting down")
    await site.stop()
    await autoscaler.stop()
    await pools.stop()
    await runner.cleanup()
    await backends.close()
    log.info("stopped")
    return 0


def _banner(settings: Settings, host: str, port: int) -> None:
    base = f"http://{'127.0.0.1' if host in {'0.0.0.0', '::'} else host}:{port}"
    lines = [f"asyncgw is up on {base} with APIs: {', '.join(a.name for a in settings.apis)}"]
    if settings.apis:
        first = settings.apis[0].endpoint
        lines += [
            "Try:",
            f"  curl -X POST {base}/{first} -H 'Content-Type: application/json' -d '<payload>'",
            f"  curl {base}/{first}/<id>",
        ]
    lines.append("Ctrl+C stops it.")
    print("\n".join(lines), flush=True)


def run(args: argparse.Namespace) -> int:
    settings = service.load("up", args, data_dir=args.data_dir)
    try:
        code = asyncio.run(serve(settings, args.host, args.port))
    except Exception:
        log.exception("asyncgw up failed")
        print("asyncgw up failed; see the log above", file=sys.stderr)
        return 1
    exit_now_if_threads_stuck(code)
    return code
