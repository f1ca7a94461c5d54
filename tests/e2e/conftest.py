"""The production stack for end-to-end tests: real RabbitMQ, SecantusDB and moto, with
``asyncgw gateway`` and ``asyncgw worker`` run as subprocesses."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import S3_BUCKET
from tests.e2e.stack import Stack, production_env


@pytest.fixture
def stack(tmp_path: Path, amqp_url: str, mongo_url: str, s3_endpoint: str) -> Iterator[Stack]:
    env = production_env(amqp_url, mongo_url, s3_endpoint, S3_BUCKET, uuid.uuid4().hex)
    stack = Stack(workdir=tmp_path, env=env)
    yield stack
    stack.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
