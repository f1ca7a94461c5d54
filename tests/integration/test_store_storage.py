"""How each status store lays out its data: the indexes of SPEC §7 and expiry. These differ by
implementation on purpose (MongoDB's TTL monitor deletes expired records; SQLite sweeps)."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from asyncgw.backends.mongo import MongoStore
from asyncgw.backends.sqlite import SqliteStore
from asyncgw.schema import Record, Status, now


def record(api: str = "iris", **fields: Any) -> Record:
    created = now()
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "api": api,
        "status": Status.IN_QUEUE,
        "created_at": created,
        "expires_at": created + timedelta(days=1),
        "content_type": "application/json",
        "payload_size": 2,
        **fields,
    }
    return Record(**values)


async def test_mongodb_creates_the_indexes_idempotently(mongo_url: str) -> None:
    server = mongo_url.rsplit("/", 1)[0]
    database = f"t{uuid.uuid4().hex}"
    for _ in range(2):  # opening again must not fail on the existing indexes
        store = MongoStore(f"{server}/{database}")
        await store.open()
        await store.close()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(server)
    try:
        indexes = {
            tuple(spec["key"].items()): spec
            async for spec in await client[database]["requests"].list_indexes()
        }
        assert (("api", 1), ("status", 1), ("created_at", 1)) in indexes
        ttl = indexes[(("expires_at", 1),)]
        assert ttl["expireAfterSeconds"] == 0
        unique = indexes[(("api", 1), ("idempotency_key", 1))]
        assert unique["unique"] is True
        assert unique["partialFilterExpression"] == {"idempotency_key": {"$exists": True}}
    finally:
        await client.drop_database(database)
        await client.close()


async def test_sqlite_creates_the_indexes(tmp_path: Path) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path}/a.db")
    await store.open()
    await store.close()
    db = sqlite3.connect(tmp_path / "a.db")
    try:
        indexes = {
            name: [col[2] for col in db.execute(f"PRAGMA index_info({name})")]
            for _, name, *_ in db.execute("PRAGMA index_list(requests)")
        }
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()
    assert indexes["requests_api_status"] == ["api", "status", "created_at"]
    assert indexes["requests_expires_at"] == ["expires_at"]
    assert indexes["requests_api_idempotency_key"] == ["api", "idempotency_key"]


async def test_sqlite_expiry_deletes_only_expired_records(tmp_path: Path) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path}/a.db")
    await store.open()
    try:
        old = record(expires_at=now() - timedelta(seconds=1))
        fresh = record()
        await store.insert(old)
        await store.insert(fresh)
        assert await store.expire() == 1
        assert await store.get(old.id) is None
        assert await store.get(fresh.id) is not None
    finally:
        await store.close()


async def test_sqlite_keeps_records_across_reopen(tmp_path: Path) -> None:
    kept = record(payload=b"{}")
    store = SqliteStore(f"sqlite:///{tmp_path}/a.db")
    await store.open()
    await store.insert(kept)
    await store.close()
    store = SqliteStore(f"sqlite:///{tmp_path}/a.db")
    await store.open()
    try:
        again = await store.get(kept.id)
        assert again == kept
    finally:
        await store.close()
