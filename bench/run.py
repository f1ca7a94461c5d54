"""The benchmark: asyncgw beside Celery and beside the raw floor, in one run on one machine.

Starts SecantusDB (MongoDB protocol) and moto (S3), uses the machine's RabbitMQ, and measures, in
each of ``--runs`` rounds:

- asyncgw on RabbitMQ + MongoDB + S3 (``asyncgw gateway`` and one ``asyncgw worker``): submit of
  1 KiB and 1 MiB JSON payloads, closed loop; end-to-end no-op throughput; submit-to-completed
  latency at a low rate;
- Celery with the same broker, store, task and counts;
- the floor: aio-pika and PyMongo with no asyncgw code (``floor.py``);
- asyncgw on the embedded backends (``asyncgw up``);

then, once, the peak memory of a gateway streaming a 1 GiB upload and of a worker with 10,000
requests waiting in its queue. Writes a Markdown table (median of the rounds, min-max beside it)
and a PNG chart to ``docs/``, and the raw numbers to ``.bench/results.json``.

    scripts/bench.sh                 # everything, about 7 minutes on 2 cores
    scripts/bench.sh --runs 1 -n 1000 --skip-memory   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import yaml
from pymongo import AsyncMongoClient

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import floor  # noqa: E402
from tests import servers  # noqa: E402
from tests.e2e.stack import ASYNCGW, Proc  # noqa: E402

BUCKET = "bench"
NOOP = (ROOT / "bench" / "noop.py").read_text()
SLOW = """import asyncio


class Handler:
    async def handle_async(self, payload):
        await asyncio.sleep(3600)
"""
IN_FLIGHT = 64


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def json_body(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes."""
    return json.dumps({"data": "x" * (size - 12)}).encode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


# -- processes --------------------------------------------------------------------------------


@dataclass
class Workdir:
    path: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def start(self, args: list[str], name: str) -> Proc:
        log_path = self.path / f"{name}.{len(self.procs)}.log"
        process = subprocess.Popen(
            args, env=self.env, cwd=self.path, stdout=log_path.open("wb"), stderr=subprocess.STDOUT
        )
        proc = Proc(process, log_path)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.process.poll() is None:
                proc.process.kill()
                proc.process.wait()


@contextlib.contextmanager
def workdir(env: dict[str, str], apis: list[dict[str, Any]]) -> Iterator[Workdir]:
    with tempfile.TemporaryDirectory(prefix="asyncgw-bench-") as tmp:
        path = Path(tmp)
        (path / "noop.py").write_text(NOOP)
        (path / "slow.py").write_text(SLOW)
        (path / "asyncgw.yaml").write_text(yaml.safe_dump(apis))
        work = Workdir(path, {**env, "ASYNCGW_CONFIG": str(path / "asyncgw.yaml")})
        try:
            yield work
        finally:
            work.close()


def api(name: str, handler: str = "noop.py", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "AsyncAPI",
        "handler": {"path": handler, "max_concurrency": IN_FLIGHT},
        "max_payload_size": "2Gi",
        **extra,
    }


async def start_gateway(work: Workdir, port: int) -> Proc:
    proc = work.start([ASYNCGW, "gateway", "--host", "127.0.0.1", "--port", str(port)], "gateway")
    await wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
    return proc


async def wait_ready(url: str, proc: Proc) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as answer:
                    if answer.status == 200:
                        return
            if proc.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"not ready:\n{proc.output()[-3000:]}")
            await asyncio.sleep(0.05)


async def start_worker(work: Workdir, api_name: str, amqp_url: str) -> Proc:
    args = [ASYNCGW, "worker", "--api", api_name, "--metrics-port", str(servers.free_port())]
    proc = work.start(args, f"worker-{api_name}")
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()

        async def consuming() -> bool:
            if proc.process.poll() is not None:
                raise RuntimeError(f"worker exited:\n{proc.output()[-3000:]}")
            queue = await channel.declare_queue(f"asyncgw.{api_name}", passive=True)
            return queue.declaration_result.consumer_count > 0

        await until(consuming, 60, f"a worker for {api_name}")
    return proc


