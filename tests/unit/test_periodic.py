"""The background runner behind sweeps and autoscaling ticks."""

from __future__ import annotations

import asyncio

import pytest

from asyncgw.periodic import Periodic


async def test_runs_at_once_then_every_interval_and_survives_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0
    third = asyncio.Event()

    async def step() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            third.set()
        if runs == 2:
            raise RuntimeError("boom")

    periodic = Periodic(0.01, step, "test step", now=True)
    periodic.start()
    periodic.start()  # a second start changes nothing
    await asyncio.wait_for(third.wait(), 5)
    await periodic.stop()
    seen = runs
    assert seen >= 3
    assert "test step failed" in caplog.text
    assert not periodic.running
    await periodic.stop()  # stopping twice is fine


async def test_waits_an_interval_first_unless_now() -> None:
    ran = asyncio.Event()

    async def step() -> None:
        ran.set()

    periodic = Periodic(60.0, step, "slow step")
    periodic.start()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(ran.wait()), 0.05)
    await periodic.stop()
    assert not ran.is_set()
