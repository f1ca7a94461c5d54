"""Session-wide real servers and the environment that points asyncgw at them."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import servers

S3_BUCKET = "asyncgw-test"
#: Tests that need several APIs name them ``<api_name>-<suffix>``.
API_SUFFIXES = ("text", "bin", "slow")
#: Queues of the per-test API names (``t`` and ten hex digits).
LEFTOVER = re.compile(r"asyncgw\.t[0-9a-f]{10}(-[a-z]+)?(\.[a-z0-9.]+)?")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The machine's RabbitMQ (started by the test command), cleared of queues that an
    interrupted earlier run left behind."""
    servers.wait_until(lambda: servers.port_open(5672), 30, "RabbitMQ on 127.0.0.1:5672")
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    leftovers = [q for q in listed.stdout.split() if LEFTOVER.fullmatch(q)]
    if leftovers:
        # A loop of its own, in a thread: this fixture may be set up inside a running loop.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, servers.delete_queues(leftovers)).result(timeout=120)
    return servers.AMQP_URL


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    """A SecantusDB server for the whole session (in memory)."""
    with servers.mongo_server() as server:
        yield f"{server.url}/asyncgw"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server for the whole session, with the test bucket created, and the AWS_*
    variables set so that aioboto3 in this process and in subprocesses find it."""
    with servers.s3_server() as server:
        env = {
            "AWS_ENDPOINT_URL": server.url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        servers.create_bucket(server.url, S3_BUCKET)
        yield server.url
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
async def api_name(amqp_url: str) -> AsyncIterator[str]:
    """A fresh API name, so tests never share a queue; its RabbitMQ queues are deleted after."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    apis = (name, *(f"{name}-{suffix}" for suffix in API_SUFFIXES))
    await servers.delete_queues([q for api in apis for q in servers.queues_of(api)], amqp_url)
