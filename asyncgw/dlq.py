"""``asyncgw dlq``: inspect and redrive an API's dead letters — the messages of requests that
failed for good, and poison messages that could not be processed at all.

With RabbitMQ the dead letters are the messages in ``asyncgw.<api>.dead``. The embedded
in-process queue keeps nothing across restarts, so there the failed records in the store are the
dead letters; redriving them resets them to ``in_queue`` and the next ``asyncgw up`` runs them."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any

from asyncgw import service
from asyncgw.backends import StatusStore
from asyncgw.errors import BackendUnavailable, ConfigError
from asyncgw.schema import Envelope, Record, Status, record_view
from asyncgw.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """\
Inspect and redrive an API's dead letters: the messages of requests that failed for good, and
poison messages that could not be processed at all.

With RabbitMQ the dead letters are the messages in asyncgw.<api>.dead. The embedded in-process
queue keeps nothing across restarts, so there the failed records are the dead letters:
redriving resets them to in_queue and the next `asyncgw up` runs them. A redriven request keeps
its attempt count; it gets one more attempt."""


def register(commands: Any) -> None:
    """Add the ``dlq`` subcommand with ``list`` and ``redrive``."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "dlq",
        help="list or redrive an API's dead letters",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="print each dead letter as a JSON line")
    listing.add_argument("--limit", type=int, default=1000, help="at most this many [1000]")
    redrive = actions.add_parser(
        "redrive", help="reset failed requests to in_queue and queue them again"
    )
    redrive.add_argument(
        "--id", dest="ids", action="append", help="only this request (repeatable); default: all"
    )
    for sub in (listing, redrive):
        sub.add_argument("--api", required=True, help="name of the API in the API file")
        service.add_config_argument(sub)
        sub.set_defaults(run=run)


async def reset(store: StatusStore, envelope: Envelope) -> bool:
    """Put a failed request back to ``in_queue`` so that its message may run again: the one
    move out of a terminal status, made only by an operator."""
    # An in_queue record with its message among the dead letters was stranded by a redrive
    # whose publish failed: take it too.
    return await store.transition(
        envelope.id,
        [Status.FAILED, Status.IN_QUEUE],
        Status.IN_QUEUE,
        fields={"completed_at": None, "error": None},
    )


def _line(envelope: Envelope, record: Record | None) -> str:
    entry: dict[str, Any] = {"id": envelope.id, "api": envelope.api}
    if record is None:
        entry["status"] = None
        entry["problem"] = "no record for this id"
    else:
        view = record_view(record)
        entry.update({k: view[k] for k in ("status", "attempts", "created_at") if k in view})
        if "error" in view:
            entry["error"] = view["error"]
    return json.dumps(entry)


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    api = settings.api(args.api)
    backends = service.Backends.from_settings(settings)
    await backends.open()
    try:
        await backends.queue.declare(api.name)
        queue, store = backends.queue, backends.store
        if args.action == "list":
            if queue.persistent:
                for envelope in await queue.dead(api.name, args.limit):
                    print(_line(envelope, await store.get(envelope.id)))
            else:
                for record in await store.by_status(api.name, Status.FAILED, args.limit):
                    print(_line(record.envelope(), record))
            return 0
        ids = set(args.ids) if args.ids else None

        async def prepare(envelope: Envelope) -> bool:
            return await reset(store, envelope)

        if queue.persistent:
            moved = await queue.redrive(api.name, ids, prepare)
        else:
            moved = []
            for record in await store.by_status(api.name, Status.FAILED, 1_000_000):
                if (ids is None or record.id in ids) and await prepare(record.envelope()):
                    moved.append(record.id)
        for request_id in moved:
            print(json.dumps({"id": request_id, "status": Status.IN_QUEUE.value}))
        missing = (ids or set()) - set(moved)
        for request_id in sorted(missing):
            print(f"{request_id}: not a dead letter of {api.name}", file=sys.stderr)
        if not queue.persistent and moved:
            print("start `asyncgw up` to run them", file=sys.stderr)
        return 1 if missing else 0
    finally:
        await backends.close()


def run(args: argparse.Namespace) -> int:
    settings = service.load("dlq", args)
    try:
        return asyncio.run(_run(settings, args))
    except (ConfigError, BackendUnavailable) as exc:
        print(exc, file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
