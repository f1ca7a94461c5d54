"""The metrics_client handlers get: recorded with the API's name, never in asyncgw's namespace."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from asyncgw.metrics import MetricsClient


def test_records_with_the_api_label() -> None:
    registry = CollectorRegistry()
    client = MetricsClient("iris", registry)
    client.increment("predictions", tags={"label": "setosa"})
    client.increment("predictions", 2, tags={"label": "setosa"})
    client.gauge("model_version", 3)
    client.histogram("confidence", 0.5)
    assert registry.get_sample_value("predictions_total", {"api": "iris", "label": "setosa"}) == 3
    assert registry.get_sample_value("model_version", {"api": "iris"}) == 3
    assert registry.get_sample_value("confidence_count", {"api": "iris"}) == 1


@pytest.mark.parametrize("name", ["asyncgw_requests_submitted_total", "asyncgw_x", "bad name", ""])
def test_reserved_and_invalid_names_are_refused(name: str) -> None:
    client = MetricsClient("iris", CollectorRegistry())
    with pytest.raises(ValueError, match="not allowed"):
        client.increment(name)
