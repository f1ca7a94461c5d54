"""Fixtures for the backend contract suites: each interface's fixture is parametrised over every
implementation of it, production and embedded alike, so one suite checks them all.

The embedded backends (``memory``, ``sqlite``) are imported inside the fixtures, so the production
ones run even where those modules are missing or broken."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pymongo import AsyncMongoClient

from asyncgw.backends.interfaces import BlobStore, Queue, StatusStore
from tests.conftest import S3_BUCKET

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], expected: T, timeout_s: float = 10.0) -> T:
    """Poll ``probe()`` until it returns ``expected`` or the deadline passes; return the last
    value seen (so the caller's assert shows it)."""
    deadline = time.monotonic() + timeout_s
    value = await probe()
    while value != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        value = await probe()
    return value


# --- queue -------------------------------------------------------------------------------------


@pytest.fixture(params=["rabbitmq", "memory"])
def queue_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def queue(queue_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Queue]:
    q: Queue
    if queue_kind == "rabbitmq":
        from asyncgw.backends.rabbitmq import RabbitQueue

        q = RabbitQueue(request.getfixturevalue("amqp_url"))
    else:
        from asyncgw.backends.memory import MemoryQueue

        q = MemoryQueue()
    await q.open()
    try:
        yield q
    finally:
        await q.close()


# --- status store ------------------------------------------------------------------------------


@pytest.fixture(params=["mongodb", "sqlite"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(
    store_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StatusStore]:
    s: StatusStore
    database: str | None = None
    server = ""
    if store_kind == "mongodb":
        from asyncgw.backends.mongo import MongoStore

        server = str(request.getfixturevalue("mongo_url")).rsplit("/", 1)[0]
        database = f"t{uuid.uuid4().hex}"
        s = MongoStore(f"{server}/{database}")
    else:
        from asyncgw.backends.sqlite import SqliteStore

        s = SqliteStore(f"sqlite:///{tmp_path}/asyncgw.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()
        if database is not None:
            client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(server)
            try:
                await client.drop_database(database)
            finally:
                await client.close()


# --- blob store --------------------------------------------------------------------------------


@pytest.fixture(params=["s3", "file"])
def blobs_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def blobs(
    blobs_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[BlobStore]:
    b: BlobStore
    if blobs_kind == "s3":
        from asyncgw.backends.s3 import S3Blobs

        request.getfixturevalue("s3_endpoint")  # sets AWS_ENDPOINT_URL and credentials
        b = S3Blobs(f"s3://{S3_BUCKET}/{uuid.uuid4().hex}", part_size=5 * 2**20)
    else:
        from asyncgw.backends.files import FileBlobs

        b = FileBlobs(f"file://{tmp_path}/blobs")
    await b.open()
    try:
        yield b
    finally:
        await b.close()
