"""Celery as a peer of asyncgw: the same no-op task on the same RabbitMQ broker, with its results
in MongoDB, configured for the same guarantees (late acks, publisher confirms, a started state,
redelivery when a worker dies), so the harness can print asyncgw / Celery ratios.

    python bench/celery_peer.py --amqp amqp://guest:guest@127.0.0.1:5672/ \\
        --mongo mongodb://127.0.0.1:27017/celerybench -n 1000

Needs the ``bench`` extra (``celery==5.7.0``). Importing this module starts nothing: the worker
runs in a subprocess (``start_worker``) that loads ``bench.celery_peer:worker_app``, an app built
from the ``CELERY_PEER_AMQP`` / ``CELERY_PEER_MONGO`` environment variables.

The worker to compare with one asyncgw worker process (asyncio, 64 slots, so 64 unacked messages)
is ``RECOMMENDED_POOL`` / ``RECOMMENDED_CONCURRENCY``: of the one-or-two-process setups, the one
where Celery measured best (see the note at those constants).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import celery  # type: ignore[import-untyped]
import pymongo

QUEUE = "bench.celery"
TASK = "bench.noop"
AMQP_ENV = "CELERY_PEER_AMQP"
MONGO_ENV = "CELERY_PEER_MONGO"

# One asyncgw worker process holds up to 64 unacked messages (its 64 slots); Celery's worker holds
# prefetch_multiplier x concurrency. The peer gets the same window, whatever its pool.
DEFAULT_PREFETCH = 64
# Prefork with 2 children (plus the consuming parent), Celery's default of one child per core.
# End to end, 1,000 no-op tasks, 2 noisy cores, SecantusDB as the backend, tasks/s, medians of 12
# to 15 runs: prefork -c 2: ~280; threads -c 16: ~255; threads -c 8: ~250; prefork -c 1: ~235;
# threads -c 64: ~230. The backend is the bottleneck (SecantusDB, one Python process, takes most
# of a core; each task is two writes, STARTED and SUCCESS); two processes keep writes going at it
# without the worker's GIL in the way.
RECOMMENDED_POOL = "prefork"
RECOMMENDED_CONCURRENCY = 2
# Threads that call apply_async at once in run_throughput, each blocking on its own publisher
# confirm; at most in_flight. 16 and 32 submitted equally fast here (~1,000/s), 4 and 8 slower,
# 64 no faster and noisier (the GIL on 2 cores).
SUBMIT_THREADS = 16
# Threads that send run_latency's open-loop submits, so a slow confirm does not delay the next one.
LATENCY_THREADS = 8
# Ids per backend query while waiting for the tasks to finish (see _wait_done).
_PROBE = 10

_REPO = Path(__file__).resolve().parents[1]
_ROOT_WARNING = "You're running the worker with superuser privileges"


def make_app(amqp_url: str, mongo_url: str) -> celery.Celery:
    """A Celery app on ``amqp_url`` with results in MongoDB at ``mongo_url``, whose one queue is
    ``bench.celery`` (classic, durable) and whose one task, ``bench.noop``, returns None."""
    app = celery.Celery(
        "bench_celery_peer", broker=amqp_url, backend=mongo_url, set_as_current=False
    )
    app.conf.update(
        # The same guarantees as asyncgw: a message is acked only after its result is stored, the
        # broker confirms every publish, a request shows "started" while it runs, and a task whose
        # worker process died is requeued rather than acked.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,
        broker_transport_options={"confirm_publish": True},
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # A classic durable queue on a direct exchange of the same name: Celery's default shape.
        task_queues={QUEUE: {"exchange": QUEUE, "exchange_type": "direct", "routing_key": QUEUE}},
        task_default_queue_type="classic",
        task_default_queue=QUEUE,
        task_default_exchange=QUEUE,
        task_default_routing_key=QUEUE,
        task_create_missing_queues=False,
        worker_prefetch_multiplier=DEFAULT_PREFETCH,  # start_worker sets it per concurrency
        # No remote control, events or gossip: they would only add pidbox/celeryev queues and
        # traffic that asyncgw's worker does not have. Readiness is the queue's consumer count.
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        # Celery's defaults (celery_taskmeta collection, maxPoolSize 10, the database from the
        # URL's path) work with pymongo 4.20 and SecantusDB as they are. See _backend_options.
        mongodb_backend_settings={
            "taskmeta_collection": "celery_taskmeta",
            "options": _backend_options(mongo_url),
        },
        result_expires=None,  # no cleanup task: nothing runs celery beat here
    )

    @app.task(name=TASK, shared=False)  # type: ignore[untyped-decorator]
    def noop() -> None:
        return None

    return app


def _backend_options(mongo_url: str) -> dict[str, Any]:
    """MongoClient options for Celery's result backend: no retryable writes, unless the URL asks.

    SecantusDB keeps every retryable write's reply for 30 minutes (up to 10,000) and scans them
    all on each new retryable write, so a single-document write costs more the more such writes
    the server took lately: 2 ms on a fresh server, 12 ms once it holds 10,000. Celery writes one
    document per state (two a task: STARTED, SUCCESS), so on a server the harness has just loaded
    with asyncgw's writes it would measure SecantusDB's history, not Celery. The driver's one
    automatic retry acts only on a network error or a change of primary, which a benchmark on
    loopback does not meet (and a standalone mongod has no retryable writes at all); Celery's
    write is an upsert keyed by task id that keeps the first SUCCESS, idempotent anyway.
    Measured, prefork -c 2 on a server holding 10,000 such records: 69 tasks/s with them, 310
    without."""
    if "retrywrites=" in mongo_url.lower():
        return {}
    return {"retryWrites": False}


def __getattr__(name: str) -> Any:
    """``worker_app`` is built on first access, from the environment start_worker passes, so
    importing this module needs no URLs."""
    if name == "worker_app":
        if AMQP_ENV not in os.environ or MONGO_ENV not in os.environ:
            raise AttributeError(f"worker_app needs {AMQP_ENV} and {MONGO_ENV} in the environment")
        app = make_app(os.environ[AMQP_ENV], os.environ[MONGO_ENV])
        globals()["worker_app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _queue_state(app: celery.Celery) -> tuple[int, int]:
    """(ready messages, consumers) of the bench queue, declaring it if it is missing."""
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        queue = app.amqp.queues[QUEUE](channel)
        queue.declare()
        _, messages, consumers = channel.queue_declare(QUEUE, passive=True)
        return int(messages), int(consumers)


def start_worker(
    amqp_url: str,
    mongo_url: str,
    concurrency: int,
    pool: str = "prefork",
    *,
    prefetch_multiplier: int | None = None,
    timeout: float = 60.0,
) -> subprocess.Popen[bytes]:
    """Start ``celery worker`` on the bench queue in a subprocess and return once it consumes the
    queue and has run a few warm-up tasks, or raise if it exits or ``timeout`` s pass first. Refuses
    to start beside another consumer of the queue (a second harness run, a stray worker). Its log
    (warnings and up) goes to our stderr; stop it with ``stop_worker`` or ``terminate()``.

    The prefetch multiplier defaults to DEFAULT_PREFETCH // concurrency (at least 1), so the worker
    holds about as many unacked messages as one asyncgw worker does."""
    multiplier = prefetch_multiplier or max(1, DEFAULT_PREFETCH // concurrency)
    app = make_app(amqp_url, mongo_url)
    try:
        _, consumers_before = _queue_state(app)
        if consumers_before:
            # Another worker would take a share of the tasks and store their results elsewhere.
            raise RuntimeError(f"{QUEUE} has {consumers_before} consumer(s): is a run going on?")
        env = dict(os.environ)
        env[AMQP_ENV] = amqp_url
        env[MONGO_ENV] = mongo_url
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
        # CI runs as root; Celery's warning about that would be the only line the worker prints.
        env["PYTHONWARNINGS"] = ",".join(
            filter(None, [env.get("PYTHONWARNINGS"), f"ignore:{_ROOT_WARNING}"])
        )
        command = [
            sys.executable, "-m", "celery", "-A", "bench.celery_peer:worker_app", "worker",
            "--queues", QUEUE, "--pool", pool, "--concurrency", str(concurrency),
            "--prefetch-multiplier", str(multiplier),
            "--hostname", f"bench-{os.getpid()}-{time.monotonic_ns()}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", "WARNING",
        ]  # fmt: skip
        worker = subprocess.Popen(command, cwd=_REPO, env=env, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while _queue_state(app)[1] == 0:
                if worker.poll() is not None:
                    raise RuntimeError(
                        f"celery worker exited with {worker.returncode} (see stderr)"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(f"celery worker did not consume {QUEUE} in {timeout} s")
                time.sleep(0.1)
            _warm_worker(app, mongo_url, min(4 * concurrency, 256), deadline)
        except BaseException:
            stop_worker(worker)
            raise
        return worker
    finally:
        app.close()


def _warm_worker(app: celery.Celery, mongo_url: str, count: int, deadline: float) -> None:
    """Run ``count`` no-op tasks through the new worker, untimed, and delete their results: its
    first tasks open the backend connections (one per thread in the threads pool, one per child in
    prefork) and create Celery's index, and that belongs to starting, not to the measurement."""
    task = app.tasks[TASK]
    ids = [task.apply_async().id for _ in range(count)]
    with _taskmeta(app, mongo_url) as collection:
        _wait_done(collection, ids, deadline)
        for at in range(0, count, _PROBE):
            collection.delete_many({"_id": {"$in": ids[at : at + _PROBE]}})