# -- load -------------------------------------------------------------------------------------


@dataclass
class Load:
    """What a closed loop measured: the rate, each request's latency, and the ids it got."""

    rps: float
    latencies: list[float]
    ids: list[str]
    started: float  # wall clock, before the first request

    def summary(self) -> dict[str, float]:
        return {
            "rps": self.rps,
            "p50_ms": 1000 * percentile(self.latencies, 0.5),
            "p99_ms": 1000 * percentile(self.latencies, 0.99),
        }


async def closed_loop(url: str, total: int, in_flight: int, body: bytes) -> Load:
    """POST ``body`` ``total`` times to ``url`` with ``in_flight`` requests always open."""
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    ids: list[str] = []
    remaining = iter(range(total))
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client() -> None:
            for _ in remaining:
                t0 = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as answer:
                    reply = await answer.json()
                    if answer.status != 202:
                        raise RuntimeError(f"POST {url}: {answer.status} {reply}")
                latencies.append(time.perf_counter() - t0)
                ids.append(reply["id"])

        started = time.time()
        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(in_flight)))
        elapsed = time.perf_counter() - t0
    return Load(total / elapsed, latencies, ids, started)


async def open_loop(url: str, count: int, rate: float) -> dict[str, float]:
    """POST one 1 KiB request every ``1/rate`` seconds; the wall-clock time each was sent."""
    body = json_body(1024)
    sent: dict[str, float] = {}
    async with aiohttp.ClientSession() as http:

        async def one() -> None:
            t = time.time()
            async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as a:
                reply = await a.json()
                if a.status != 202:
                    raise RuntimeError(f"POST {url}: {a.status} {reply}")
            sent[reply["id"]] = t

        tasks = []
        start = time.monotonic()
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return sent


