"""The request lifecycle on RabbitMQ, SecantusDB and moto, through the real commands."""

from __future__ import annotations

import hashlib
import os

import aiohttp

from tests.e2e.stack import EXAMPLES, Stack, submit, wait_terminal


async def test_json_text_and_binary_payloads_complete(
    stack: Stack, http: aiohttp.ClientSession, api_name: str
) -> None:
    stack.add_api(api_name, EXAMPLES / "iris" / "handler.py", handler={"config": {"threshold": 3}})
    stack.add_api(f"{api_name}-text", EXAMPLES / "shout" / "handler.py")
    stack.add_api(f"{api_name}-bin", EXAMPLES / "checksum" / "handler.py")
    await stack.gateway()
    for name in (api_name, f"{api_name}-text", f"{api_name}-bin"):
        await stack.worker(name)
    base = stack.base_url

    first = await submit(http, f"{base}/{api_name}", json={"petal_length": 5, "petal_width": 2})
    text = await submit(
        http,
        f"{base}/{api_name}-text",
        data="héllo".encode(),
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
    blob = os.urandom(5000)
    binary = await submit(http, f"{base}/{api_name}-bin", data=blob)

    record = await wait_terminal(http, f"{base}/{api_name}/{first['id']}")
    assert record["status"] == "completed"
    assert record["result"] == {"label": "virginica", "request_id": first["id"]}
    assert record["attempts"] == 1
    assert record["timestamp"] == record["completed_at"]
    assert record["created_at"] <= record["started_at"] <= record["completed_at"]
    async with http.get(f"{base}{record['result_url']}") as answer:
        assert answer.status == 200
        assert answer.content_type == "application/json"
        assert await answer.json() == record["result"]

    record = await wait_terminal(http, f"{base}/{api_name}-text/{text['id']}")
    assert record["result"] == {"text": "HÉLLO", "length": 5}

    record = await wait_terminal(http, f"{base}/{api_name}-bin/{binary['id']}")
    assert record["status"] == "completed"
    assert "result" not in record
    async with http.get(f"{base}/{api_name}-bin/{binary['id']}/result") as answer:
        assert answer.status == 200
        assert answer.content_type == "application/octet-stream"
        assert await answer.read() == hashlib.sha256(blob).digest()

    async with http.get(f"{base}/{api_name}") as answer:
        summary = await answer.json()
    assert summary["counts"]["completed"] == 1
    assert summary["queue"] == {"ready": 0, "dead": 0}


async def test_failing_handler_ends_failed_and_dead_letters(
    stack: Stack, http: aiohttp.ClientSession, api_name: str
) -> None:
    stack.add_api(api_name, "failing", handler={"config": {"message": "bad petal"}})
    await stack.gateway()
    await stack.worker(api_name)
    accepted = await submit(http, f"{stack.base_url}/{api_name}", json={})
    record = await wait_terminal(http, f"{stack.base_url}/{api_name}/{accepted['id']}")
    assert record["status"] == "failed"
    assert record["error"] == {"type": "ValueError", "message": "bad petal"}
    assert "result_url" not in record
    async with http.get(f"{stack.base_url}/{api_name}/{accepted['id']}/result") as answer:
        assert answer.status == 409
        assert "failed" in (await answer.json())["error"]
    async with http.get(f"{stack.base_url}/{api_name}") as answer:
        assert (await answer.json())["queue"]["dead"] == 1


async def test_large_payload_goes_through_the_blob_store(
    stack: Stack, http: aiohttp.ClientSession, api_name: str
) -> None:
    stack.add_api(api_name, EXAMPLES / "checksum" / "handler.py", max_payload_size="64Mi")
    await stack.gateway()
    await stack.worker(api_name)
    payload = os.urandom(20 * 2**20)

    async def body():  # a chunked upload, as a streaming client sends it
        for start in range(0, len(payload), 2**20):
            yield payload[start : start + 2**20]

    accepted = await submit(http, f"{stack.base_url}/{api_name}", data=body())
    record = await wait_terminal(http, f"{stack.base_url}/{api_name}/{accepted['id']}", 120)
    assert record["status"] == "completed", record
    async with http.get(f"{stack.base_url}/{api_name}/{accepted['id']}/result") as answer:
        assert await answer.read() == hashlib.sha256(payload).digest()


async def test_payload_over_the_limit_is_refused_and_nothing_is_queued(
    stack: Stack, http: aiohttp.ClientSession, api_name: str
) -> None:
    stack.add_api(api_name, "echo", max_payload_size="1Mi")
    await stack.gateway()
    url = f"{stack.base_url}/{api_name}"
    async with http.post(url, data=b"x" * (2**20 + 1)) as answer:
        assert answer.status == 413
        assert "limit" in (await answer.json())["error"]

    async def chunked():
        for _ in range(3):
            yield b"y" * 2**19

    async with http.post(url, data=chunked()) as answer:
        assert answer.status == 413
    async with http.get(url) as answer:
        summary = await answer.json()
    assert summary["queue"]["ready"] == 0
    assert sum(summary["counts"].values()) == 0


async def test_streamed_result_arrives_whole(
    stack: Stack, http: aiohttp.ClientSession, api_name: str
) -> None:
    stack.add_api(api_name, EXAMPLES / "count" / "handler.py")
    await stack.gateway()
    await stack.worker(api_name)
    accepted = await submit(http, f"{stack.base_url}/{api_name}", json={"n": 100_000})
    record = await wait_terminal(http, f"{stack.base_url}/{api_name}/{accepted['id']}")
    assert record["status"] == "completed", record
    expected = "".join(f"{i}\n" for i in range(1, 100_001)).encode()
    async with http.get(f"{stack.base_url}/{api_name}/{accepted['id']}/result") as answer:
        assert await answer.read() == expected
    headers = {"Range": "bytes=10-19"}
    async with http.get(
        f"{stack.base_url}/{api_name}/{accepted['id']}/result", headers=headers
    ) as answer:
        assert answer.status == 206
        assert answer.headers["Content-Range"] == f"bytes 10-19/{len(expected)}"
        assert await answer.read() == expected[10:20]


async def test_unknown_api_and_id_are_404(
    stack: Stack, http: aiohttp.ClientSession, api_name: str
) -> None:
    stack.add_api(api_name, "echo")
    await stack.gateway()
    async with http.post(f"{stack.base_url}/nope", data=b"x") as answer:
        assert answer.status == 404
        assert await answer.json() == {"error": "api nope not found"}
    async with http.get(f"{stack.base_url}/{api_name}/abc") as answer:
        assert answer.status == 404
        assert await answer.json() == {"error": "id abc not found"}
    async with http.get(f"{stack.base_url}/healthz") as answer:
        assert answer.status == 200


async def test_worker_killed_mid_request_loses_nothing(
    stack: Stack, http: aiohttp.ClientSession, api_name: str, tmp_path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    stack.add_api(api_name, "slow", handler={"config": {"seconds": 2, "marks": str(marks)}})
    await stack.gateway()
    first = await stack.worker(api_name)
    accepted = await submit(http, f"{stack.base_url}/{api_name}", json={})
    request_id = accepted["id"]
    started = marks / f"{request_id}.start.{first.process.pid}"
    await _wait_for_file(started)
    first.kill()
    second = await stack.worker(api_name)
    record = await wait_terminal(http, f"{stack.base_url}/{api_name}/{request_id}")
    assert record["status"] == "completed"
    assert record["attempts"] == 2
    ends = sorted(p.name for p in marks.glob(f"{request_id}.end.*"))
    assert ends == [f"{request_id}.end.{second.process.pid}"]
    assert second.stop() == 0


async def test_sigterm_requeues_unfinished_work(
    stack: Stack, http: aiohttp.ClientSession, api_name: str, tmp_path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    stack.add_api(api_name, "slow", handler={"config": {"seconds": 30, "marks": str(marks)}})
    await stack.gateway()
    worker = await stack.worker(api_name, env={"ASYNCGW_GRACE_PERIOD": "0.5s"})
    accepted = await submit(http, f"{stack.base_url}/{api_name}", json={})
    await _wait_for_file(marks / f"{accepted['id']}.start.{worker.process.pid}")
    assert worker.stop() == 0
    assert "requeued 1 unfinished requests" in worker.output()
    async with http.get(f"{stack.base_url}/{api_name}/{accepted['id']}") as answer:
        record = await answer.json()
    assert record["status"] == "in_queue"
    async with http.get(f"{stack.base_url}/{api_name}") as answer:
        assert (await answer.json())["queue"]["ready"] == 1


async def _wait_for_file(path, timeout_s: float = 30) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.02)
