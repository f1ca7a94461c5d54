"""Stacks for end-to-end tests: the production one (real RabbitMQ, SecantusDB and moto, with
``asyncgw gateway`` and ``asyncgw worker`` as subprocesses) and the embedded one (``asyncgw up``
with no servers)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import S3_BUCKET
from tests.e2e.stack import Stack, System, embedded_env, production_env


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


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Stack]:
    """A stack with no servers, for ``asyncgw up``."""
    stack = Stack(workdir=tmp_path, env=embedded_env())
    yield stack
    stack.close()


@pytest.fixture(params=["production", "embedded"])
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[System]:
    """The scenario's system, once per backend set."""
    if request.param == "production":
        stack = request.getfixturevalue("stack")
    else:
        stack = request.getfixturevalue("local")
    yield System(str(request.param), stack)
