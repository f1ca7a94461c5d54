"""Cortex's replica recommendation, exactly as SPEC §9 states it, plus scale-from-zero. Pure:
time and history are parameters, so every rule is a table test."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from asyncgw.config import ApiConfig


@dataclass(frozen=True, slots=True)
class Limits:
    """An API's autoscaling settings, in the units the policy uses."""

    min_replicas: int = 1
    max_replicas: int = 100
    target_in_flight: float = 1.0
    window_s: float = 60.0
    downscale_stabilization_period_s: float = 300.0
    upscale_stabilization_period_s: float = 60.0
    max_downscale_factor: float = 0.75
    max_upscale_factor: float = 1.5
    downscale_tolerance: float = 0.05
    upscale_tolerance: float = 0.05

    @classmethod
    def of(cls, api: ApiConfig) -> Limits:
        a = api.autoscaling
        return cls(
            min_replicas=a.min_replicas,
            max_replicas=a.max_replicas,
            target_in_flight=api.target_in_flight,
            window_s=a.window_s,
            downscale_stabilization_period_s=a.downscale_stabilization_period_s,
            upscale_stabilization_period_s=a.upscale_stabilization_period_s,
            max_downscale_factor=a.max_downscale_factor,
            max_upscale_factor=a.max_upscale_factor,
            downscale_tolerance=a.downscale_tolerance,
            upscale_tolerance=a.upscale_tolerance,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What one tick decided: ``replicas`` to request, the ``recommendation`` to remember for
    stabilisation, and why (for logs)."""

    replicas: int
    recommendation: int
    raw: float
    reason: str


def average(samples: Sequence[tuple[float, float]], now: float, window_s: float) -> float:
    """Mean of the ``(time, in_flight)`` samples taken within ``window_s`` before ``now``."""
    recent = [value for t, value in samples if now - t <= window_s]
    return sum(recent) / len(recent) if recent else 0.0


def recommend(
    limits: Limits,
    *,
    now: float,
    started_at: float,
    current: int,
    avg_in_flight: float,
    in_flight_now: float,
    history: Sequence[tuple[float, int]],
) -> Decision:
    """The replica count to request. ``history`` holds earlier ``(time, recommendation)`` pairs;
    the returned ``recommendation`` joins it (the caller keeps the history)."""
    if current == 0 and in_flight_now > 0 and limits.max_replicas > 0:
        # Beyond Cortex: waiting work brings an idle API up at once, without stabilisation.
        return Decision(1, 1, avg_in_flight / limits.target_in_flight, "scale from zero")
    raw = avg_in_flight / limits.target_in_flight
    rec = math.ceil(raw)
    if current * (1 - limits.downscale_tolerance) < raw < current:
        rec = current
    if current < raw < current * (1 + limits.upscale_tolerance):
        rec = current
    rec = max(rec, min(current - 1, math.ceil(current * limits.max_downscale_factor)))
    rec = min(rec, max(current + 1, math.ceil(current * limits.max_upscale_factor)))
    rec = max(limits.min_replicas, min(limits.max_replicas, rec))
    remembered = [*history, (now, rec)]
    replicas, reason = rec, "recommendation"
    if rec < current:
        if now - started_at < limits.downscale_stabilization_period_s:
            replicas, reason = current, "no downscale in the first stabilisation period"
        else:
            since = now - limits.downscale_stabilization_period_s
            floor = max(r for t, r in remembered if t >= since)
            if rec < floor:
                # Stabilisation only holds a downscale back; it never turns it into an upscale.
                replicas, reason = min(current, floor), "downscale stabilisation"
    elif rec > current:
        if now - started_at < limits.upscale_stabilization_period_s:
            replicas, reason = current, "no upscale in the first stabilisation period"
        else:
            since = now - limits.upscale_stabilization_period_s
            ceiling = min(r for t, r in remembered if t >= since)
            if rec > ceiling:
                replicas, reason = max(current, ceiling), "upscale stabilisation"
    return Decision(replicas, rec, raw, reason)
