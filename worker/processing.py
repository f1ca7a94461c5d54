"""Processing one message: claim the record, run the handler, store the result, record the
outcome, and only then settle the message (SPEC §6). A crash at any point leaves a message that
the broker delivers again."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from asyncgw import metrics
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
T = TypeVar("T")

#: First pause before trying an unreachable backend again; it doubles up to the maximum.
BACKEND_RETRY_DELAY_S = 0.5
BACKEND_RETRY_MAX_DELAY_S = 15.0
#: Payloads and results larger than this are decoded and encoded in a thread.
OFF_LOOP_BYTES = 1 << 20


class HandlerTimeout(Exception):
    """The handler ran past ``handler.timeout``."""


def error_of(exc: BaseException, timeout_s: float) -> dict[str, str]:
    """The record's ``error`` field for a failed attempt."""
    if isinstance(exc, HandlerTimeout):
        return {"type": "Timeout", "message": f"handler did not finish within {timeout_s:g}s"}
    return {"type": type(exc).__name__, "message": str(exc)}


class _Settled:
    """A delivery that remembers whether it was settled, so that whatever happens, processing
    never ends with a message nobody will settle (it would hold a slot forever)."""

    def __init__(self, delivery: Delivery) -> None:
        self.inner = delivery
        self.done = False

    async def ack(self) -> None:
        self.done = True
        await self.inner.ack()

    async def reject(self, *, requeue: bool) -> None:
        self.done = True
        await self.inner.reject(requeue=requeue)


