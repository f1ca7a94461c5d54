"""The Prometheus metrics of SPEC §10, one registry per process, and the ``metrics_client``
handed to handlers. Label values are bounded: API names, methods, codes, statuses, outcomes —
never ids or paths."""

from __future__ import annotations

import re

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

#: From milliseconds to hours: HTTP calls, queue waits and handler runs all fit.
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
)  # fmt: skip

HTTP_REQUESTS = Counter(
    "asyncgw_http_requests_total",
    "HTTP requests answered by the gateway.",
    ["api", "method", "code"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "asyncgw_http_request_duration_seconds",
    "Time the gateway took to answer.",
    ["api", "method"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
SUBMITTED = Counter(
    "asyncgw_requests_submitted_total",
    "Requests accepted (202) by the gateway.",
    ["api"],
    registry=REGISTRY,
)
FINISHED = Counter(
    "asyncgw_requests_finished_total",
    "Requests that reached a terminal status on a worker.",
    ["api", "status"],
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "asyncgw_queue_wait_seconds",
    "Time from submit to the start of an attempt.",
    ["api"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
HANDLER_DURATION = Histogram(
    "asyncgw_handler_duration_seconds",
    "Time one attempt of the handler took, by how it ended.",
    ["api", "status"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
IN_PROGRESS = Gauge(
    "asyncgw_requests_in_progress",
    "Requests a worker is running now.",
    ["api"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "asyncgw_retries_total",
    "Failed attempts scheduled to be tried again.",
    ["api"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "asyncgw_webhook_deliveries_total",
    "Webhook delivery attempts by outcome (delivered, retry, gone, failed, refused).",
    ["api", "outcome"],
    registry=REGISTRY,
)
QUEUE_MESSAGES = Gauge(
    "asyncgw_queue_messages",
    "Messages in the API's queue: ready, or unacked (being worked on).",
    ["api", "state"],
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "asyncgw_in_flight",
    "Requests queued or running: what the scaler divides by target_in_flight.",
    ["api"],
    registry=REGISTRY,
)
REPLICAS = Gauge(
    "asyncgw_replicas",
    "Worker replicas: desired by the scaler, and current.",
    ["api", "kind"],
    registry=REGISTRY,
)
OLDEST_AGE = Gauge(
    "asyncgw_oldest_request_age_seconds",
    "Age of the API's oldest queued request.",
    ["api"],
    registry=REGISTRY,
)
SCALER_METRICS_UP = Gauge(
    "asyncgw_scaler_metrics_up",
    "1 when the scaler could read the API's queue and replicas on its last tick, else 0.",
    ["api"],
    registry=REGISTRY,
)


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: the process's metrics in the Prometheus text format."""
    response = web.Response(body=generate_latest(REGISTRY))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def metrics_app() -> web.Application:
    """A small app serving ``/metrics`` (for workers and the scaler)."""
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    return app


_USER_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


class MetricsClient:
    """What handlers get as ``metrics_client`` (Cortex's interface): ``increment``, ``gauge``
    and ``histogram``, recorded in the worker's registry with the API's name as a label. Names
    may not start with ``asyncgw_``, which is the system's own."""

    def __init__(self, api: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.api = api
        self._registry = registry
        self._metrics: dict[tuple[str, str, tuple[str, ...]], Counter | Gauge | Histogram] = {}

    def _get(self, kind: str, name: str, tags: dict[str, str] | None) -> tuple[object, list[str]]:
        if not _USER_NAME.fullmatch(name) or name.startswith("asyncgw_"):
            raise ValueError(f"metric name {name!r} is not allowed (asyncgw_* is reserved)")
        labels = ["api", *sorted(tags or {})]
        key = (kind, name, tuple(labels))
        metric = self._metrics.get(key)
        if metric is None:
            if kind == "counter":
                metric = Counter(name, f"{name} (handler)", labels, registry=self._registry)
            elif kind == "gauge":
                metric = Gauge(name, f"{name} (handler)", labels, registry=self._registry)
            else:
                metric = Histogram(
                    name, f"{name} (handler)", labels, registry=self._registry,
                    buckets=DURATION_BUCKETS,
                )  # fmt: skip
            self._metrics[key] = metric
        values = [self.api, *(str((tags or {})[k]) for k in sorted(tags or {}))]
        return metric, values

    def increment(self, metric: str, value: float = 1, tags: dict[str, str] | None = None) -> None:
        counter, values = self._get("counter", metric, tags)
        counter.labels(*values).inc(value)  # type: ignore[attr-defined]

    def gauge(self, metric: str, value: float, tags: dict[str, str] | None = None) -> None:
        gauge, values = self._get("gauge", metric, tags)
        gauge.labels(*values).set(value)  # type: ignore[attr-defined]

    def histogram(self, metric: str, value: float, tags: dict[str, str] | None = None) -> None:
        histogram, values = self._get("histogram", metric, tags)
        histogram.labels(*values).observe(value)  # type: ignore[attr-defined]
