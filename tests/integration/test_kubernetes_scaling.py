"""The scaler against real servers (SPEC §9): the Kubernetes target on the kmock emulator, and
the autoscaler driven tick by tick with a fake clock over a real RabbitMQ queue and a real
SecantusDB status store. Nothing runs in the background: each ``tick()`` is awaited, so what the
test asserts is exactly what that tick did."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kmock import KubernetesEmulator
from kubernetes_asyncio import client
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from asyncgw.autoscaling import Autoscaler
from asyncgw.autoscaling.autoscaler import Sample, export_metrics
from asyncgw.backends.interfaces import Delivery
from asyncgw.backends.mongo import MongoStore
from asyncgw.backends.rabbitmq import RabbitQueue
from asyncgw.config import ApiConfig, parse_apis
from asyncgw.errors import BackendUnavailable
from asyncgw.metrics import REGISTRY
from asyncgw.schema import Envelope, Record, Status, new_id, now
from scaler.kubernetes import KubernetesTarget, deployment_name

NAMESPACE = "asyncgw-test"
DEPLOYMENTS = "apps/v1/deployments"
#: The backlog of the end-to-end test: with max_concurrency 1 it asks for 20 replicas, more than
#: max_replicas, so the climb is limited by max_upscale_factor and then by max_replicas.
BACKLOG = 20


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
async def target(kmock: KubernetesEmulator) -> AsyncIterator[KubernetesTarget]:
    """The production target, pointed at the emulator's real HTTP server."""
    t = KubernetesTarget(NAMESPACE, configuration=client.Configuration(host=str(kmock.url)))
    await t.open()
    try:
        yield t
    finally:
        await t.close()


@pytest.fixture
async def rabbit(amqp_url: str) -> AsyncIterator[RabbitQueue]:
    q = RabbitQueue(amqp_url)
    await q.open()
    try:
        yield q
    finally:
        await q.close()


@pytest.fixture
async def mongo_store(mongo_url: str) -> AsyncIterator[MongoStore]:
    """A MongoStore on a database of its own, dropped afterwards."""
    server = mongo_url.rsplit("/", 1)[0]
    database = f"t{uuid.uuid4().hex}"
    s = MongoStore(f"{server}/{database}")
    await s.open()
    try:
        yield s
    finally:
        await s.close()
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(server)
        try:
            await mongo.drop_database(database)
        finally:
            await mongo.close()


# --- helpers -------------------------------------------------------------------------------------


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.start = start
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    @property
    def elapsed(self) -> float:
        return self.t - self.start


def make_api(tmp_path: Path, name: str, **autoscaling: Any) -> ApiConfig:
    """An API through the real config parser; the handler file exists but is never loaded."""
    handler = tmp_path / "handler.py"
    handler.write_text("def handle(payload):\n    return payload\n")
    entry: dict[str, Any] = {
        "name": name,
        "handler": {"path": handler.name, "max_concurrency": 1},
        "autoscaling": autoscaling,
    }
    [api] = parse_apis([entry], "test", tmp_path)
    return api


def add_deployment(kmock: KubernetesEmulator, api: str, replicas: int) -> None:
    name = deployment_name(api)
    kmock.objects[DEPLOYMENTS, NAMESPACE, name] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"replicas": replicas},
    }


def deployed_replicas(kmock: KubernetesEmulator, api: str) -> int:
    """spec.replicas of the API's Deployment as the emulator stores it."""
    return int(kmock.objects[DEPLOYMENTS, NAMESPACE, deployment_name(api)]["spec"]["replicas"])


def has_deployment(kmock: KubernetesEmulator, api: str) -> bool:
    return any(name == deployment_name(api) for _, _, name in kmock.objects)


def gauge(name: str, **labels: str) -> float | None:
    """The value of a sample in asyncgw's registry, as a scrape would show it."""
    text = generate_latest(REGISTRY).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


async def submit(queue: RabbitQueue, store: MongoStore, api: str, n: int) -> list[str]:
    """Queue ``n`` requests as the gateway does: a record ``in_queue``, then the message."""
    ids: list[str] = []
    for _ in range(n):
        request_id, created = new_id(), now()
        await store.insert(
            Record(
                id=request_id,
                api=api,
                status=Status.IN_QUEUE,
                created_at=created,
                expires_at=created + timedelta(days=1),
                content_type="application/json",
                payload_size=2,
            )
        )
        await queue.publish(
            Envelope(
                id=request_id,
                api=api,
                content_type="application/json",
                created_at=created,
                payload=b"{}",
            )
        )
        ids.append(request_id)
    return ids


def print_trace(title: str, trace: list[tuple[str, float, int, int]]) -> None:
    print(f"\n{title}")
    print(f"{'phase':<12} {'t (s)':>7} {'in_flight':>9} {'replicas':>8}")
    print(f"{'-' * 12} {'-' * 7} {'-' * 9} {'-' * 8}")
    for phase, t, in_flight, replicas in trace:
        print(f"{phase:<12} {t:>7.0f} {in_flight:>9d} {replicas:>8d}")


