"""Real servers for the tests, started as subprocesses on free loopback ports: SecantusDB
(MongoDB wire protocol) and moto (S3). RabbitMQ is the machine's own, on 127.0.0.1:5672."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

AMQP_URL = os.environ.get("ASYNCGW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
BIN = Path(sys.executable).parent
#: Delay queues are numbered by quarter octaves of milliseconds: up to ~2**32 ms.
DELAY_BUCKETS = 130


def queues_of(api: str) -> list[str]:
    """Every queue asyncgw may declare for an API: work, dead letters, delays, and the same for
    its webhook deliveries. Quorum queues are costly to a small broker: none may be left over."""
    names = []
    for channel in (api, f"{api}.webhooks"):
        names += [f"asyncgw.{channel}", f"asyncgw.{channel}.dead"]
        names += [f"asyncgw.{channel}.delay.{bucket}" for bucket in range(DELAY_BUCKETS)]
    return names


async def delete_queues(names: list[str], amqp_url: str = AMQP_URL) -> None:
    """Delete these queues (deleting a queue that does not exist is no error)."""
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for queue in names:
            await channel.queue_delete(queue)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: object, timeout_s: float, what: str) -> None:
    """Poll ``check()`` until it returns truthy or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout_s}s (last error: {last})")


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    url: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def mongo_server(storage_path: str = ":memory:", port: int | None = None) -> Iterator[Server]:
    """A SecantusDB server; ``url`` is a mongodb:// URL."""
    from pymongo import MongoClient

    port = port or free_port()
    process = subprocess.Popen(
        [
            str(BIN / "secantusd-py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            storage_path,
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.DEVNULL,
    )
    server = Server(process, port, f"mongodb://127.0.0.1:{port}")
    try:
        client: MongoClient[dict[str, object]] = MongoClient(
            server.url, serverSelectionTimeoutMS=500, directConnection=True
        )
        wait_until(lambda: client.admin.command("ping"), 60, "SecantusDB")
        client.close()
        yield server
    finally:
        server.stop()


_MOTO = """
import sys, time
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]))
server.start()
while True:
    time.sleep(3600)
"""


@contextlib.contextmanager
def s3_server() -> Iterator[Server]:
    """A moto S3 server; ``url`` is its http:// endpoint."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", _MOTO, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Server(process, port, f"http://127.0.0.1:{port}")
    try:
        wait_until(
            lambda: urllib.request.urlopen(f"{server.url}/moto-api/", timeout=1).status == 200,
            60,
            "moto",
        )
        yield server
    finally:
        server.stop()


def create_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)