@dataclass
class Processor:
    """Everything one API's messages are processed with."""

    api: ApiConfig
    handler: LoadedHandler
    queue: Queue
    store: StatusStore
    blobs: BlobStore
    executor: ThreadPoolExecutor
    #: Ids of running requests whose cancellation was asked for (their tasks get cancelled).
    canceled: set[str] = field(default_factory=set)
    #: Ids of requests whose handler (or result upload) is running: only these can be cancelled.
    cancellable: set[str] = field(default_factory=set)

    async def process(self, delivery: Delivery) -> None:
        """Process one message to the end. On cancellation (the worker is stopping) the request
        is handed back and ``CancelledError`` passes through."""
        settled = _Settled(delivery)
        envelope = delivery.envelope
        if envelope is None or envelope.api != self.api.name:
            why = delivery.problem or f"message belongs to api {envelope and envelope.api}"
            log.error("dead-lettering undecodable message: %s", why, extra={"api": self.api.name})
            await settled.reject(requeue=False)
            return
        try:
            started_at = await self._retrying(lambda: self._claim(envelope, settled))
            if started_at is not None:
                waited = (started_at - envelope.created_at).total_seconds()
                metrics.QUEUE_WAIT.labels(self.api.name).observe(max(0.0, waited))
                await self._attempt(envelope, started_at, settled)
        finally:
            if not settled.done:
                # Cancelled or crashed outside the handler: give the message back.
                with contextlib.suppress(Exception):
                    await delivery.reject(requeue=True)

    async def _retrying(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run ``step`` until no backend is unavailable, holding the message meanwhile (a requeue
        would count as a delivery, and brokers dead-letter messages delivered too often)."""
        delay = BACKEND_RETRY_DELAY_S
        while True:
            try:
                return await step()
            except BackendUnavailable as exc:
                log.warning("%s; trying again in %.1fs", exc, delay, extra={"api": self.api.name})
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKEND_RETRY_MAX_DELAY_S)

    async def _move(
        self, envelope: Envelope, started_at: datetime, target: Status, fields: dict[str, Any]
    ) -> bool:
        """Move this attempt's record from ``in_progress`` to ``target``, retrying while the
        store is unreachable; whether it moved. An update that went through although its answer
        was lost counts as moved (the record then shows this attempt in ``target``)."""
        first = True

        async def step() -> bool:
            nonlocal first
            retried, first = not first, False
            if await self.store.transition(
                envelope.id, [Status.IN_PROGRESS], target, started_at=started_at, fields=fields
            ):
                return True
            if not retried:
                return False
            record = await self.store.get(envelope.id)
            return (
                record is not None and record.status is target and (record.started_at == started_at)
            )

        return await self._retrying(step)

    async def _claim(self, envelope: Envelope, delivery: _Settled) -> datetime | None:
        """Move the record to ``in_progress``, counting the attempt, and return the attempt's
        start time, which later updates name so that only this attempt can finish the request.
        A redelivered message may take over a record left ``in_progress`` by a worker that died;
        a fresh one may not. Settle the message and return ``None`` when there is nothing to do."""
        started_at = now()
        expected = [Status.IN_QUEUE]
        if delivery.inner.redelivered:
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
            if record.status is Status.FAILED:
                await delivery.reject(requeue=False)  # failed requests' messages are dead letters
            else:
                await delivery.ack()
        elif record.status is Status.IN_PROGRESS:
            log.warning("dropping a second message for a request already running", extra=context)
            await delivery.ack()
        else:
            await delivery.reject(requeue=True)
        return None

    async def _attempt(self, envelope: Envelope, started_at: datetime, delivery: _Settled) -> None:
        context = {"api": self.api.name, "request_id": envelope.id}
        timeout_s = self.api.handler.timeout_s
        self.cancellable.add(envelope.id)
        in_progress = metrics.IN_PROGRESS.labels(self.api.name)
        in_progress.inc()
        began = time.perf_counter()
        try:
            output = await self._run(envelope, timeout_s)
            fields = await self._retrying(lambda: self._store_result(envelope, output, timeout_s))
        except asyncio.CancelledError:
            in_progress.dec()
            if envelope.id in self.canceled:
                self.canceled.discard(envelope.id)
                log.info("canceled while running", extra=context)
                self._measure(began, Status.CANCELED)
                await self._retrying(lambda: self._ended(envelope))
                await delivery.ack()
                return
            await self._hand_back(envelope, started_at, delivery)
            raise
        except Exception as exc:
            in_progress.dec()
            self.cancellable.discard(envelope.id)
            error = error_of(exc, timeout_s)
            self._measure(began, Status.FAILED, finished=False)
            await self._failed(envelope, started_at, delivery, error)
            return
        finally:
            self.cancellable.discard(envelope.id)
        in_progress.dec()
        fields.update(completed_at=now(), error=None)
        # Each step is retried on its own: a move that went through is never tried twice.
        if await self._move(envelope, started_at, Status.COMPLETED, fields):
            log.debug("completed", extra=context)
            self._measure(began, Status.COMPLETED)
            await self._retrying(lambda: self._ended(envelope))
        else:
            log.info("record changed while running; result dropped", extra=context)
        await delivery.ack()

    async def _failed(
        self, envelope: Envelope, started_at: datetime, delivery: _Settled, error: dict[str, str]
    ) -> None:
        """Retry the request later or fail it for good."""
        context: dict[str, Any] = {
            "api": self.api.name,
            "request_id": envelope.id,
            "error_type": error["type"],
        }
        record = await self._retrying(lambda: self.store.get(envelope.id))
        attempts = record.attempts if record is not None else 1
        outcome = decide(error["type"], attempts, self.api.handler.retries)
        if outcome is Outcome.RETRY:
            delay_s = retry_delay_s(attempts, self.api.handler.retry_backoff_s)
            if await self._move(envelope, started_at, Status.IN_QUEUE, {"error": error}):
                await self._retrying(lambda: self.queue.publish(envelope, delay_s=delay_s))
                metrics.RETRIES.labels(self.api.name).inc()
                log.info(
                    "attempt %d failed; retrying in %.1fs",
                    attempts,
                    delay_s,
                    extra={**context, "attempt": attempts},
                )
            await delivery.ack()
            return
        log.warning("request failed after %d attempts", attempts, extra=context)
        fields = {"completed_at": now(), "error": error}
        if await self._move(envelope, started_at, Status.FAILED, fields):
            metrics.FINISHED.labels(self.api.name, Status.FAILED.value).inc()
            await self._retrying(lambda: self._ended(envelope))
        else:
            log.info("record changed while running; failure dropped", extra=context)
        await delivery.reject(requeue=False)

    def _measure(self, began: float, status: Status, *, finished: bool = True) -> None:
        """Time the attempt by how it ended; count the request once it ended for good."""
        elapsed = time.perf_counter() - began
        metrics.HANDLER_DURATION.labels(self.api.name, status.value).observe(elapsed)
        if finished:
            metrics.FINISHED.labels(self.api.name, status.value).inc()

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
            key = envelope.payload_key or ""
            body = await self._retrying(lambda: self.blobs.read(key))
        if len(body) > OFF_LOOP_BYTES:
            payload = await asyncio.to_thread(decode_payload, body, envelope.content_type)
        else:
            payload = decode_payload(body, envelope.content_type)
        try:
            async with asyncio.timeout(timeout_s):
                value = await self.handler.call(payload, envelope.id, self.executor)
                if inspect.isawaitable(value):  # an async handler behind a plain decorator
                    value = await value
        except TimeoutError:
            if not self.handler.is_async:
                self._replace_executor()
            raise HandlerTimeout() from None
        if isinstance(value, dict | list) and len(body) > OFF_LOOP_BYTES:
            return await asyncio.to_thread(classify, value, self.executor)
        return classify(value, self.executor)

    def _replace_executor(self) -> None:
        """A sync handler that timed out still occupies its thread, which cannot be stopped:
        give later requests fresh threads instead of queueing them behind it."""
        log.warning(
            "a sync handler ran past its timeout and keeps its thread; using new threads",
            extra={"api": self.api.name},
        )
        old = self.executor
        self.executor = ThreadPoolExecutor(
            old._max_workers, thread_name_prefix=f"handler-{self.api.name}"
        )
        old.shutdown(wait=False, cancel_futures=True)

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
        self, envelope: Envelope, started_at: datetime, delivery: _Settled
    ) -> None:
        """Return an unfinished request to the queue (the worker is stopping)."""
        with contextlib.suppress(BackendUnavailable):
            await self.store.transition(
                envelope.id, [Status.IN_PROGRESS], Status.IN_QUEUE, started_at=started_at
            )
        with contextlib.suppress(Exception):
            await delivery.reject(requeue=True)