def stop_worker(worker: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Warm shutdown (SIGTERM: the worker finishes what it holds, its pool with it), then SIGKILL
    if it lingers."""
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout)


@contextlib.contextmanager
def _taskmeta(app: celery.Celery, mongo_url: str) -> Iterator[Any]:
    """Celery's taskmeta collection, on a client of our own (tz-aware, for date_done)."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_url, tz_aware=True)
    try:
        yield client[app.backend.database_name][app.backend.taskmeta_collection]
    finally:
        client.close()


def _wait_done(
    collection: Any, ids: list[str], deadline: float, interval: float = 0.05
) -> dict[str, datetime]:
    """Poll every ``interval`` s until every id is SUCCESS; returns each id's date_done.

    The poll must not take the backend's capacity from the worker: SecantusDB answers an ``$in``
    of 1,000 ids in about a second (it grows faster than linearly), and a scan of the collection
    costs more than the worker's writes do. So the ids are checked in submit order, which is about
    the order the worker finishes them, ``_PROBE`` at a time: a poll asks for the first ``_PROBE``
    ids not yet seen done and moves on to the next ones only while all of them are. Each id is
    still confirmed SUCCESS one by one."""
    done: dict[str, datetime] = {}
    pending = list(ids)
    while True:
        while pending:
            probe = pending[:_PROBE]
            for doc in collection.find(
                {"_id": {"$in": probe}, "status": "SUCCESS"}, {"date_done": 1}
            ):
                done[doc["_id"]] = doc["date_done"]
            waiting = [task_id for task_id in probe if task_id not in done]
            pending = waiting + pending[_PROBE:]
            if waiting:
                break
        if not pending:
            return done
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} of {len(ids)} tasks not SUCCESS by the deadline")
        time.sleep(interval)


