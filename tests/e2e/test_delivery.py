"""Delivery guarantees on both backend sets: retries, dead letters and redrive, timeouts,
cancellation, idempotency, backpressure and ``Prefer: wait``."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp

from tests.e2e.stack import System, submit, wait_terminal


def marks_dir(system: System) -> Path:
    marks = system.stack.workdir / "marks"
    marks.mkdir(exist_ok=True)
    return marks


async def wait_for_file(path: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.02)


async def test_retries_until_success(
    system: System, http: aiohttp.ClientSession, api_name: str
) -> None:
    marks = marks_dir(system)
    system.stack.add_api(
        api_name,
        "flaky",
        handler={
            "config": {"marks": str(marks), "fail_times": 2},
            "retries": 2,
            "retry_backoff": "0.2s",
        },
    )
    await system.start()
    accepted = await submit(http, f"{system.url}/{api_name}", json={})
    record = await wait_terminal(http, f"{system.url}/{api_name}/{accepted['id']}")
    assert record["status"] == "completed", record
    assert record["attempts"] == 3
    assert record["result"] == {"tries": 3}
    assert "error" not in record
    async with http.get(f"{system.url}/{api_name}") as answer:
        assert (await answer.json())["queue"]["dead"] == 0


async def test_retries_exhausted_dead_letter_then_redrive(
    system: System, http: aiohttp.ClientSession, api_name: str
) -> None:
    marks = marks_dir(system)
    fixed = system.stack.workdir / "fixed"
    system.stack.add_api(
        api_name,
        "flaky",
        handler={
            "config": {"marks": str(marks), "fixed": str(fixed)},
            "retries": 1,
            "retry_backoff": "0.1s",
        },
    )
    await system.start()
    accepted = await submit(http, f"{system.url}/{api_name}", json={})
    url = f"{system.url}/{api_name}/{accepted['id']}"
    record = await wait_terminal(http, url)
    assert record["status"] == "failed"
    assert record["attempts"] == 2
    assert record["error"] == {"type": "RuntimeError", "message": "not fixed yet"}

    listed = system.stack.dlq("list", "--api", api_name)
    assert listed.returncode == 0, listed.stderr
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(e["id"], e["status"]) for e in entries] == [(accepted["id"], "failed")]

    fixed.touch()  # the handler is fixed
    if system.kind == "embedded":
        await system.stop()  # the embedded queue lives in the process: redrive, then start
    redriven = system.stack.dlq("redrive", "--api", api_name, "--id", accepted["id"])
    assert redriven.returncode == 0, redriven.stderr
    assert json.loads(redriven.stdout) == {"id": accepted["id"], "status": "in_queue"}
    if system.kind == "embedded":
        await system.resume()
    record = await wait_terminal(http, url)
    assert record["status"] == "completed", record
    assert record["attempts"] == 3
    assert "error" not in record
    listed = system.stack.dlq("list", "--api", api_name)
    assert listed.stdout == ""


async def test_handler_timeout_fails_the_attempt(
    system: System, http: aiohttp.ClientSession, api_name: str
) -> None:
    system.stack.add_api(
        api_name,
        "sleeper",
        handler={"config": {"seconds": 30, "marks": str(marks_dir(system))}, "timeout": "0.5s"},
    )
    await system.start()
    accepted = await submit(http, f"{system.url}/{api_name}", json={})
    record = await wait_terminal(http, f"{system.url}/{api_name}/{accepted['id']}")
    assert record["status"] == "failed"
    assert record["error"]["type"] == "Timeout"


async def test_cancel_in_queue_never_starts(
    system: System, http: aiohttp.ClientSession, api_name: str
) -> None:
    marks = marks_dir(system)
    system.stack.add_api(
        api_name,
        "sleeper",
        handler={"config": {"seconds": 0, "marks": str(marks)}},
        autoscaling={"min_replicas": 0},
    )
    await system.start()
    accepted = await submit(http, f"{system.url}/{api_name}", json={})
    url = f"{system.url}/{api_name}/{accepted['id']}"
    async with http.delete(url) as answer:
        assert answer.status == 200
        record = await answer.json()
    assert record["status"] == "canceled"
    async with http.delete(url) as answer:
        assert answer.status == 409
    async with http.delete(f"{system.url}/{api_name}/unknown") as answer:
        assert answer.status == 404
    if system.kind == "production":
        # A worker that comes later skips the canceled request and drains the queue.
        worker = await system.stack.worker(api_name)
        await worker.wait_for_output("skipping message of a canceled request")
    assert not list(marks.iterdir())
    async with http.get(url) as answer:
        assert (await answer.json())["status"] == "canceled"


async def test_cancel_while_running_frees_the_slot(
    system: System, http: aiohttp.ClientSession, api_name: str
) -> None:
    marks = marks_dir(system)
    system.stack.add_api(
        api_name,
        "sleeper",
        handler={"config": {"seconds": 30, "marks": str(marks)}, "max_concurrency": 1},
    )
    await system.start()
    first = await submit(http, f"{system.url}/{api_name}", json={})
    await wait_for_file(marks / f"{first['id']}.start")
    async with http.delete(f"{system.url}/{api_name}/{first['id']}") as answer:
        assert answer.status == 200
        assert (await answer.json())["status"] == "canceled"
    # The only slot was taken by the canceled request; a second one can only start once the
    # first one's task was really cancelled.
    second = await submit(http, f"{system.url}/{api_name}", json={})
    await wait_for_file(marks / f"{second['id']}.start")
    assert not (marks / f"{first['id']}.end").exists()
    async with http.get(f"{system.url}/{api_name}/{first['id']}") as answer:
        assert (await answer.json())["status"] == "canceled"


async def test_idempotent_duplicates_make_one_request(
    system: System, http: aiohttp.ClientSession, api_name: str
) -> None:
    marks = marks_dir(system)
    system.stack.add_api(api_name, "counted", handler={"config": {"marks": str(marks)}})
    await system.start()
    url = f"{system.url}/{api_name}"

    async def post() -> tuple[int, str]:
        headers = {"Idempotency-Key": "order-42"}
        async with http.post(url, json={"n": 1}, headers=headers) as answer:
            return answer.status, (await answer.json())["id"]

    answers = await asyncio.gather(*(post() for _ in range(50)))
    ids = {request_id for _, request_id in answers}
    assert len(ids) == 1
    assert {status for status, _ in answers} <= {200, 202}
    assert [status for status, _ in answers].count(202) == 1
    (request_id,) = ids
    record = await wait_terminal(http, f"{url}/{request_id}")
    assert record["status"] == "completed"
    async with http.get(url) as answer:
        assert sum((await answer.json())["counts"].values()) == 1
    assert len(list(marks.glob(f"{request_id}.run.*"))) == 1
    async with http.post(url, json={}, headers={"Idempotency-Key": "order-42"}) as answer:
        assert answer.status == 200
        assert (await answer.json())["status"] == "completed"


async def test_queue_full_answers_429(
    system: System, http: aiohttp.ClientSession, api_name: str
) -> None:
    system.stack.add_api(api_name, "echo", max_queue_length=3, autoscaling={"min_replicas": 0})
    await system.start()
    url = f"{system.url}/{api_name}"
    statuses: list[int] = []
    deadline = time.monotonic() + 20
    while 429 not in statuses:
        assert time.monotonic() < deadline, statuses
        async with http.post(url, json={}) as answer:
            statuses.append(answer.status)
            if answer.status == 429:
                assert answer.headers["Retry-After"].isdigit()
                assert "full" in (await answer.json())["error"]
        await asyncio.sleep(0.05)
    assert set(statuses) == {202, 429}
    async with http.get(url) as answer:
        summary = await answer.json()
    assert summary["queue"]["ready"] >= 3
    assert summary["counts"]["in_queue"] == statuses.count(202)


async def test_prefer_wait_answers_with_the_record(
    system: System, http: aiohttp.ClientSession, api_name: str
) -> None:
    marks = marks_dir(system)
    system.stack.add_api(api_name, "counted", handler={"config": {"marks": str(marks)}})
    system.stack.add_api(
        f"{api_name}-slow", "sleeper", handler={"config": {"seconds": 5, "marks": str(marks)}}
    )
    await system.start()
    async with http.post(
        f"{system.url}/{api_name}", json={}, headers={"Prefer": "wait=20"}
    ) as answer:
        assert answer.status == 200
        assert answer.headers["Preference-Applied"] == "wait=20"
        record = await answer.json()
    assert record["status"] == "completed"
    assert record["result"] == {"ok": True}

    started = time.monotonic()
    async with http.post(
        f"{system.url}/{api_name}-slow", json={}, headers={"Prefer": "wait=1"}
    ) as answer:
        assert answer.status == 202
        assert (await answer.json())["status"] == "in_queue"
    assert time.monotonic() - started >= 0.9
