"""Retry decisions: retry or fail, which doubling of the backoff, and the jittered delay."""

from __future__ import annotations

import pytest

from asyncgw.retries import (
    JITTER,
    MAX_DOUBLINGS,
    PERMANENT_ERRORS,
    Outcome,
    decide,
    retry_delay_s,
    retry_level,
)

RETRY, FAIL = Outcome.RETRY, Outcome.FAIL


def test_constants_are_what_the_tables_below_assume() -> None:
    assert MAX_DOUBLINGS == 16
    assert JITTER == 0.1
    assert "PayloadError" in PERMANENT_ERRORS


@pytest.mark.parametrize(
    ("error_type", "attempts", "retries", "expected"),
    [
        # retries=0: the first failure is final.
        ("HandlerError", 1, 0, FAIL),
        ("Timeout", 1, 0, FAIL),
        # retries=1: one more try after the first.
        ("HandlerError", 1, 1, RETRY),
        ("HandlerError", 2, 1, FAIL),
        # retries=3: attempts 1..3 retry, the fourth failure is final.
        ("HandlerError", 1, 3, RETRY),
        ("HandlerError", 2, 3, RETRY),
        ("Timeout", 3, 3, RETRY),
        ("Timeout", 4, 3, FAIL),
        ("WorkerLost", 5, 3, FAIL),
        ("HandlerError", 100, 3, FAIL),
        # Many retries allowed.
        ("HandlerError", 10, 10, RETRY),
        ("HandlerError", 11, 10, FAIL),
        # A bad payload never gets better: fail at once, whatever the budget.
        ("PayloadError", 1, 0, FAIL),
        ("PayloadError", 1, 1, FAIL),
        ("PayloadError", 1, 10, FAIL),
        ("PayloadError", 5, 10, FAIL),
    ],
)
def test_decide(error_type: str, attempts: int, retries: int, expected: Outcome) -> None:
    assert decide(error_type, attempts, retries) is expected


@pytest.mark.parametrize("retries", [0, 1, 2, 5, 20])
def test_decide_retries_exactly_retries_times(retries: int) -> None:
    outcomes = [decide("HandlerError", attempts, retries) for attempts in range(1, retries + 3)]
    assert outcomes == [RETRY] * retries + [FAIL, FAIL]


def test_decide_error_type_is_matched_exactly() -> None:
    # Only the permanent error's own name is permanent; look-alikes are ordinary failures.
    for name in ("payloaderror", "PayloadErrorX", "Payload", ""):
        assert decide(name, 1, 3) is RETRY, name


@pytest.mark.parametrize(
    ("attempts", "level"),
    [
        (0, 1),  # never below the first doubling
        (1, 1),
        (2, 2),
        (3, 3),
        (15, 15),
        (16, 16),
        (17, 16),  # capped
        (1000, 16),
    ],
)
def test_retry_level(attempts: int, level: int) -> None:
    assert retry_level(attempts) == level


@pytest.mark.parametrize(
    ("attempts", "base"),
    [
        (1, 10.0),
        (2, 20.0),
        (3, 40.0),
        (4, 80.0),
        (5, 160.0),
        (10, 10.0 * 2**9),
        (16, 10.0 * 2**15),
        (17, 10.0 * 2**15),  # later attempts wait as long as the last doubling
        (500, 10.0 * 2**15),
    ],
)
@pytest.mark.parametrize(("spread", "factor"), [(-1.0, 0.9), (0.0, 1.0), (1.0, 1.1)])
def test_retry_delay_with_explicit_spread(
    attempts: int, base: float, spread: float, factor: float
) -> None:
    assert retry_delay_s(attempts, 10.0, spread) == pytest.approx(base * factor)


@pytest.mark.parametrize("attempts", [1, 2, 7, 16, 40])
@pytest.mark.parametrize("spread", [-1.0, -0.5, -0.01, 0.0, 0.3, 0.99, 1.0])
def test_retry_delay_within_jitter_bounds(attempts: int, spread: float) -> None:
    base = 10.0 * 2 ** (retry_level(attempts) - 1)
    delay = retry_delay_s(attempts, 10.0, spread)
    assert base * (1 - JITTER) - 1e-9 <= delay <= base * (1 + JITTER) + 1e-9
    assert delay == pytest.approx(base * (1 + JITTER * spread))


def test_retry_delay_grows_with_spread() -> None:
    delays = [retry_delay_s(3, 10.0, s / 10) for s in range(-10, 11)]
    assert delays == sorted(delays)
    assert delays[0] == pytest.approx(36.0)
    assert delays[-1] == pytest.approx(44.0)


@pytest.mark.parametrize("backoff", [0.5, 1.0, 10.0, 30.0])
def test_retry_delay_scales_with_backoff(backoff: float) -> None:
    assert retry_delay_s(1, backoff, 0.0) == pytest.approx(backoff)
    assert retry_delay_s(4, backoff, 0.0) == pytest.approx(backoff * 8)


def test_retry_delay_zero_backoff_is_zero() -> None:
    for spread in (-1.0, 0.0, 1.0, None):
        assert retry_delay_s(5, 0.0, spread) == 0.0


@pytest.mark.parametrize("attempts", [1, 3, 16, 30])
def test_random_spread_stays_within_bounds(attempts: int) -> None:
    base = 10.0 * 2 ** (retry_level(attempts) - 1)
    samples = [retry_delay_s(attempts, 10.0) for _ in range(2000)]
    assert min(samples) >= base * 0.9 - 1e-9
    assert max(samples) <= base * 1.1 + 1e-9
    # The spread is really random and goes both ways (2000 samples all on one side of the base,
    # or all equal, has a probability far below 2**-1000).
    assert min(samples) < base < max(samples)
    assert len(set(samples)) > 1000
