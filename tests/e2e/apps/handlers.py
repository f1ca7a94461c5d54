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