# --- 1. the Kubernetes target --------------------------------------------------------------------


async def test_target_reads_and_merge_patches_the_deployment_scale(
    kmock: KubernetesEmulator, target: KubernetesTarget, api_name: str, tmp_path: Path
) -> None:
    api = make_api(tmp_path, api_name)
    add_deployment(kmock, api_name, 1)

    assert await target.replicas(api) == 1
    await target.scale(api, 4)

    assert deployed_replicas(kmock, api_name) == 4
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{deployment_name(api_name)}"
    async with kmock.get(path) as response:
        assert response.status == 200
        assert (await response.json())["spec"]["replicas"] == 4
    assert await target.replicas(api) == 4

    # One PATCH, on the scale subresource, as a JSON merge patch of spec.replicas only.
    [patch] = [r for r in kmock if r.method == "PATCH"]
    assert patch.name == deployment_name(api_name)
    assert patch.namespace == NAMESPACE
    assert patch.subresource == "scale"
    content_type = {k.lower(): v for k, v in patch.headers.items()}["content-type"]
    assert content_type.startswith("application/merge-patch+json")
    assert patch.data == {"spec": {"replicas": 4}}

    missing = make_api(tmp_path, f"{api_name}-bin")
    with pytest.raises(BackendUnavailable) as read_error:
        await target.replicas(missing)
    assert read_error.value.backend == "kubernetes"
    assert "404" in read_error.value.detail
    with pytest.raises(BackendUnavailable) as patch_error:
        await target.scale(missing, 2)
    assert "404" in patch_error.value.detail
    assert not has_deployment(kmock, missing.name)


# --- 2. the scaling loop, end to end -------------------------------------------------------------


async def test_replicas_follow_the_backlog_up_and_down(
    kmock: KubernetesEmulator,
    target: KubernetesTarget,
    rabbit: RabbitQueue,
    mongo_store: MongoStore,
    api_name: str,
    tmp_path: Path,
) -> None:
    api = make_api(
        tmp_path,
        api_name,
        min_replicas=0,
        max_replicas=10,
        window="1s",
        upscale_stabilization_period="0s",
        downscale_stabilization_period="3s",
    )
    downscale_period = api.autoscaling.downscale_stabilization_period_s
    await rabbit.declare(api_name)
    add_deployment(kmock, api_name, 0)

    clock = FakeClock()
    readings: list[tuple[Sample | None, int | None, int | None]] = []

    def observe(
        name: str, reading: Sample | None, current: int | None, desired: int | None
    ) -> None:
        export_metrics(name, reading, current, desired)
        if name == api_name:
            readings.append((reading, current, desired))

    autoscaler = Autoscaler(
        [api], target, rabbit, mongo_store, interval_s=10.0, clock=clock, observer=observe
    )
    trace: list[tuple[str, float, int, int]] = []

    async def tick(phase: str, advance_s: float) -> tuple[int, int]:
        """Advance the clock, run one tick; check the gauges against what the tick saw and
        did; return (in_flight, replicas now on the Deployment)."""
        clock.advance(advance_s)
        before = deployed_replicas(kmock, api_name)
        await autoscaler.tick()
        reading, current, desired = readings[-1]
        assert reading is not None, "metrics unreadable"
        replicas = deployed_replicas(kmock, api_name)
        trace.append((phase, clock.elapsed, reading.in_flight, replicas))
        assert (current, desired) == (before, replicas)
        assert gauge("asyncgw_replicas", api=api_name, kind="desired") == replicas
        assert gauge("asyncgw_replicas", api=api_name, kind="current") == before
        assert gauge("asyncgw_in_flight", api=api_name) == reading.in_flight
        assert gauge("asyncgw_queue_messages", api=api_name, state="ready") == reading.ready
        assert gauge("asyncgw_scaler_metrics_up", api=api_name) == 1
        return reading.in_flight, replicas

    try:
        # Idle: nothing queued, nothing started.
        assert await tick("idle", 10) == (0, 0)

        # Backlog: 20 ready messages, target_in_flight 1. Scale from zero, then climb.
        ids = await submit(rabbit, mongo_store, api_name, BACKLOG)
        upscale = [0]
        for _ in range(12):
            in_flight, replicas = await tick("backlog", 10)
            assert in_flight == BACKLOG
            upscale.append(replicas)
            if replicas == api.autoscaling.max_replicas:
                break
        in_flight, replicas = await tick("backlog", 10)  # at the ceiling it stays there
        assert (in_flight, replicas) == (BACKLOG, api.autoscaling.max_replicas)
        assert upscale[:4] == [0, 1, 2, 3]
        assert upscale == sorted(upscale), f"upscale went down: {upscale}"
        assert max(upscale) >= 8
        assert upscale == [0, 1, 2, 3, 5, 8, 10]  # ceil(cur * 1.5), capped at max_replicas

        # Taken by workers: no message is ready any more, but the 20 requests are in progress
        # (unacknowledged), and they still count as in flight.
        deliveries: list[Delivery] = []
        all_delivered = asyncio.Event()

        async def take(delivery: Delivery) -> None:
            deliveries.append(delivery)
            if len(deliveries) == BACKLOG:
                all_delivered.set()

        consumer = await rabbit.consume(api_name, BACKLOG, take)
        async with asyncio.timeout(10):
            await all_delivered.wait()
        for request_id in ids:
            assert await mongo_store.transition(
                request_id, [Status.IN_QUEUE], Status.IN_PROGRESS, fields={"started_at": now()}
            )
        assert await tick("in progress", 10) == (BACKLOG, api.autoscaling.max_replicas)

        # Drained: every message acknowledged, every record completed.
        for delivery in deliveries:
            await delivery.ack()
        await consumer.close()
        for request_id in ids:
            assert await mongo_store.transition(
                request_id, [Status.IN_PROGRESS], Status.COMPLETED, fields={"completed_at": now()}
            )
        assert await rabbit.depth(api_name) == 0
        last_busy = clock.elapsed

        # Tick every second (shorter than the 3 s downscale stabilisation period, so that the
        # hold is visible) until the API is back at min_replicas.
        drain: list[tuple[float, int]] = []
        for _ in range(80):
            in_flight, replicas = await tick("drained", 1)
            assert in_flight == 0
            drain.append((clock.elapsed, replicas))
            if replicas == api.autoscaling.min_replicas:
                break
        assert await tick("drained", 1) == (0, 0)  # and it stays at zero

        counts = [r for _, r in drain]
        assert counts == sorted(counts, reverse=True), f"downscale went up: {counts}"
        # Each change, from the ceiling down: min(cur - 1, ceil(cur * max_downscale_factor
        # 0.75)) per step, down to min_replicas; and when it happened.
        level = api.autoscaling.max_replicas
        steps, changed_at = [level], [last_busy]
        for t, replicas in drain:
            if replicas != level:
                steps.append(replicas)
                changed_at.append(t)
                level = replicas
        assert steps == [10, 8, 6, 5, 4, 3, 2, 1, 0]
        # Every level is held for at least the stabilisation period: the first step waits for
        # the last busy tick's recommendation to leave the period, each next one for the
        # previous level's.
        holds = [b - a for a, b in itertools.pairwise(changed_at)]
        assert all(h >= downscale_period for h in holds), f"held for {holds}"

        # The gauges show the last tick.
        assert gauge("asyncgw_replicas", api=api_name, kind="desired") == 0
        assert gauge("asyncgw_in_flight", api=api_name) == 0
    finally:
        print_trace(f"autoscaling trace of {api_name} (fake clock)", trace)


