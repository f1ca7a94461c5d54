"""The autoscaling loop: every interval, for each API, sample the queue, run the policy, and set
the target's replica count. An API whose metrics or target fail keeps its count, and the others
go on."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from asyncgw.autoscaling.policy import Limits, average, recommend
from asyncgw.backends import Queue, StatusStore
from asyncgw.config import ApiConfig
from asyncgw.errors import AsyncgwError
from asyncgw.periodic import Periodic
from asyncgw.schema import Status, now

log = logging.getLogger(__name__)

#: Seconds between ticks (SPEC §9).
DEFAULT_INTERVAL_S = 10.0


class ScaleTarget(Protocol):
    """What the autoscaler changes: Kubernetes Deployments, or worker pools in process."""

    async def replicas(self, api: ApiConfig) -> int:
        """The API's current replica count."""
        ...

    async def scale(self, api: ApiConfig, replicas: int) -> None:
        """Set the API's replica count."""
        ...


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of an API's queue."""

    ready: int
    in_progress: int
    oldest_age_s: float

    @property
    def in_flight(self) -> int:
        return self.ready + self.in_progress


async def sample(api: ApiConfig, queue: Queue, store: StatusStore) -> Sample:
    """Ready messages from the broker (a passive declare: exact and immediate), requests being
    worked on from the store (the records ``in_progress``, which are the unacknowledged
    messages), and the age of the oldest ``in_queue`` request."""
    ready = await queue.depth(api.name)
    in_progress = await store.count(api.name, Status.IN_PROGRESS)
    oldest = await store.oldest(api.name, Status.IN_QUEUE)
    age = 0.0 if oldest is None else max(0.0, (now() - oldest).total_seconds())
    return Sample(ready, in_progress, age)


@dataclass
class _State:
    started_at: float
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    history: deque[tuple[float, int]] = field(default_factory=deque)


#: Called after every tick of an API: (api, sample or None when unreadable, current, desired).
Observer = Callable[[str, Sample | None, int | None, int | None], None]


class Autoscaler:
    """Scales ``apis`` on ``target`` from ``queue`` and ``store`` every ``interval_s``."""

    def __init__(
        self,
        apis: Sequence[ApiConfig],
        target: ScaleTarget,
        queue: Queue,
        store: StatusStore,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        observer: Observer | None = None,
    ) -> None:
        self.apis = list(apis)
        self.target = target
        self.queue = queue
        self.store = store
        self.interval_s = interval_s
        self.clock = clock
        self.observer = observer
        start = clock()
        self._states = {api.name: _State(started_at=start) for api in self.apis}
        self._ticker = Periodic(interval_s, self.tick, "autoscaling tick", now=True)
        #: The replicas last requested per API.
        self.desired: dict[str, int] = {}

    async def tick(self) -> None:
        """One round over every API; whatever goes wrong with one leaves the others alone."""
        for api in self.apis:
            try:
                await self.tick_api(api)
            except Exception:
                log.exception("autoscaling tick failed", extra={"api": api.name})
                self._observe(api.name, None, None, None)

    async def tick_api(self, api: ApiConfig) -> int | None:
        """Sample, decide and apply for one API; return the replicas requested (``None`` when the
        API was left as it is because something could not be read or changed)."""
        state = self._states[api.name]
        context = {"api": api.name}
        try:
            reading = await sample(api, self.queue, self.store)
        except AsyncgwError as exc:
            log.warning("metrics unreadable; keeping the replica count: %s", exc, extra=context)
            self._observe(api.name, None, None, None)
            return None
        t = self.clock()
        limits = Limits.of(api)
        state.samples.append((t, float(reading.in_flight)))
        while state.samples and t - state.samples[0][0] > limits.window_s:
            state.samples.popleft()
        try:
            current = await self.target.replicas(api)
        except AsyncgwError as exc:
            log.warning("replicas unreadable; left as they are: %s", exc, extra=context)
            self._observe(api.name, reading, None, None)
            return None
        decision = recommend(
            limits,
            now=t,
            started_at=state.started_at,
            current=current,
            avg_in_flight=average(state.samples, t, limits.window_s),
            in_flight_now=reading.in_flight,
            history=state.history,
        )
        state.history.append((t, decision.recommendation))
        horizon = max(
            limits.downscale_stabilization_period_s, limits.upscale_stabilization_period_s
        )
        while state.history and t - state.history[0][0] > horizon:
            state.history.popleft()
        if decision.replicas != current:
            try:
                await self.target.scale(api, decision.replicas)
            except AsyncgwError as exc:
                log.warning("scaling failed; left as it is: %s", exc, extra=context)
                self._observe(api.name, reading, current, None)
                return None
            log.info(
                "scaled %d -> %d (%s; in flight %d, raw %.2f)",
                current,
                decision.replicas,
                decision.reason,
                reading.in_flight,
                decision.raw,
                extra=context,
            )
        self.desired[api.name] = decision.replicas
        self._observe(api.name, reading, current, decision.replicas)
        return decision.replicas

    def _observe(
        self, api: str, reading: Sample | None, current: int | None, desired: int | None
    ) -> None:
        if self.observer is not None:
            self.observer(api, reading, current, desired)

    def start(self) -> None:
        """Tick now and then every ``interval_s`` in the background."""
        self._ticker.start()

    async def stop(self) -> None:
        await self._ticker.stop()


def export_metrics(
    api: str, reading: Sample | None, current: int | None, desired: int | None
) -> None:
    """An ``Observer`` that publishes each tick as the scaler's Prometheus gauges."""
    from asyncgw import metrics

    metrics.SCALER_METRICS_UP.labels(api).set(0 if reading is None or current is None else 1)
    if reading is not None:
        metrics.QUEUE_MESSAGES.labels(api, "ready").set(reading.ready)
        metrics.QUEUE_MESSAGES.labels(api, "unacked").set(reading.in_progress)
        metrics.IN_FLIGHT.labels(api).set(reading.in_flight)
        metrics.OLDEST_AGE.labels(api).set(reading.oldest_age_s)
    if current is not None:
        metrics.REPLICAS.labels(api, "current").set(current)
    if desired is not None:
        metrics.REPLICAS.labels(api, "desired").set(desired)
