"""Faults on the production stack: workers killed at random, a broker restart and a store outage
in the middle of the traffic. Every accepted request must end completed; every refused one must
be a clean 503. (The embedded stack's crash test, kill -9 of ``asyncgw up``, is in test_up.py:
there is no separate broker or store process to lose.)"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests import servers
from tests.e2e.stack import Stack, wait_terminal


def report(name: str, **numbers: int) -> None:
    """Print the run's numbers (shown with ``pytest -s``)."""
    print(f"\n{name}: " + json.dumps(numbers))


async def summary(http: aiohttp.ClientSession, url: str) -> dict[str, object]:
    async with http.get(url) as answer:
        return dict(await answer.json())


class Tally:
    """Answer codes seen so far; ``until`` waits for a condition on them."""

    def __init__(self) -> None:
        self.codes: Counter[int] = Counter()
        self._changed = asyncio.Condition()

    async def add(self, code: int) -> None:
        async with self._changed:
            self.codes[code] += 1
            self._changed.notify_all()

    async def until(self, predicate: Callable[[Counter[int]], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: predicate(self.codes))


async def submit_loop(
    http: aiohttp.ClientSession, url: str, total: int, concurrency: int, tally: Tally
) -> list[str]:
    """Submit ``total`` requests, ``concurrency`` at a time; return the ids of those accepted."""
    accepted: list[str] = []
    numbers = iter(range(total))

    async def client() -> None:
        for n in numbers:
            try:
                async with http.post(url, json={"n": n}) as answer:
                    body = await answer.json()
                    await tally.add(answer.status)
                    if answer.status == 202:
                        accepted.append(body["id"])
                    else:
                        assert answer.status == 503, (answer.status, body)
                        assert answer.headers["Retry-After"].isdigit()
                        assert "unavailable" in body["error"]
            except aiohttp.ClientError:
                await tally.add(-1)  # the gateway itself was unreachable: never expected
            await asyncio.sleep(0.05)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return accepted


async def submit_until_accepted(http: aiohttp.ClientSession, url: str, timeout_s: float) -> str:
    """Submit every 0.2 s until one is accepted (only 503s are allowed meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with http.post(url, json={}) as answer:
            if answer.status == 202:
                return str((await answer.json())["id"])
            assert answer.status == 503
        assert time.monotonic() < deadline, "never recovered"
        await asyncio.sleep(0.2)


async def settle(
    http: aiohttp.ClientSession,
    url: str,
    accepted: list[str],
    marks: Path,
    name: str,
    submitted: int,
    codes: Counter[int],
) -> Counter[str]:
    """Wait for every accepted request to end, report the run's numbers, and return the
    requests' final statuses."""
    records = [await wait_terminal(http, f"{url}/{i}", 120) for i in accepted]
    statuses = Counter(r["status"] for r in records)
    runs = sum(executions(marks, i) for i in accepted)
    report(
        name,
        submitted=submitted,
        accepted=len(accepted),
        refused_503=codes[503],
        completed=statuses["completed"],
        lost=len(accepted) - statuses["completed"],
        duplicates_executed=runs - len(accepted),
    )
    return statuses


def executions(marks: Path, request_id: str) -> int:
    return len(list(marks.glob(f"{request_id}.run.*")))


@pytest.mark.timeout(300)
async def test_chaos_kill_9_workers_loses_nothing(
    stack: Stack, http: aiohttp.ClientSession, api_name: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    stack.add_api(
        api_name,
        "counted",
        handler={"config": {"marks": str(marks), "seconds": 0.02}, "max_concurrency": 4},
    )
    await stack.gateway()
    workers = [await stack.worker(api_name) for _ in range(3)]
    url = f"{stack.base_url}/{api_name}"
    tally = Tally()
    submitting = asyncio.create_task(submit_loop(http, url, 500, 16, tally))
    kills = 0
    rng = random.Random(7)
    thresholds = [60, 130, 200, 270, 340]  # completions after which a worker dies
    deadline = time.monotonic() + 200
    while kills < len(thresholds):
        assert time.monotonic() < deadline, "the run stalled"
        completed = int((await summary(http, url))["counts"]["completed"])  # type: ignore[index]
        if completed >= thresholds[kills]:
            victim = workers.pop(rng.randrange(len(workers)))
            victim.kill()
            kills += 1
            workers.append(await stack.worker(api_name))
        await asyncio.sleep(0.02)
    accepted = await submitting
    records = [await wait_terminal(http, f"{url}/{i}", 120) for i in accepted]
    statuses = Counter(r["status"] for r in records)
    runs = sum(executions(marks, i) for i in accepted)
    report(
        "chaos",
        accepted=len(accepted),
        completed=statuses["completed"],
        lost=len(accepted) - statuses["completed"],
        executions=runs,
        duplicates_executed=runs - len(accepted),
        kills=kills,
    )
    assert tally.codes == Counter({202: 500})
    assert statuses == Counter({"completed": 500})
    assert all(executions(marks, i) >= 1 for i in accepted)
    assert (await summary(http, url))["queue"] == {"ready": 0, "dead": 0}


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, timeout=120, capture_output=True)


@pytest.mark.timeout(300)
async def test_broker_restart_mid_submit(
    stack: Stack, http: aiohttp.ClientSession, api_name: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    stack.add_api(api_name, "counted", handler={"config": {"marks": str(marks)}})
    await stack.gateway()
    await stack.worker(api_name)
    url = f"{stack.base_url}/{api_name}"
    tally = Tally()
    codes = tally.codes
    submitting = asyncio.create_task(submit_loop(http, url, 200, 4, tally))
    try:
        await tally.until(lambda c: c[202] >= 50, 60)
        rabbitmqctl("stop_app")
        await tally.until(lambda c: c[503] >= 3, 60)  # the outage is seen by clients
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")
    accepted = await submitting
    statuses = await settle(http, url, accepted, marks, "broker restart", 200, codes)
    assert set(codes) <= {202, 503}
    assert codes[202] + codes[503] == 200
    assert statuses == Counter({"completed": len(accepted)})
    # The gateway and the worker recover by themselves: new requests go through again.
    request_id = await submit_until_accepted(http, url, 60)
    assert (await wait_terminal(http, f"{url}/{request_id}", 60))["status"] == "completed"


@pytest.mark.timeout(300)
async def test_store_outage_mid_run(
    stack: Stack, http: aiohttp.ClientSession, api_name: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    port = servers.free_port()
    storage = str(tmp_path / "mongo")
    stack.env["ASYNCGW_STORE_URL"] = f"mongodb://127.0.0.1:{port}/t{uuid.uuid4().hex}"
    stack.add_api(api_name, "counted", handler={"config": {"marks": str(marks)}})
    with servers.mongo_server(storage, port) as mongo:
        await stack.gateway()
        await stack.worker(api_name)
        url = f"{stack.base_url}/{api_name}"
        tally = Tally()
        codes = tally.codes
        submitting = asyncio.create_task(submit_loop(http, url, 120, 4, tally))
        await tally.until(lambda c: c[202] >= 40, 60)
        mongo.stop()
        await tally.until(lambda c: c[503] >= 2, 90)
        with servers.mongo_server(storage, port):
            accepted = await submitting
            statuses = await settle(http, url, accepted, marks, "store outage", 120, codes)
            assert set(codes) <= {202, 503}
            assert statuses == Counter({"completed": len(accepted)})
