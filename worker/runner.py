"""The worker loop for one API: take messages, move records through their statuses, run the
handler, store the result, then acknowledge — in that order, so a crash at any point leaves a
message the broker will deliver again (SPEC §6)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from asyncgw.backends import BlobStore, Consumer, Delivery, Queue, StatusStore
from asyncgw.config import ApiConfig
from asyncgw.errors import BackendUnavailable
from asyncgw.schema import (
    INLINE_RESULT_LIMIT,
    TERMINAL,
    Envelope,
    Status,
    now,
    result_key,
    sources,
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


class Worker:
    """Runs ``slots`` requests of one API at once until ``stop`` is called."""

    def __init__(
        self,
        api: ApiConfig,
        handler: LoadedHandler,
        *,
        queue: Queue,
        store: StatusStore,
        blobs: BlobStore,
        slots: int | None = None,
        grace_period_s: float = 30.0,
    ) -> None:
        self.api = api
        self.handler = handler
        self.queue = queue
        self.store = store
        self.blobs = blobs
        self.slots = slots or api.handler.max_concurrency
        self.grace_period_s = grace_period_s
        self.executor = ThreadPoolExecutor(self.slots, thread_name_prefix=f"handler-{api.name}")
        self._consumer: Consumer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def running(self) -> int:
        """Requests being processed now."""
        return len(self._tasks)

    async def start(self) -> None:
        """Declare the API's queue and start taking messages."""
        await self.queue.declare(self.api.name)
        self._consumer = await self.queue.consume(self.api.name, self.slots, self._on_delivery)
        log.info("worker consuming with %d slots", self.slots, extra={"api": self.api.name})

    async def _on_delivery(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self._process(delivery))
        self._tasks.add(task)
        self.idle.clear()
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self.idle.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("processing crashed", exc_info=exc, extra={"api": self.api.name})

    async def stop(self) -> None:
        """Stop intake, let running requests finish within the grace period, hand back the
        rest, and release the handler threads."""
        self._stopping = True
        if self._consumer is not None:
            await self._consumer.cancel()
            log.info("stopped taking messages", extra={"api": self.api.name})
        if self._tasks:
            log.info(
                "waiting up to %gs for %d running requests",
                self.grace_period_s,
                len(self._tasks),
                extra={"api": self.api.name},
            )
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.grace_period_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                log.info(
                    "requeued %d unfinished requests", len(pending), extra={"api": self.api.name}
                )
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _process(self, delivery: Delivery) -> None:
        envelope = delivery.envelope
        if envelope is None or envelope.api != self.api.name:
            why = delivery.problem or f"message belongs to api {envelope and envelope.api}"
            log.error("dead-lettering undecodable message: %s", why, extra={"api": self.api.name})
            await delivery.reject(requeue=False)
            return
        context = {"api": self.api.name, "request_id": envelope.id}
        try:
            started_at = await self._start(envelope, delivery)
            if started_at is None:
                return
            await self._attempt(envelope, started_at, delivery)
        except BackendUnavailable as exc:
            log.warning("backend unavailable, handing the message back: %s", exc, extra=context)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(BACKEND_RETRY_DELAY_S)
            with contextlib.suppress(Exception):
                await delivery.reject(requeue=True)

    async def _start(self, envelope: Envelope, delivery: Delivery) -> datetime | None:
        """Move the record to ``in_progress``, counting the attempt, and return the attempt's
        start time, which later updates name so that only the current attempt can finish the
        request. Settle the message and return ``None`` when there is nothing to run."""
        started_at = now()
        if await self.store.transition(
            envelope.id,
            sources(Status.IN_PROGRESS),
            Status.IN_PROGRESS,
            increment_attempts=True,
            fields={"started_at": started_at},
        ):
            return started_at
        context = {"api": self.api.name, "request_id": envelope.id}
        existing = await self.store.get(envelope.id)
        if existing is None:
            log.error("dead-lettering message for an unknown request id", extra=context)
            await delivery.reject(requeue=False)
        elif existing.status in TERMINAL:
            log.info("skipping message of a %s request", existing.status.value, extra=context)
            await delivery.ack()
        return None

    async def _attempt(self, envelope: Envelope, started_at: datetime, delivery: Delivery) -> None:
        context = {"api": self.api.name, "request_id": envelope.id}
        timeout_s = self.api.handler.timeout_s
        try:
            try:
                output = await self._run(envelope, timeout_s)
                fields = await self._store_result(envelope, output)
            except asyncio.CancelledError:
                if self._stopping:
                    await self._hand_back(envelope, started_at, delivery)
                raise
        except (BackendUnavailable, asyncio.CancelledError):
            raise
        except Exception as exc:
            error = error_of(exc, timeout_s)
            log.warning(
                "request failed: %s",
                error["type"],
                extra={**context, **{"error_type": error["type"]}},
            )
            if not await self.store.transition(
                envelope.id,
                [Status.IN_PROGRESS],
                Status.FAILED,
                started_at=started_at,
                fields={"completed_at": now(), "error": error},
            ):
                log.info("record changed while running; result dropped", extra=context)
            await delivery.reject(requeue=False)
            return
        if not await self.store.transition(
            envelope.id,
            [Status.IN_PROGRESS],
            Status.COMPLETED,
            started_at=started_at,
            fields={"completed_at": now(), **fields},
        ):
            log.info("record changed while running; result dropped", extra=context)
        else:
            log.debug("completed", extra=context)
        await delivery.ack()

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

    async def _store_result(self, envelope: Envelope, output: Output) -> dict[str, Any]:
        """Store the result; return the record fields that describe it."""
        key = result_key(self.api.name, envelope.id)
        if output.kind == "json" and len(output.body) <= INLINE_RESULT_LIMIT:
            return {
                "result_json": output.body.decode(),
                "result_content_type": output.content_type,
                "result_size": len(output.body),
            }
        if output.chunks is not None:
            async with asyncio.timeout(self.api.handler.timeout_s):
                size = await self.blobs.put_stream(key, output.chunks, output.content_type)
        else:
            await self.blobs.put(key, output.body, output.content_type)
            size = len(output.body)
        return {"result_content_type": output.content_type, "result_size": size}

    async def _hand_back(
        self, envelope: Envelope, started_at: datetime, delivery: Delivery
    ) -> None:
        """Return an unfinished request to the queue at shutdown."""
        with contextlib.suppress(BackendUnavailable):
            await self.store.transition(
                envelope.id, [Status.IN_PROGRESS], Status.IN_QUEUE, started_at=started_at
            )
        with contextlib.suppress(Exception):
            await delivery.reject(requeue=True)