async def until(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(every_s)


# -- asyncgw on RabbitMQ, MongoDB and S3 -------------------------------------------------------


@dataclass
class Servers:
    amqp: str
    mongo: str
    s3: str


@contextlib.contextmanager
def own_store(base: Servers) -> Iterator[Servers]:
    """A fresh SecantusDB for one measure. SecantusDB keeps the reply of every retryable write
    for 30 minutes and scans them on each new one, so a server that has taken one system's writes
    is slower for the next: every measure starts on an empty server instead."""
    with servers.mongo_server() as mongo:
        yield dataclasses.replace(base, mongo=mongo.url)


def production_env(srv: Servers, database: str) -> dict[str, str]:
    return {
        **os.environ,
        "ASYNCGW_QUEUE_URL": srv.amqp,
        "ASYNCGW_STORE_URL": f"{srv.mongo}/{database}",
        "ASYNCGW_STORAGE_URL": f"s3://{BUCKET}/{database}",
        "AWS_ENDPOINT_URL": srv.s3,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "ASYNCGW_LOG_LEVEL": "WARNING",
        "ASYNCGW_GRACE_PERIOD": "5s",
    }


@contextlib.asynccontextmanager
async def fresh_database(srv: Servers) -> AsyncIterator[str]:
    """A database and blob prefix name of its own; afterwards the run's queues are deleted and
    S3 emptied (the SecantusDB server goes with the measure, see ``own_store``)."""
    name = f"bench{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        names = [q for api in ("noop", "sink", "slow") for q in servers.queues_of(api)]
        await servers.delete_queues(names, srv.amqp)
        reset_s3(srv.s3)


def reset_s3(endpoint: str) -> None:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
    servers.create_bucket(endpoint, BUCKET)


async def completed_times(srv: Servers, database: str, api_name: str) -> dict[str, float]:
    """When each request of ``api_name`` completed (wall clock), once none is left to do.

    Waits on the broker's ready count first and on the store only for the last few, so that
    watching does not load the store it measures."""
    connection = await aio_pika.connect(srv.amqp)
    async with connection:
        channel = await connection.channel()

        async def drained() -> bool:
            queue = await channel.declare_queue(f"asyncgw.{api_name}", passive=True)
            return queue.declaration_result.message_count == 0

        await until(drained, 600, f"asyncgw.{api_name} to drain")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(srv.mongo, tz_aware=True)
    requests = client[database]["requests"]
    try:

        async def done() -> bool:
            unfinished = {"api": api_name, "status": {"$in": ["in_queue", "in_progress"]}}
            return await requests.count_documents(unfinished) == 0

        await until(done, 600, f"{api_name} requests to complete", every_s=0.2)
        cursor = requests.find({"api": api_name}, {"completed_at": True, "status": True})
        times = {}
        async for doc in cursor:
            if doc["status"] != "completed":
                raise RuntimeError(f"request {doc['_id']} ended {doc['status']}")
            times[doc["_id"]] = doc["completed_at"].timestamp()
        return times
    finally:
        await client.close()


async def bench_asyncgw(srv: Servers, n: int, big_n: int, latency_n: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    async with fresh_database(srv) as database:
        with workdir(production_env(srv, database), [api("noop"), api("sink")]) as work:
            port = servers.free_port()
            base = f"http://127.0.0.1:{port}"
            gateway = await start_gateway(work, port)
            log(f"asyncgw: submit {n} x 1 KiB")
            result["submit_1k"] = (
                await closed_loop(f"{base}/sink", n, IN_FLIGHT, json_body(1024))
            ).summary()
            log(f"asyncgw: submit {big_n} x 1 MiB")
            big = await closed_loop(f"{base}/sink", big_n, IN_FLIGHT, json_body(2**20))
            result["submit_1m"] = big.summary()
            worker = await start_worker(work, "noop", srv.amqp)
            log(f"asyncgw: end to end {n}")
            load = await closed_loop(f"{base}/noop", n, IN_FLIGHT, json_body(1024))
            done = await completed_times(srv, database, "noop")
            result["e2e"] = {"rps": n / (max(done.values()) - load.started), "submit_rps": load.rps}
            log(f"asyncgw: latency at 10/s, {latency_n}")
            sent = await open_loop(f"{base}/noop", latency_n, 10)
            done = await completed_times(srv, database, "noop")
            result["latency"] = latency_summary([done[i] - t for i, t in sent.items()])
            result["worker_peak_rss_mb"] = peak_rss_mb(worker.process.pid)
            result["gateway_peak_rss_mb"] = peak_rss_mb(gateway.process.pid)
            worker.stop()
            gateway.stop()
    return result


def latency_summary(seconds: list[float]) -> dict[str, float]:
    return {"p50_ms": 1000 * percentile(seconds, 0.5), "p99_ms": 1000 * percentile(seconds, 0.99)}


# -- asyncgw on the embedded backends ----------------------------------------------------------


async def bench_embedded(n: int, latency_n: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNCGW_", "AWS_"))}
    with workdir(env, [api("noop")]) as work:
        port = servers.free_port()
        base = f"http://127.0.0.1:{port}"
        up = work.start([ASYNCGW, "up", "--port", str(port), "--data-dir", "data"], "up")
        await up.wait_for_output("asyncgw is up on", 60)
        log(f"embedded: end to end {n}")
        load = await closed_loop(f"{base}/noop", n, IN_FLIGHT, json_body(1024))
        database = work.path / "data" / "asyncgw.db"
        done = await sqlite_completed_times(base, database, "noop")
        result: dict[str, Any] = {
            "submit_1k": load.summary(),
            "e2e": {"rps": n / (max(done.values()) - load.started), "submit_rps": load.rps},
        }
        log(f"embedded: latency at 10/s, {latency_n}")
        sent = await open_loop(f"{base}/noop", latency_n, 10)
        done = await sqlite_completed_times(base, database, "noop")
        result["latency"] = latency_summary([done[i] - t for i, t in sent.items()])
        up.stop()
    return result


async def sqlite_completed_times(base: str, path: Path, api_name: str) -> dict[str, float]:
    """When each request of ``api_name`` completed, once the API's summary shows none left."""
    async with aiohttp.ClientSession() as http:

        async def done() -> bool:
            async with http.get(f"{base}/{api_name}") as answer:
                counts = (await answer.json())["counts"]
            return counts["in_queue"] + counts["in_progress"] == 0

        await until(done, 600, f"{api_name} requests to complete")
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        rows = db.execute(
            "SELECT id, status, json_extract(data, '$.completed_at') FROM requests WHERE api = ?",
            (api_name,),
        ).fetchall()
    times = {}
    for request_id, status, completed in rows:
        if status != "completed":
            raise RuntimeError(f"request {request_id} ended {status}")
        times[request_id] = datetime.fromisoformat(completed).timestamp()
    return times


# -- the peers ---------------------------------------------------------------------------------


async def bench_floor(srv: Servers, n: int) -> dict[str, Any]:
    queue = f"bench.floor.{uuid.uuid4().hex[:8]}"
    result: dict[str, Any] = {}
    try:
        await floor.declare(srv.amqp, queue)
        log(f"floor: submit {n}")
        submitted = await floor.submit(srv.amqp, srv.mongo, queue, n, IN_FLIGHT, 1024)
        result["submit_1k"] = {
            "rps": submitted["rps"],
            "p50_ms": 1000 * percentile(submitted["latencies"], 0.5),
            "p99_ms": 1000 * percentile(submitted["latencies"], 0.99),
        }
        await floor.declare(srv.amqp, queue)
        await floor.reset(srv.mongo)
        log(f"floor: end to end {n}")
        with tempfile.TemporaryDirectory() as tmp:
            work = Workdir(Path(tmp), dict(os.environ))
            args = [sys.executable, str(ROOT / "bench" / "floor.py"), "consume"]
            args += ["--amqp", srv.amqp, "--mongo", srv.mongo, "--queue", queue, "-n", str(n)]
            consumer = work.start(args, "floor")
            try:
                await consumer.wait_for_output("consuming", 60)
                started = time.time()
                submitted = await floor.submit(srv.amqp, srv.mongo, queue, n, IN_FLIGHT, 1024)
                await until(lambda: _exited(consumer), 600, "floor consumer")
                finished = await floor.last_finished(srv.mongo)
                result["e2e"] = {"rps": n / (finished - started), "submit_rps": submitted["rps"]}
            finally:
                work.close()
    finally:
        await floor.reset(srv.mongo)
        await servers.delete_queues([queue], srv.amqp)
    return result


async def _exited(proc: Proc) -> bool:
    code = proc.process.poll()
    if code not in (None, 0):
        raise RuntimeError(f"exited {code}:\n{proc.output()[-3000:]}")
    return code == 0


async def bench_celery(
    srv: Servers, n: int, latency_n: int, pool: str, *, retryable_writes: bool = False
) -> dict[str, Any]:
    """Celery's worker and client (``celery_peer.py``). Its result backend's client goes without
    retryable writes unless ``retryable_writes``: see docs/benchmarks.md."""
    from bench import celery_peer  # needs the bench extra's Celery

    mongo_url = f"{srv.mongo}/bench_celery"
    if retryable_writes:
        mongo_url += "?retryWrites=true"
    name, _, size = pool.partition(":")
    concurrency = int(size or celery_peer.RECOMMENDED_CONCURRENCY)
    celery_peer.purge(srv.amqp, mongo_url)
    worker = celery_peer.start_worker(srv.amqp, mongo_url, concurrency, name)
    try:
        log(f"celery ({name}, {concurrency}): end to end {n}")
        throughput = await asyncio.to_thread(
            celery_peer.run_throughput, srv.amqp, mongo_url, n, IN_FLIGHT
        )
        log(f"celery: latency at 10/s, {latency_n}")
        latencies = await asyncio.to_thread(
            celery_peer.run_latency, srv.amqp, mongo_url, latency_n, 10.0
        )
    finally:
        celery_peer.stop_worker(worker)
        celery_peer.purge(srv.amqp, mongo_url)
        connection = await aio_pika.connect(srv.amqp)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(celery_peer.QUEUE)
            await channel.exchange_delete(celery_peer.QUEUE)
    return {
        "e2e": {"rps": throughput["e2e_rps"], "submit_rps": throughput["submit_rps"]},
        "latency": latency_summary(latencies),
    }


# -- memory ------------------------------------------------------------------------------------


async def bench_memory(srv: Servers, upload_mib: int, queued: int) -> dict[str, float]:
    result: dict[str, float] = {}
    async with fresh_database(srv) as database:
        apis = [api("sink"), api("slow", handler="slow.py")]
        with workdir(production_env(srv, database), apis) as work:
            port = servers.free_port()
            base = f"http://127.0.0.1:{port}"
            gateway = await start_gateway(work, port)
            log(f"memory: one {upload_mib} MiB upload")
            result["gateway_idle_rss_mb"] = peak_rss_mb(gateway.process.pid)
            chunk = b"x" * 2**20

            async def body() -> AsyncIterator[bytes]:
                for _ in range(upload_mib):
                    yield chunk

            timeout = aiohttp.ClientTimeout(total=1800)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                t0 = time.perf_counter()
                headers = {"Content-Type": "application/octet-stream"}
                async with http.post(f"{base}/sink", data=body(), headers=headers) as answer:
                    reply = await answer.json()
                    if answer.status != 202:
                        raise RuntimeError(f"upload: {answer.status} {reply}")
                result["upload_mib_per_s"] = upload_mib / (time.perf_counter() - t0)
            result["gateway_peak_rss_mb"] = peak_rss_mb(gateway.process.pid)
            log(f"memory: a worker with {queued} requests queued")
            await closed_loop(f"{base}/slow", queued, IN_FLIGHT, json_body(1024))
            worker = await start_worker(work, "slow", srv.amqp)
            connection = await aio_pika.connect(srv.amqp)
            async with connection:
                channel = await connection.channel()

                async def holding() -> bool:
                    q = await channel.declare_queue("asyncgw.slow", passive=True)
                    return q.declaration_result.message_count <= queued - IN_FLIGHT

                await until(holding, 120, "the worker to take its prefetch")
            result["worker_rss_mb"] = peak_rss_mb(worker.process.pid)
            worker.process.kill()
            gateway.stop()
    return result


# -- report ------------------------------------------------------------------------------------

ROWS: list[tuple[str, str, str, str]] = [
    # label, system, measurement path, unit
    ("Submit 1 KiB, requests/s", "asyncgw", "submit_1k.rps", "/s"),
    ("Submit 1 KiB, p50", "asyncgw", "submit_1k.p50_ms", "ms"),
    ("Submit 1 KiB, p99", "asyncgw", "submit_1k.p99_ms", "ms"),
    ("Submit 1 MiB, requests/s", "asyncgw", "submit_1m.rps", "/s"),
    ("Submit 1 MiB, p50", "asyncgw", "submit_1m.p50_ms", "ms"),
    ("Submit 1 MiB, p99", "asyncgw", "submit_1m.p99_ms", "ms"),
    ("End to end, requests/s", "asyncgw", "e2e.rps", "/s"),
    ("Submit-to-completed at 10/s, p50", "asyncgw", "latency.p50_ms", "ms"),
    ("Submit-to-completed at 10/s, p99", "asyncgw", "latency.p99_ms", "ms"),
    ("Floor: insert + publish, requests/s", "floor", "submit_1k.rps", "/s"),
    ("Floor: insert + publish, p50", "floor", "submit_1k.p50_ms", "ms"),
    ("Floor: insert + publish, p99", "floor", "submit_1k.p99_ms", "ms"),
    ("Floor: end to end, requests/s", "floor", "e2e.rps", "/s"),
    ("Celery: end to end, requests/s", "celery", "e2e.rps", "/s"),
    ("Celery: submit (apply_async), requests/s", "celery", "e2e.submit_rps", "/s"),
    ("Celery: submit-to-completed at 10/s, p50", "celery", "latency.p50_ms", "ms"),
    ("Celery: submit-to-completed at 10/s, p99", "celery", "latency.p99_ms", "ms"),
    ("Celery, retryable writes on: end to end, requests/s", "celery_rw", "e2e.rps", "/s"),
    ("Embedded: submit 1 KiB, requests/s", "embedded", "submit_1k.rps", "/s"),
    ("Embedded: end to end, requests/s", "embedded", "e2e.rps", "/s"),
    ("Embedded: submit-to-completed at 10/s, p50", "embedded", "latency.p50_ms", "ms"),
    ("Embedded: submit-to-completed at 10/s, p99", "embedded", "latency.p99_ms", "ms"),
]

RATIOS: list[tuple[str, str, str, str, str, str]] = [
    # label, numerator system and path, denominator system and path, target
    ("End to end: asyncgw / Celery", "asyncgw", "e2e.rps", "celery", "e2e.rps", "≥ 3"),
    (
        "End to end: asyncgw / Celery with retryable writes on",
        "asyncgw",
        "e2e.rps",
        "celery_rw",
        "e2e.rps",
        "≥ 3",
    ),
    ("Submit: asyncgw / floor", "asyncgw", "submit_1k.rps", "floor", "submit_1k.rps", "≥ 0.6"),
    ("End to end: asyncgw / floor", "asyncgw", "e2e.rps", "floor", "e2e.rps", ""),
    ("End to end: embedded / production", "embedded", "e2e.rps", "asyncgw", "e2e.rps", ""),
]


def lookup(run: dict[str, Any], system: str, path: str) -> float | None:
    value: Any = run.get(system)
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value)


def spread(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def markdown(runs: list[dict[str, Any]], memory: dict[str, float], meta: dict[str, Any]) -> str:
    lines = [
        f"Measured on {meta['date']}: {meta['cores']} cores, {meta['machine']}, Python"
        f" {meta['python']}; {meta['runs']} rounds of {meta['n']} requests"
        f" ({meta['big_n']} for 1 MiB, {meta['latency_n']} for latency). Each cell is the median"
        " of the rounds, with the lowest and highest in brackets.",
        "",
        "| measurement | value |",
        "|---|---|",
    ]
    for label, system, path, unit in ROWS:
        values = [v for run in runs if (v := lookup(run, system, path)) is not None]
        digits = 0 if unit == "/s" or max(values, default=0) >= 100 else 1
        lines.append(f"| {label} | {spread(values, digits)} {unit} |")
    lines += ["", "| ratio | value | target |", "|---|---|---|"]
    for label, ns, np_, ds, dp, target in RATIOS:
        values = [
            a / b
            for run in runs
            if (a := lookup(run, ns, np_)) is not None and (b := lookup(run, ds, dp))
        ]
        lines.append(f"| {label} | {spread(values, 2)} | {target} |")
    if memory:
        lines += ["", "| memory | value |", "|---|---|"]
        lines.append(
            f"| Gateway peak RSS, streaming one {meta['upload_mib']} MiB upload to S3 |"
            f" {memory['gateway_peak_rss_mb']:.0f} MB (idle {memory['gateway_idle_rss_mb']:.0f}"
            f" MB; {memory['upload_mib_per_s']:.0f} MiB/s) |"
        )
        lines.append(
            f"| Worker RSS with {meta['queued']} requests queued |"
            f" {memory['worker_rss_mb']:.0f} MB |"
        )
    return "\n".join(lines) + "\n"


def chart(runs: list[dict[str, Any]], path: Path, meta: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [
        (
            "Submit 1 KiB",
            [
                ("asyncgw", "submit_1k.rps"),
                ("floor", "submit_1k.rps"),
                ("embedded", "submit_1k.rps"),
                ("celery", "e2e.submit_rps"),
            ],
        ),
        (
            "End to end (no-op)",
            [
                ("asyncgw", "e2e.rps"),
                ("floor", "e2e.rps"),
                ("embedded", "e2e.rps"),
                ("celery", "e2e.rps"),
            ],
        ),
    ]
    labels = {
        "asyncgw": "asyncgw (RabbitMQ + MongoDB + S3)",
        "floor": "floor (aio-pika + PyMongo)",
        "embedded": "asyncgw up (embedded)",
        "celery": "Celery 5",
    }
    colors = {"asyncgw": "#1f77b4", "floor": "#7f7f7f", "embedded": "#2ca02c", "celery": "#d62728"}
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    width = 0.2
    for gi, (_, series) in enumerate(groups):
        for si, (system, metric) in enumerate(series):
            values = [v for run in runs if (v := lookup(run, system, metric)) is not None]
            if not values:
                continue
            median = statistics.median(values)
            x = gi + (si - 1.5) * width
            ax.bar(
                x, median, width, color=colors[system], label=labels[system] if gi == 0 else None
            )
            ax.errorbar(
                x,
                median,
                yerr=[[median - min(values)], [max(values) - median]],
                color="black",
                capsize=3,
                linewidth=1,
            )
            ax.annotate(
                f"{median:.0f}",
                (x, median),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 2),
                textcoords="offset points",
            )
    ax.set_xticks(range(len(groups)), [g for g, _ in groups])
    ax.set_ylabel("requests/s (median, min-max)")
    ax.set_title(f"asyncgw and peers, {meta['cores']} cores, {meta['date']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_docs(table: str, docs: Path) -> None:
    """Put ``table`` between the result markers of ``docs/benchmarks.md``."""
    page = docs / "benchmarks.md"
    text = page.read_text()
    start, end = "<!-- results -->", "<!-- /results -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    page.write_text(f"{head}{start}\n{table}\n![requests/s](benchmarks.png)\n\n{end}{tail}")


# -- main --------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "runs": args.runs,
        "n": args.requests,
        "big_n": args.big_requests,
        "latency_n": args.latency_requests,
        "upload_mib": args.upload_mib,
        "queued": args.queued,
    }
    started = time.monotonic()
    with servers.s3_server() as s3:
        base = Servers(args.amqp, "", s3.url)
        reset_s3(s3.url)
        runs: list[dict[str, Any]] = []
        for i in range(args.runs):
            log(f"round {i + 1} of {args.runs}")
            run: dict[str, Any] = {}
            with own_store(base) as srv:
                run["asyncgw"] = await bench_asyncgw(
                    srv, args.requests, args.big_requests, args.latency_requests
                )
            with own_store(base) as srv:
                run["floor"] = await bench_floor(srv, args.requests)
            if not args.skip_celery:
                with own_store(base) as srv:
                    run["celery"] = await bench_celery(
                        srv, args.requests, args.latency_requests, args.celery_pool
                    )
                if i == 0:
                    with own_store(base) as srv:
                        run["celery_rw"] = await bench_celery(
                            srv,
                            args.requests,
                            args.latency_requests,
                            args.celery_pool,
                            retryable_writes=True,
                        )
            run["embedded"] = await bench_embedded(args.requests, args.latency_requests)
            runs.append(run)
            log(json.dumps(run))
        memory: dict[str, float] = {}
        if not args.skip_memory:
            with own_store(base) as srv:
                memory = await bench_memory(srv, args.upload_mib, args.queued)
    meta["seconds"] = round(time.monotonic() - started)
    table = markdown(runs, memory, meta)
    print(table)
    out = ROOT / ".bench"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "runs": runs, "memory": memory}))
    if args.write_docs:
        chart(runs, ROOT / "docs" / "benchmarks.png", meta)
        write_docs(table, ROOT / "docs")
        log("wrote docs/benchmarks.md and docs/benchmarks.png")
    log(f"done in {meta['seconds']} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark asyncgw beside Celery and the raw floor (see docs/benchmarks.md)."
    )
    parser.add_argument("--runs", type=int, default=3, help="rounds; the table shows the median")
    parser.add_argument("-n", "--requests", type=int, default=5000, help="requests per measure")
    parser.add_argument("--big-requests", type=int, default=500, help="1 MiB submits per round")
    parser.add_argument("--latency-requests", type=int, default=50, help="requests at 10/s")
    parser.add_argument("--upload-mib", type=int, default=1024, help="size of the big upload")
    parser.add_argument("--queued", type=int, default=10_000, help="requests queued for a worker")
    parser.add_argument(
        "--celery-pool",
        default="prefork:2",
        help="Celery's worker pool and its size [prefork:2]; e.g. threads:64",
    )
    parser.add_argument("--skip-celery", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--write-docs", action="store_true", help="write docs/benchmarks.md and its chart"
    )
    parser.add_argument(
        "--amqp", default=os.environ.get("ASYNCGW_BENCH_AMQP_URL", servers.AMQP_URL)
    )
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
