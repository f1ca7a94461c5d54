"""Handlers for the end-to-end tests, chosen by class name in the API file."""

import os
import time
from pathlib import Path


class Failing:
    def __init__(self, config):
        self.message = config.get("message", "boom")

    def handle_async(self, payload):
        raise ValueError(self.message)


class Slow:
    """Sleeps ``seconds``, writing ``<marks>/<id>.start.<pid>`` before and ``.end.<pid>`` after,
    so a test can see when a request started and count how many times it finished."""

    def __init__(self, config):
        self.seconds = float(config.get("seconds", 1))
        self.marks = Path(config["marks"])

    def handle_async(self, payload, request_id):
        (self.marks / f"{request_id}.start.{os.getpid()}").touch()
        time.sleep(self.seconds)
        (self.marks / f"{request_id}.end.{os.getpid()}").touch()
        return {"slept": self.seconds}


class Echo:
    async def handle_async(self, payload):
        if isinstance(payload, bytes):
            return {"bytes": len(payload)}
        return {"echo": payload}


class Flaky:
    """Fails the first ``fail_times`` attempts of each request; with ``fixed`` set, fails every
    attempt until that file exists. Writes ``<marks>/<id>.try.<n>`` for every attempt."""

    def __init__(self, config):
        self.marks = Path(config["marks"])
        self.fail_times = int(config.get("fail_times", 0))
        self.fixed = Path(config["fixed"]) if config.get("fixed") else None

    def handle_async(self, payload, request_id):
        tries = len(list(self.marks.glob(f"{request_id}.try.*"))) + 1
        (self.marks / f"{request_id}.try.{tries}").touch()
        if self.fixed is not None and not self.fixed.exists():
            raise RuntimeError("not fixed yet")
        if tries <= self.fail_times:
            raise RuntimeError(f"failure {tries}")
        return {"tries": tries}


class Sleeper:
    """An async handler that sleeps ``seconds`` (so cancelling it interrupts it), marking
    ``<id>.start`` and ``<id>.end``."""

    def __init__(self, config):
        self.seconds = float(config.get("seconds", 1))
        self.marks = Path(config["marks"])

    async def handle_async(self, payload, request_id):
        import asyncio

        (self.marks / f"{request_id}.start").touch()
        await asyncio.sleep(self.seconds)
        (self.marks / f"{request_id}.end").touch()
        return {"slept": self.seconds}


class Counted:
    """Does almost nothing; every execution leaves ``<marks>/<id>.run.<random>``."""

    def __init__(self, config):
        self.marks = Path(config["marks"])
        self.seconds = float(config.get("seconds", 0))

    def handle_async(self, payload, request_id):
        if self.seconds:
            time.sleep(self.seconds)
        (self.marks / f"{request_id}.run.{os.urandom(6).hex()}").touch()
        return {"ok": True}