def _warm(app: celery.Celery, connections: int) -> None:
    """Open ``connections`` pooled broker connections (with their confirm-mode channels) before
    the clock starts, so the timed part measures publishing, not connecting."""
    producers = [app.producer_pool.acquire(block=True) for _ in range(connections)]
    for producer in producers:
        producer.release()


def run_throughput(
    amqp_url: str,
    mongo_url: str,
    total: int,
    in_flight: int,
    *,
    submit_threads: int = SUBMIT_THREADS,
    timeout: float | None = None,
) -> dict[str, float]:
    """Closed loop, with the worker running: submit ``total`` no-op tasks with up to ``in_flight``
    apply_async calls at once (``min(in_flight, submit_threads)`` threads, each with its own pooled
    broker connection), then wait until all are SUCCESS in the backend.

    Returns submit_rps (total / submit time) and e2e_rps (total / time until all done)."""
    threads = max(1, min(in_flight, submit_threads))
    app = make_app(amqp_url, mongo_url)
    app.conf.broker_pool_limit = max(10, threads)
    task = app.tasks[TASK]
    ids: list[str] = []
    lock = threading.Lock()
    remaining = iter(range(total))
    deadline_s = timeout if timeout is not None else 60.0 + 0.2 * total

    def client() -> None:
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            result = task.apply_async()
            with lock:
                ids.append(result.id)

    try:
        with _taskmeta(app, mongo_url) as collection:
            _warm(app, threads)
            start = time.perf_counter()
            with ThreadPoolExecutor(threads, thread_name_prefix="submit") as executor:
                for future in [executor.submit(client) for _ in range(threads)]:
                    future.result()
            submitted = time.perf_counter()
            _wait_done(collection, ids, time.monotonic() + deadline_s)
            finished = time.perf_counter()
    finally:
        app.close()
    return {
        "submit_rps": total / (submitted - start),
        "e2e_rps": total / (finished - start),
    }


