"""The autoscaling policy of SPEC §9, rule by rule, and Cortex's documented consequences."""

from __future__ import annotations

import pytest

from asyncgw.autoscaling.policy import Limits, average, recommend

LATE = 10_000.0  # long after start: no start-up stabilisation in the way


def decide(
    limits: Limits,
    current: int,
    avg: float,
    *,
    now: float = LATE,
    started_at: float = 0.0,
    history: list[tuple[float, int]] | None = None,
    in_flight_now: float | None = None,
) -> int:
    return recommend(
        limits,
        now=now,
        started_at=started_at,
        current=current,
        avg_in_flight=avg,
        in_flight_now=avg if in_flight_now is None else in_flight_now,
        history=history or [],
    ).replicas


BASE = Limits(min_replicas=1, max_replicas=100, target_in_flight=1.0)


@pytest.mark.parametrize(
    ("current", "avg", "expected", "rule"),
    [
        (4, 4.0, 4, "steady"),
        (100, 96.0, 100, "within the downscale tolerance: stay"),
        (100, 94.0, 94, "beyond the downscale tolerance: down"),
        (50, 52.0, 50, "within the upscale tolerance: stay"),
        (50, 53.0, 53, "beyond the upscale tolerance: up"),
        (4, 2.9, 3, "a plain downscale"),
        (10, 0.0, 8, "downscale step: max(rec, min(cur-1, ceil(cur*0.75)))"),
        (100, 0.0, 75, "downscale step for many replicas: ceil(100*0.75)"),
        (2, 0.0, 1, "always allowed to drop one"),
        (4, 1000.0, 6, "upscale step: min(rec, max(cur+1, ceil(cur*1.5)))"),
        (1, 1000.0, 2, "always allowed to add one"),
        (1, 0.0, 1, "min_replicas clamp"),
    ],
)
def test_single_rules(current: int, avg: float, expected: int, rule: str) -> None:
    assert decide(BASE, current, avg) == expected, rule


def test_target_in_flight_divides() -> None:
    limits = Limits(target_in_flight=4.0)
    assert decide(limits, 3, 12.0) == 3
    assert decide(limits, 3, 16.0) == 4


def test_max_replicas_clamp() -> None:
    assert decide(Limits(max_replicas=5), 4, 1000.0) == 5


def test_scale_from_zero_on_the_next_tick() -> None:
    limits = Limits(min_replicas=0)
    # Right after start, with no stabilisation history: any waiting message brings one replica.
    assert decide(limits, 0, 0.0, now=1.0, started_at=0.0, in_flight_now=1) == 1
    assert decide(limits, 0, 0.0, now=1.0, started_at=0.0, in_flight_now=0) == 0


def test_no_scaling_during_the_first_stabilisation_periods() -> None:
    # Downscale waits for the downscale period (5 min), upscale for the upscale period (1 min).
    assert decide(BASE, 10, 0.0, now=299.0) == 10
    assert decide(BASE, 10, 0.0, now=301.0) == 8
    assert decide(BASE, 2, 50.0, now=59.0) == 2
    assert decide(BASE, 2, 50.0, now=61.0) == 3


def test_downscale_stabilisation_keeps_the_highest_recent_recommendation() -> None:
    history = [(LATE - 200, 8), (LATE - 100, 5)]
    assert decide(BASE, 8, 0.0, history=history) == 8
    old = [(LATE - 400, 8), (LATE - 100, 7)]
    assert decide(BASE, 8, 0.0, history=old) == 7


def test_upscale_stabilisation_keeps_the_lowest_recent_recommendation() -> None:
    history = [(LATE - 30, 2)]
    assert decide(BASE, 2, 50.0, history=history) == 2
    assert decide(BASE, 2, 50.0, history=[(LATE - 90, 2)]) == 3


def test_stabilisation_never_reverses_the_direction() -> None:
    # An old low recommendation may hold an upscale back, never turn it into a downscale.
    assert decide(BASE, 5, 50.0, history=[(LATE - 10, 1)]) == 5
    assert decide(BASE, 5, 0.0, history=[(LATE - 10, 50)]) == 5


def simulate(limits: Limits, ticks: int, in_flight: float, start: int) -> list[int]:
    """Replica counts tick by tick (10 s apart) under a constant in-flight count."""
    replicas, history, seen = start, [], [start]
    for tick in range(1, ticks + 1):
        now = tick * 10.0
        decision = recommend(
            limits,
            now=now,
            started_at=0.0,
            current=replicas,
            avg_in_flight=in_flight,
            in_flight_now=in_flight,
            history=history,
        )
        history.append((now, decision.recommendation))
        replicas = decision.replicas
        if replicas != seen[-1]:
            seen.append(replicas)
    return seen


def test_step_limits_under_a_large_backlog() -> None:
    assert simulate(BASE, 40, 1000.0, start=1)[:5] == [1, 2, 3, 5, 8]


def test_scale_to_zero_only_after_the_downscale_window_of_zero() -> None:
    limits = Limits(min_replicas=0, downscale_stabilization_period_s=300.0)
    history: list[tuple[float, int]] = []
    replicas = 1
    first_zero = None
    for tick in range(1, 80):
        now = 400.0 + tick * 10.0
        decision = recommend(
            limits,
            now=now,
            started_at=0.0,
            current=replicas,
            avg_in_flight=0.0 if tick > 1 else 1.0,
            in_flight_now=0.0 if tick > 1 else 1.0,
            history=history,
        )
        history.append((now, decision.recommendation))
        replicas = decision.replicas
        if replicas == 0 and first_zero is None:
            first_zero = now
    # The last recommendation of 1 was at tick 1 (t=410): zero comes once it left the window.
    assert first_zero is not None and first_zero > 410.0 + 300.0 - 1
    assert first_zero <= 410.0 + 300.0 + 10.0


def test_average_over_the_window() -> None:
    samples = [(0.0, 100.0), (50.0, 10.0), (60.0, 20.0)]
    assert average(samples, 60.0, 30.0) == 15.0
    assert average(samples, 60.0, 60.0) == pytest.approx(130 / 3)
    assert average([], 60.0, 60.0) == 0.0
