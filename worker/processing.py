"""Processing one message: claim the record, run the handler, store the result, record the
outcome, and only then settle the message (SPEC §6). A crash at any point leaves a message that
the broker delivers again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asyncgw.backends import BlobStore, Delivery, Queue, StatusStore
from asyncgw.config import ApiConfig
from asyncgw.errors import BackendUnavailable
from asyncgw.retries import Outcome, decide, retry_delay_s
from asyncgw.schema import (
    INLINE_RESULT_LIMIT,
    TERMINAL,
    Envelope,
    Status,
    now,
    result_key,
    webhook_job,
)
from worker.handler import LoadedHandler, Output, classify, decode_payload

log = logging.getLogger(__name__)

#: Pause before handing back a message whose processing hit an unreachable backend.
BACKEND_RETRY_DELAY_S = 1.0


class HandlerTimeout(Exception):
    """The handler ran past ``handler.timeout``."""


def error_of(exc: BaseException, timeout_s: float) -> dict[str, str]:
    """The record's ``error`` field for a failed attempt."""
    if isinstance(exc, HandlerTimeout):
        return {"type": "Timeout", "message": f"handler did not finish within {timeout_s:g}s"}
    return {"type": type(exc).__name__, "message": str(exc)}


@dataclass
class Processor:
    """Everything one API's messages are processed with."""

    api: ApiConfig
    handler: LoadedHandler
    queue: Queue
    store: StatusStore
    blobs: BlobStore
    executor: Executor
    #: Ids of running requests whose cancellation was asked for (their tasks get cancelled).
    canceled: set[str] = field(default_factory=set)

    async def process(self, delivery: Delivery) -> None:
        """Process one message to the end; ``asyncio.CancelledError`` passes through (the caller
        hands the request back)."""
        envelope = delivery.envelope
        if envelope is None or envelope.api != self.api.name:
            why = delivery.problem or f"message belongs to api {envelope and envelope.api}"
            log.error("dead-lettering undecodable message: %s", why, extra={"api": self.api.name})
            await delivery.reject(requeue=False)
            return
        context = {"api": self.api.name, "request_id": envelope.id}
        try:
            started_at = await self._claim(envelope, delivery)
            if started_at is not None:
                await self._attempt(envelope, started_at, delivery)
        except BackendUnavailable as exc:
            log.warning("backend unavailable, handing the message back: %s", exc, extra=context)
            await asyncio.sleep(BACKEND_RETRY_DELAY_S)
            with contextlib.suppress(Exception):
                await delivery.reject(requeue=True)

    async def _claim(self, envelope: Envelope, delivery: Delivery) -> datetime | None:
        """Move the record to ``in_progress``, counting the attempt, and return the attempt's
        start time, which later updates name so that only this attempt can finish the request.
        A redelivered message may take over a record left ``in_progress`` by a worker that died;
        a fresh one may not. Settle the message and return ``None`` when there is nothing to do."""
        started_at = now()
        expected = [Status.IN_QUEUE]
        if delivery.redelivered:
            expected.append(Status.IN_PROGRESS)
        if await self.store.transition(
            envelope.id,
            expected,
            Status.IN_PROGRESS,
            increment_attempts=True,
            fields={"started_at": started_at},
        ):
            return started_at
        context = {"api": self.api.name, "request_id": envelope.id}
        record = await self.store.get(envelope.id)
        if record is None:
            log.error("dead-lettering message for an unknown request id", extra=context)
            await delivery.reject(requeue=False)
        elif record.status in TERMINAL:
            log.info("skipping message of a %s request", record.status.value, extra=context)
            # The worker that ended it may have died before it scheduled the webhook.
            outcome = (record.webhook or {}).get("outcome", "pending")
            if record.webhook_url is not None and outcome == "pending":
                await self.queue.publish(webhook_job(self.api.name, record.id))
            await delivery.ack()
        elif record.status is Status.IN_PROGRESS:
            log.warning("dropping a second message for a request already running", extra=context)
            await delivery.ack()
        else:
            await delivery.reject(requeue=True)
        return None

    async def _attempt(self, envelope: Envelope, started_at: datetime, delivery: Delivery) -> None:
        context = {"api": self.api.name, "request_id": envelope.id}
        timeout_s = self.api.handler.timeout_s
        try:
            output = await self._run(envelope, timeout_s)
            fields = await self._store_result(envelope, output, timeout_s)
        except asyncio.CancelledError:
            if envelope.id in self.canceled:
                self.canceled.discard(envelope.id)
                log.info("canceled while running", extra=context)
                await self._ended(envelope)
                await delivery.ack()
                return
            await self._hand_back(envelope, started_at, delivery)
            raise
        except BackendUnavailable:
            raise
        except Exception as exc:
            await self._failed(envelope, started_at, delivery, error_of(exc, timeout_s))
            return
        fields.update(completed_at=now(), error=None)
        if await self.store.transition(
            envelope.id,
            [Status.IN_PROGRESS],
            Status.COMPLETED,
            started_at=started_at,
            fields=fields,
        ):
            log.debug("completed", extra=context)
            await self._ended(envelope)
        else:
            log.info("record changed while running; result dropped", extra=context)
        await delivery.ack()

    async def _failed(
        self, envelope: Envelope, started_at: datetime, delivery: Delivery, error: dict[str, str]
    ) -> None:
        """Retry the request later or fail it for good."""
        context: dict[str, Any] = {
            "api": self.api.name,
            "request_id": envelope.id,
            "error_type": error["type"],
        }
        record = await self.store.get(envelope.id)
        attempts = record.attempts if record is not None else 1
        outcome = decide(error["type"], attempts, self.api.handler.retries)
        if outcome is Outcome.RETRY:
            delay_s = retry_delay_s(attempts, self.api.handler.retry_backoff_s)
            if await self.store.transition(
                envelope.id,
                [Status.IN_PROGRESS],
                Status.IN_QUEUE,
                started_at=started_at,
                fields={"error": error},
            ):
                await self.queue.publish(envelope, delay_s=delay_s)
                log.info(
                    "attempt %d failed; retrying in %.1fs",
                    attempts,
                    delay_s,
                    extra={**context, "attempt": attempts},
                )
            await delivery.ack()
            return
        log.warning("request failed after %d attempts", attempts, extra=context)
        if await self.store.transition(
            envelope.id,
            [Status.IN_PROGRESS],
            Status.FAILED,
            started_at=started_at,
            fields={"completed_at": now(), "error": error},
        ):
            await self._ended(envelope)
        else:
            log.info("record changed while running; failure dropped", extra=context)
        await delivery.reject(requeue=False)

    async def _ended(self, envelope: Envelope) -> None:
        """The request reached a terminal status: schedule its webhook (durably, before the
        message is settled) and wake a client waiting with ``Prefer: wait`` (best effort)."""
        if envelope.webhook:
            await self.queue.publish(webhook_job(envelope.api, envelope.id))
        if envelope.notify:
            with contextlib.suppress(BackendUnavailable):
                await self.queue.signal("done", envelope.api, envelope.id)

    async def _run(self, envelope: Envelope, timeout_s: float) -> Output:
        """Fetch and decode the payload, call the handler under its timeout, classify the result."""
        body = envelope.payload
        if body is None:
            body = await self.blobs.read(envelope.payload_key or "")
        payload = decode_payload(body, envelope.content_type)
        try:
            async with asyncio.timeout(timeout_s):
                value = await self.handler.call(payload, envelope.id, self.executor)
        except TimeoutError:
            raise HandlerTimeout() from None
        return classify(value, self.executor)

    async def _store_result(
        self, envelope: Envelope, output: Output, timeout_s: float
    ) -> dict[str, Any]:
        """Store the result; return the record fields that describe it."""
        key = result_key(self.api.name, envelope.id)
        if output.kind == "json" and len(output.body) <= INLINE_RESULT_LIMIT:
            return {
                "result_json": output.body.decode(),
                "result_content_type": output.content_type,
                "result_size": len(output.body),
            }
        if output.chunks is not None:
            try:
                async with asyncio.timeout(timeout_s):
                    size = await self.blobs.put_stream(key, output.chunks, output.content_type)
            except TimeoutError:
                raise HandlerTimeout() from None
        else:
            await self.blobs.put(key, output.body, output.content_type)
            size = len(output.body)
        return {"result_content_type": output.content_type, "result_size": size}

    async def _hand_back(
        self, envelope: Envelope, started_at: datetime, delivery: Delivery
    ) -> None:
        """Return an unfinished request to the queue (the worker is stopping)."""
        with contextlib.suppress(BackendUnavailable):
            await self.store.transition(
                envelope.id, [Status.IN_PROGRESS], Status.IN_QUEUE, started_at=started_at
            )
        with contextlib.suppress(Exception):
            await delivery.reject(requeue=True)
