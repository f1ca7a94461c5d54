"""Webhooks end to end, on both backend sets, with a real aiohttp receiver in the test process:
signed calls that the standardwebhooks package verifies, retries, 410, a receiver that is down
for a while, a worker killed before delivery, the private-address guard and redelivery."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests import servers
from tests.e2e.stack import System, submit, wait_terminal

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


@dataclass
class Receiver:
    """Answers the statuses in ``script`` in turn, then ``then``; keeps every call."""

    script: list[int] = field(default_factory=list)
    then: int = 200
    calls: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    port: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.script.pop(0) if self.script else self.then
        self.calls.append((dict(request.headers), body, status))
        self.arrived.set()
        return web.Response(status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        self.port = self.port or servers.free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def delivered(self) -> list[tuple[dict[str, str], bytes, int]]:
        return [c for c in self.calls if 200 <= c[2] < 300]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


def add_api(system: System, name: str, code: str = "echo", **webhook: Any) -> None:
    system.stack.env["ASYNCGW_WEBHOOK_ALLOW_PRIVATE"] = "1"
    system.stack.env["HOOK_SECRET"] = SECRET
    system.stack.add_api(
        name,
        code,
        handler={"config": {"marks": str(system.stack.workdir)}},
        webhook={"secret_env": "HOOK_SECRET", "retry_backoff": "0.2s", **webhook},
    )


async def wait_webhook(
    http: aiohttp.ClientSession, url: str, outcome: str, timeout_s: float = 60
) -> dict[str, Any]:
    """Poll the record until its webhook reached ``outcome``."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with http.get(url) as answer:
            record = await answer.json()
        if (record.get("webhook") or {}).get("outcome") == outcome:
            return dict(record)
        assert time.monotonic() < deadline, f"webhook never {outcome}: {record.get('webhook')}"
        await asyncio.sleep(0.05)


async def test_signed_record_is_delivered(
    system: System, http: aiohttp.ClientSession, api_name: str, receiver: Receiver
) -> None:
    add_api(system, api_name)
    await system.start()
    accepted = await submit(
        http, f"{system.url}/{api_name}", json={"a": 1}, headers={"X-Webhook-Url": receiver.url}
    )
    url = f"{system.url}/{api_name}/{accepted['id']}"
    record = await wait_webhook(http, url, "delivered")
    assert record["webhook"]["attempts"] == 1
    assert record["webhook"]["last_status"] == 200
    assert record["webhook"]["delivered_at"]
    ((headers, body, _),) = receiver.calls
    delivered = Webhook(SECRET).verify(body, headers)
    record.pop("webhook")
    assert delivered == record
    assert delivered["result"] == {"echo": {"a": 1}}
    other = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"completed", b"canceled"), headers)


async def test_failed_requests_call_back_too_and_redelivery_is_a_new_delivery(
    system: System, http: aiohttp.ClientSession, api_name: str, receiver: Receiver
) -> None:
    add_api(system, api_name, "failing", url=receiver.url)  # the API's default webhook
    await system.start()
    accepted = await submit(http, f"{system.url}/{api_name}", json={})
    url = f"{system.url}/{api_name}/{accepted['id']}"
    await wait_webhook(http, url, "delivered")
    async with http.post(f"{url}/webhook") as answer:
        assert answer.status == 202
    record = await wait_webhook(http, url, "delivered")
    assert record["webhook"]["delivery"] == 2
    first, second = receiver.calls
    assert Webhook(SECRET).verify(first[1], first[0])["status"] == "failed"
    assert first[0]["webhook-id"] != second[0]["webhook-id"]
    async with http.post(f"{system.url}/{api_name}/nope/webhook") as answer:
        assert answer.status == 404


async def test_retries_on_500_until_delivered(
    system: System, http: aiohttp.ClientSession, api_name: str, receiver: Receiver
) -> None:
    receiver.script = [500, 503]
    add_api(system, api_name, url=receiver.url)
    await system.start()
    accepted = await submit(http, f"{system.url}/{api_name}", json={})
    record = await wait_webhook(http, f"{system.url}/{api_name}/{accepted['id']}", "delivered")
    assert record["webhook"]["attempts"] == 3
    assert [c[2] for c in receiver.calls] == [500, 503, 200]
    assert len({c[0]["webhook-id"] for c in receiver.calls}) == 1  # one delivery, retried


async def test_410_stops_after_one_attempt(
    system: System, http: aiohttp.ClientSession, api_name: str, receiver: Receiver
) -> None:
    receiver.then = 410
    add_api(system, api_name, url=receiver.url)
    await system.start()
    accepted = await submit(http, f"{system.url}/{api_name}", json={})
    record = await wait_webhook(http, f"{system.url}/{api_name}/{accepted['id']}", "gone")
    assert record["webhook"]["attempts"] == 1
    assert record["webhook"]["last_status"] == 410
    assert len(receiver.calls) == 1


async def test_receiver_down_for_a_while(
    system: System, http: aiohttp.ClientSession, api_name: str, receiver: Receiver
) -> None:
    await receiver.stop()
    add_api(system, api_name, url=receiver.url)
    await system.start()
    accepted = await submit(http, f"{system.url}/{api_name}", json={})
    url = f"{system.url}/{api_name}/{accepted['id']}"
    deadline = time.monotonic() + 30
    while True:  # at least two attempts failed on the closed port
        async with http.get(url) as answer:
            webhook = (await answer.json()).get("webhook") or {}
        if webhook.get("attempts", 0) >= 2:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert webhook["outcome"] == "pending" and webhook["last_status"] is None
    await receiver.start()
    record = await wait_webhook(http, url, "delivered")
    assert record["webhook"]["attempts"] >= 3
    assert len(receiver.delivered()) == 1


async def test_worker_killed_before_delivery_still_delivers_once(
    system: System, http: aiohttp.ClientSession, api_name: str, receiver: Receiver
) -> None:
    receiver.then = 503  # not delivered while the worker runs
    add_api(system, api_name, url=receiver.url)
    await system.start()
    accepted = await submit(http, f"{system.url}/{api_name}", json={})
    url = f"{system.url}/{api_name}/{accepted['id']}"
    await asyncio.wait_for(receiver.arrived.wait(), 30)
    assert (await wait_terminal(http, url))["status"] == "completed"
    if system.kind == "embedded":
        assert system.up_proc is not None
        system.up_proc.kill()
    else:
        system.workers.pop(api_name).kill()
    receiver.then = 200
    await system.resume()
    record = await wait_webhook(http, url, "delivered")
    assert len(receiver.delivered()) == 1
    assert record["status"] == "completed"


async def test_private_url_refused_at_submit(
    system: System, http: aiohttp.ClientSession, api_name: str
) -> None:
    system.stack.add_api(api_name, "echo")
    await system.start()
    for target in (
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "ftp://example.com/x",
    ):
        async with http.post(
            f"{system.url}/{api_name}", json={}, headers={"X-Webhook-Url": target}
        ) as answer:
            assert answer.status == 400, target
            assert "webhook" in (await answer.json())["error"]
    async with http.get(f"{system.url}/{api_name}") as answer:
        assert sum((await answer.json())["counts"].values()) == 0
