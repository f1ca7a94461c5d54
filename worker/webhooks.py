"""Webhook delivery: a durable job of its own, consumed beside the API's requests from
``asyncgw.<api>.webhooks``, so that a slow or dead receiver never holds a request slot and a
worker crash after a request ended still delivers its webhook (SPEC §8)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from asyncgw import webhooks
from asyncgw.backends import Consumer, Delivery, Queue, StatusStore
from asyncgw.config import ApiConfig
from asyncgw.errors import BackendUnavailable
from asyncgw.schema import TERMINAL, Record, now, record_view, rfc3339, webhook_channel, webhook_job

log = logging.getLogger(__name__)

#: Deliveries one worker makes at once, per API.
CONCURRENCY = 16


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp does, then refuses non-public addresses: the URL was checked when it
    was submitted, but the DNS answer can change by the time it is called."""

    def __init__(self) -> None:
        self._inner = aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if not webhooks.address_allowed(result["host"]):
                raise OSError(f"{host} resolves to {result['host']}, a private address")
        return results

    async def close(self) -> None:
        await self._inner.close()


def load_secret(api: ApiConfig, environ: dict[str, str]) -> str | None:
    """The API's signing secret from ``webhook.secret_env``; ``ValueError`` when it is named but
    missing or malformed."""
    name = api.webhook.secret_env
    if name is None:
        return None
    secret = environ.get(name)
    if not secret:
        raise ValueError(f"webhook.secret_env names {name}, which is not set")
    webhooks.signature(secret, "check", 0, b"")  # raises on a malformed secret
    return secret


class WebhookSender:
    """Delivers one API's webhooks until stopped."""

    def __init__(
        self,
        api: ApiConfig,
        *,
        queue: Queue,
        store: StatusStore,
        secret: str | None,
        allow_private: bool,
        on_outcome: Any = None,
    ) -> None:
        self.api = api
        self.queue = queue
        self.store = store
        self.secret = secret
        self.allow_private = allow_private
        self.on_outcome = on_outcome
        self.channel = webhook_channel(api.name)
        self._http: aiohttp.ClientSession | None = None
        self._consumer: Consumer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        resolver = None if self.allow_private else GuardedResolver()
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=resolver, limit=CONCURRENCY),
            timeout=aiohttp.ClientTimeout(total=self.api.webhook.timeout_s),
            headers={"User-Agent": "asyncgw-webhooks"},
        )
        await self.queue.declare(self.channel)
        self._consumer = await self.queue.consume(self.channel, CONCURRENCY, self._on_delivery)

    async def _on_delivery(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self._process(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self, grace_s: float) -> None:
        """Stop taking jobs; deliveries still running after ``grace_s`` are left to the broker."""
        if self._consumer is not None:
            await self._consumer.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.close()
        if self._http is not None:
            await self._http.close()

    async def _process(self, delivery: Delivery) -> None:
        envelope = delivery.envelope
        if envelope is None or envelope.api != self.channel:
            log.error("dead-lettering undecodable webhook job", extra={"api": self.api.name})
            await delivery.reject(requeue=False)
            return
        try:
            record = await self.store.get(envelope.id)
            if record is not None:
                await self._attempt(record)
        except BackendUnavailable as exc:
            log.warning(
                "backend unavailable; webhook job handed back: %s",
                exc,
                extra={"api": self.api.name, "request_id": envelope.id},
            )
            await asyncio.sleep(1.0)
            await delivery.reject(requeue=True)
            return
        await delivery.ack()

    async def _attempt(self, record: Record) -> None:
        """One delivery attempt, recorded in the record's ``webhook`` field, and the next one
        scheduled when the answer says to retry."""
        if record.webhook_url is None or record.status not in TERMINAL:
            return
        state: dict[str, Any] = dict(record.webhook or {})
        if state.get("outcome", "pending") != "pending":
            return  # delivered, given up, or a duplicate job
        context = {"api": self.api.name, "request_id": record.id}
        url = str(state.get("url") or record.webhook_url)
        started = now()
        first = _parse(state.get("first_attempt_at")) or started
        state.update(
            url=url,
            delivery=int(state.get("delivery", 1)),
            attempts=int(state.get("attempts", 0)) + 1,
            first_attempt_at=rfc3339(first),
            last_attempt_at=rfc3339(started),
        )
        try:
            status, problem = await self._send(record, state)
            outcome = webhooks.response_outcome(status)
        except webhooks.UnsafeWebhookUrl as exc:
            status, problem, outcome = None, str(exc), "refused"
        state["last_status"] = status
        state["error"] = problem
        delay_s = 0.0
        if outcome == "retry":
            webhook = self.api.webhook
            delay_s = webhooks.retry_delay_s(
                state["attempts"], webhook.retry_backoff_s, webhook.max_retry_backoff_s
            )
            elapsed_s = (started - first).total_seconds()
            if elapsed_s + delay_s > webhook.retry_for_s:
                outcome = "failed"
                state["error"] = f"gave up after {state['attempts']} attempts: {problem or status}"
        state["outcome"] = "pending" if outcome == "retry" else outcome
        if outcome == "delivered":
            state["delivered_at"] = rfc3339(now())
        await self.store.transition(
            record.id, [record.status], record.status, fields={"webhook": state}
        )
        if outcome == "retry":
            await self.queue.publish(webhook_job(record.api, record.id), delay_s=delay_s)
        log.info(
            "webhook attempt %d: %s",
            state["attempts"],
            outcome,
            extra={**context, "status": status},
        )
        if self.on_outcome is not None:
            self.on_outcome(self.api.name, outcome)

    async def _send(self, record: Record, state: dict[str, Any]) -> tuple[int | None, str | None]:
        """POST the record; the answer's status, or ``None`` and what went wrong.
        ``UnsafeWebhookUrl`` when the URL may not be called at all."""
        url = str(state["url"])
        try:
            await webhooks.check_url(url, allow_private=self.allow_private)
        except webhooks.UnresolvedWebhookHost as exc:
            return None, str(exc)
        view = record_view(record, self.api.endpoint)
        view.pop("webhook", None)
        body = json.dumps(view).encode()
        message_id = f"msg_{record.id}_{state['delivery']}"
        headers = {"Content-Type": "application/json", "webhook-id": message_id}
        if self.secret is not None:
            headers.update(webhooks.sign(self.secret, message_id, body))
        assert self._http is not None
        try:
            async with self._http.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as answer:
                with contextlib.suppress(aiohttp.ClientError):
                    await answer.read()
                return answer.status, None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
