"""What every service does at start: read settings, set up logging, build the backends."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from asyncgw import logs
from asyncgw.backends import (
    BlobStore,
    Queue,
    StatusStore,
    blobs_from_url,
    queue_from_url,
    store_from_url,
)
from asyncgw.config import ApiConfig
from asyncgw.errors import ConfigError
from asyncgw.schema import webhook_channel
from asyncgw.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backends:
    """The three backends of one process."""

    queue: Queue
    store: StatusStore
    blobs: BlobStore

    @classmethod
    def from_settings(cls, settings: Settings) -> Backends:
        return cls(
            queue=queue_from_url(settings.queue_url),
            store=store_from_url(settings.store_url),
            blobs=blobs_from_url(settings.storage_url),
        )

    async def open(self) -> None:
        """Open store, blobs and queue, in that order."""
        await self.store.open()
        await self.blobs.open()
        await self.queue.open()

    async def prepare(self, apis: Iterable[ApiConfig]) -> None:
        """Declare every API's queues and set its blob retention (idempotent)."""
        for api in apis:
            await self.queue.declare(api.name)
            await self.queue.declare(webhook_channel(api.name))
            await self.blobs.expire_after(api.name, api.retention_s)

    async def close(self) -> None:
        """Close them in the reverse order."""
        await self.queue.close()
        await self.blobs.close()
        await self.store.close()


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--config`` option every service takes."""
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="API file (default: $ASYNCGW_CONFIG or ./asyncgw.yaml)",
    )


def load(service: str, args: argparse.Namespace, *, data_dir: Path | None = None) -> Settings:
    """Settings for a service, with logging set up; exits 2 listing every problem if invalid."""
    logs.setup(service)
    try:
        settings = Settings.from_env(config_path=args.config, data_dir=data_dir)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("configuration: %s", problem)
        print("\n".join(exc.problems), file=sys.stderr)
        raise SystemExit(2) from None
    logs.setup(service, settings.log_level)
    return settings


def require_shared_queue(settings: Settings, service: str) -> None:
    """Separate gateway and worker processes cannot share an in-process queue."""
    if settings.queue_url.startswith("memory:"):
        message = (
            f"ASYNCGW_QUEUE_URL is {settings.queue_url}, a queue that lives inside one process; "
            f"set it to amqp://... to run `asyncgw {service}` on its own, or run `asyncgw up`"
        )
        log.error(message)
        print(message, file=sys.stderr)
        raise SystemExit(2)