# --- 3. failure isolation ------------------------------------------------------------------------


async def test_an_api_without_deployment_does_not_stop_the_others(
    kmock: KubernetesEmulator,
    target: KubernetesTarget,
    rabbit: RabbitQueue,
    mongo_store: MongoStore,
    api_name: str,
    tmp_path: Path,
) -> None:
    settings = {"min_replicas": 0, "max_replicas": 10, "upscale_stabilization_period": "0s"}
    bad = make_api(tmp_path, f"{api_name}-bin", **settings)
    good = make_api(tmp_path, api_name, **settings)
    for api in (bad, good):
        await rabbit.declare(api.name)
        await submit(rabbit, mongo_store, api.name, 2)
    add_deployment(kmock, good.name, 0)  # none for `bad`

    # The broken API first, so the good one is only scaled if the loop goes on past it.
    clock = FakeClock()
    autoscaler = Autoscaler(
        [bad, good], target, rabbit, mongo_store, clock=clock, observer=export_metrics
    )
    clock.advance(10)
    await autoscaler.tick()

    assert deployed_replicas(kmock, good.name) == 1
    assert not has_deployment(kmock, bad.name)
    assert [r.method for r in kmock if r.name == deployment_name(bad.name)] == ["GET"]
    assert gauge("asyncgw_scaler_metrics_up", api=bad.name) == 0
    assert gauge("asyncgw_scaler_metrics_up", api=good.name) == 1
    assert gauge("asyncgw_in_flight", api=bad.name) == 2  # the queue was read; Kubernetes failed
    assert gauge("asyncgw_replicas", api=bad.name, kind="desired") is None
    assert gauge("asyncgw_replicas", api=good.name, kind="desired") == 1

    # Once the Deployment exists, the next tick scales it too.
    add_deployment(kmock, bad.name, 0)
    clock.advance(10)
    await autoscaler.tick()
    assert deployed_replicas(kmock, bad.name) == 1
    assert gauge("asyncgw_scaler_metrics_up", api=bad.name) == 1