def run_latency(
    amqp_url: str,
    mongo_url: str,
    count: int,
    rate: float,
    *,
    timeout: float | None = None,
) -> list[float]:
    """Open loop at ``rate`` tasks/s: the n-th apply_async is due at start + n / rate, whether or
    not the earlier ones have returned (a small thread pool sends them). Each latency is the
    task's date_done in the backend minus the wall clock just before its apply_async, in seconds,
    in submit order. date_done has the millisecond resolution of a BSON date."""
    app = make_app(amqp_url, mongo_url)
    task = app.tasks[TASK]
    sent: list[tuple[str, float]] = [("", 0.0)] * count

    def send(n: int) -> None:
        before = time.time()
        sent[n] = (task.apply_async().id, before)

    try:
        with _taskmeta(app, mongo_url) as collection:
            _warm(app, LATENCY_THREADS)
            with ThreadPoolExecutor(LATENCY_THREADS, thread_name_prefix="latency") as executor:
                start = time.perf_counter()
                futures = []
                for n in range(count):
                    delay = start + n / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    futures.append(executor.submit(send, n))
                for future in futures:
                    future.result()
            deadline = time.monotonic() + (timeout if timeout is not None else 60.0 + 0.2 * count)
            done = _wait_done(collection, [task_id for task_id, _ in sent], deadline)
    finally:
        app.close()
    return [_as_utc(done[task_id]).timestamp() - before for task_id, before in sent]


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def purge(amqp_url: str, mongo_url: str) -> None:
    """Empty the bench queue and drop Celery's taskmeta collection, leaving the index on date_done
    that Celery makes when a worker first writes: a worker still running has made it already and
    would not again, and its writes cost more with it, so a measurement after a purge must have it
    too."""
    app = make_app(amqp_url, mongo_url)
    try:
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            app.amqp.queues[QUEUE](channel).declare()
            channel.queue_purge(QUEUE)
        with _taskmeta(app, mongo_url) as collection:
            collection.drop()
            collection.create_index("date_done", background=True)  # as MongoBackend.collection
    finally:
        app.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--mongo", default="mongodb://127.0.0.1:27017/celerybench")
    parser.add_argument("-n", "--requests", type=int, default=1000)
    parser.add_argument("-c", "--in-flight", type=int, default=64, help="submits at once [64]")
    parser.add_argument("--concurrency", type=int, default=RECOMMENDED_CONCURRENCY)
    parser.add_argument("--pool", default=RECOMMENDED_POOL)
    parser.add_argument("--prefetch-multiplier", type=int, default=None)
    parser.add_argument("--latency-rate", type=float, default=10.0, help="tasks/s [10]")
    parser.add_argument("--latency-count", type=int, default=100, help="0 skips it [100]")
    args = parser.parse_args()

    purge(args.amqp, args.mongo)
    worker = start_worker(
        args.amqp, args.mongo, args.concurrency, args.pool,
        prefetch_multiplier=args.prefetch_multiplier,
    )  # fmt: skip
    try:
        report: dict[str, Any] = {"pool": args.pool, "concurrency": args.concurrency}
        report.update(run_throughput(args.amqp, args.mongo, args.requests, args.in_flight))
        if args.latency_count > 0:
            latencies = sorted(
                run_latency(args.amqp, args.mongo, args.latency_count, args.latency_rate)
            )
            report["latency_p50_ms"] = 1000 * statistics.median(latencies)
            report["latency_p99_ms"] = 1000 * latencies[int(0.99 * (len(latencies) - 1))]
    finally:
        stop_worker(worker)
        purge(args.amqp, args.mongo)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
