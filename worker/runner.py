"""The worker for one API: takes messages up to its slot count, processes each in its own task,
cancels a running request when asked, and stops in order (SPEC §6)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from asyncgw import metrics
from asyncgw.backends import BlobStore, Consumer, Delivery, Queue, StatusStore
from asyncgw.config import ApiConfig
from worker.handler import LoadedHandler
from worker.processing import Processor
from worker.webhooks import WebhookSender

log = logging.getLogger(__name__)


class Worker:
    """Runs up to ``slots`` requests of one API at once until ``stop`` is called."""

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
        webhook_secret: str | None = None,
        webhook_allow_private: bool = False,
    ) -> None:
        self.api = api
        self.queue = queue
        self.slots = slots or api.handler.max_concurrency
        self.grace_period_s = grace_period_s
        executor = ThreadPoolExecutor(self.slots, thread_name_prefix=f"handler-{api.name}")
        self.processor = Processor(api, handler, queue, store, blobs, executor)
        self.webhooks = WebhookSender(
            api,
            queue=queue,
            store=store,
            secret=webhook_secret,
            allow_private=webhook_allow_private,
            on_outcome=lambda api, outcome: metrics.WEBHOOK_DELIVERIES.labels(api, outcome).inc(),
        )
        self._consumer: Consumer | None = None
        self._signals: Consumer | None = None
        #: Running requests by id.
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._anonymous: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Declare the API's queue, listen for cancellations, start taking messages."""
        await self.queue.declare(self.api.name)
        self._signals = await self.queue.on_signal(self._on_signal)
        await self.webhooks.start()
        self._consumer = await self.queue.consume(self.api.name, self.slots, self._on_delivery)
        log.info("worker consuming with %d slots", self.slots, extra={"api": self.api.name})

    def _on_signal(self, kind: str, api: str, request_id: str) -> None:
        if kind != "cancel" or api != self.api.name:
            return
        task = self._tasks.get(request_id)
        # Only a running handler is interrupted; elsewhere the record's status already decides.
        if task is not None and not task.done() and request_id in self.processor.cancellable:
            log.info("cancelling", extra={"api": api, "request_id": request_id})
            self.processor.canceled.add(request_id)
            task.cancel()

    async def _on_delivery(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self.processor.process(delivery))
        request_id = delivery.envelope.id if delivery.envelope is not None else None
        if request_id is None or request_id in self._tasks:
            self._anonymous.add(task)
        else:
            self._tasks[request_id] = task
        task.add_done_callback(lambda t: self._finished(request_id, t))

    def _finished(self, request_id: str | None, task: asyncio.Task[None]) -> None:
        if self._tasks.get(request_id or "") is task:
            del self._tasks[request_id or ""]
        self._anonymous.discard(task)
        if request_id is not None:
            self.processor.canceled.discard(request_id)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("processing crashed", exc_info=exc, extra={"api": self.api.name})

    async def stop(self) -> None:
        """Stop intake, let running requests finish within the grace period, hand back the
        rest, and release the handler threads."""
        if self._consumer is not None:
            await self._consumer.cancel()
            log.info("stopped taking messages", extra={"api": self.api.name})
        tasks = {*self._tasks.values(), *self._anonymous}
        if tasks:
            log.info(
                "waiting up to %gs for %d running requests",
                self.grace_period_s,
                len(tasks),
                extra={"api": self.api.name},
            )
            _, pending = await asyncio.wait(tasks, timeout=self.grace_period_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                log.info(
                    "requeued %d unfinished requests", len(pending), extra={"api": self.api.name}
                )
        await self.webhooks.stop(grace_s=min(self.grace_period_s, 5.0))
        for subscription in (self._consumer, self._signals):
            if subscription is not None:
                await subscription.close()
        self.processor.executor.shutdown(wait=False, cancel_futures=True)
