"""``asyncgw scaler``: scale every API's worker Deployment from its queue (SPEC §9)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from aiohttp import web

from asyncgw import metrics, service
from asyncgw.autoscaling import Autoscaler
from asyncgw.autoscaling.autoscaler import DEFAULT_INTERVAL_S, export_metrics
from asyncgw.backends import queue_from_url, store_from_url
from asyncgw.settings import Settings
from asyncgw.units import parse_duration
from scaler.kubernetes import KubernetesTarget

log = logging.getLogger(__name__)


def register(commands: Any) -> None:
    """Add the ``scaler`` subcommand."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "scaler",
        help="scale the worker Deployments on Kubernetes from queue depth",
        description="Every interval, for every API in the API file, read the queue (ready "
        "messages and requests in progress), apply the autoscaling policy and patch "
        "deployments/asyncgw-worker-<api>/scale in $ASYNCGW_NAMESPACE. Uses the in-cluster "
        "service account, else the kubeconfig.",
    )
    service.add_config_argument(parser)
    parser.add_argument(
        "--interval",
        type=parse_duration,
        default=None,
        help=f"time between ticks [$ASYNCGW_SCALER_INTERVAL or {DEFAULT_INTERVAL_S:g}s]",
    )
    parser.add_argument("--metrics-port", type=int, default=9090, help="port of /metrics [9090]")
    parser.set_defaults(run=run)


async def serve(settings: Settings, interval_s: float, metrics_port: int) -> int:
    queue = queue_from_url(settings.queue_url)
    store = store_from_url(settings.store_url)
    target = KubernetesTarget(settings.namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await store.open()
        await queue.open()
        for api in settings.apis:
            await queue.declare(api.name)
        await target.open()
    except Exception as exc:  # any backend, kubeconfig or service-account problem
        log.error("cannot start: %s", exc)
        await queue.close()
        await store.close()
        return 1
    runner = web.AppRunner(metrics.metrics_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", metrics_port).start()
    autoscaler = Autoscaler(
        settings.apis, target, queue, store, interval_s=interval_s, observer=export_metrics
    )
    autoscaler.start()
    log.info(
        "scaling %d APIs in namespace %s every %gs",
        len(settings.apis),
        settings.namespace,
        interval_s,
    )
    await stop.wait()
    log.info("stop signal received; shutting down")
    await autoscaler.stop()
    await runner.cleanup()
    await target.close()
    await queue.close()
    await store.close()
    log.info("scaler stopped")
    return 0


def run(args: argparse.Namespace) -> int:
    settings = service.load("scaler", args)
    service.require_shared_queue(settings, "scaler")
    if settings.scaler_target != "kubernetes":
        message = (
            f"ASYNCGW_SCALER_TARGET is {settings.scaler_target}; `asyncgw scaler` scales "
            "Kubernetes Deployments (the local target lives inside `asyncgw up`)"
        )
        print(message, file=sys.stderr)
        return 2
    interval = args.interval if args.interval is not None else settings.scaler_interval_s
    return asyncio.run(serve(settings, interval, args.metrics_port))
