"""The production status store: MongoDB through PyMongo's native asyncio client. One client per
process; one document per request in ``requests``; every status move is a single conditional
``find_one_and_update`` that names the statuses it expects."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection, Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

from asyncgw.backends.records import from_document, to_document
from asyncgw.errors import BackendUnavailable, DuplicateRequest
from asyncgw.schema import Record, Status

log = logging.getLogger(__name__)


def _unavailable(exc: PyMongoError) -> BackendUnavailable:
    return BackendUnavailable("mongodb", str(exc).split(",", 1)[0] or type(exc).__name__)


class MongoStore:
    """``mongodb://host:port/database`` — the database defaults to ``asyncgw``."""

    def __init__(self, url: str, *, server_selection_timeout_s: float = 5.0) -> None:
        self._client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url,
            tz_aware=True,
            connect=False,
            serverSelectionTimeoutMS=int(server_selection_timeout_s * 1000),
            appname="asyncgw",
        )
        db = self._client.get_default_database(default="asyncgw")
        self._requests: AsyncCollection[dict[str, Any]] = db["requests"]

    async def open(self) -> None:
        try:
            await self._requests.create_index([("api", ASCENDING), ("status", ASCENDING)])
            await self._requests.create_index("expires_at", expireAfterSeconds=0)
            await self._requests.create_index(
                [("api", ASCENDING), ("idempotency_key", ASCENDING)],
                unique=True,
                partialFilterExpression={"idempotency_key": {"$exists": True}},
                name="api_idempotency_key_unique",
            )
        except ConnectionFailure as exc:
            raise _unavailable(exc) from exc

    async def close(self) -> None:
        await self._client.close()

    async def ping(self) -> None:
        try:
            await self._client.admin.command("ping")
        except PyMongoError as exc:
            raise _unavailable(exc) from exc

    async def insert(self, record: Record) -> None:
        try:
            await self._requests.insert_one(to_document(record))
        except DuplicateKeyError as exc:
            if "idempotency_key" in str(exc.details or exc):
                raise DuplicateRequest(record.idempotency_key or "") from exc
            raise
        except ConnectionFailure as exc:
            raise _unavailable(exc) from exc

    async def find_idempotent(self, api: str, key: str) -> Record | None:
        try:
            doc = await self._requests.find_one({"api": api, "idempotency_key": key})
        except ConnectionFailure as exc:
            raise _unavailable(exc) from exc
        return None if doc is None else from_document(doc)

    async def by_status(self, api: str, status: Status, limit: int = 1000) -> list[Record]:
        query = {"api": api, "status": status.value}
        try:
            cursor = self._requests.find(query).sort("created_at", ASCENDING).limit(limit)
            return [from_document(doc) async for doc in cursor]
        except ConnectionFailure as exc:
            raise _unavailable(exc) from exc

    async def get(self, request_id: str) -> Record | None:
        try:
            doc = await self._requests.find_one({"_id": request_id})
        except ConnectionFailure as exc:
            raise _unavailable(exc) from exc
        return None if doc is None else from_document(doc)

    async def transition(
        self,
        request_id: str,
        expected: Collection[Status],
        target: Status,
        *,
        started_at: datetime | None = None,
        increment_attempts: bool = False,
        fields: Mapping[str, Any] | None = None,
    ) -> bool:
        query: dict[str, Any] = {"_id": request_id, "status": {"$in": [s.value for s in expected]}}
        if started_at is not None:
            query["started_at"] = started_at
        changes: dict[str, Any] = {"status": target.value}
        unset: dict[str, Any] = {}
        for name, value in (fields or {}).items():
            if value is None:
                unset[name] = ""
            else:
                changes[name] = value
        update: dict[str, Any] = {"$set": changes}
        if unset:
            update["$unset"] = unset
        if increment_attempts:
            update["$inc"] = {"attempts": 1}
        try:
            result = await self._requests.update_one(query, update)
        except ConnectionFailure as exc:
            raise _unavailable(exc) from exc
        return result.matched_count == 1

    async def counts(self, api: str) -> dict[Status, int]:
        pipeline: list[dict[str, Any]] = [
            {"$match": {"api": api}},
            {"$group": {"_id": "$status", "n": {"$sum": 1}}},
        ]
        result = {status: 0 for status in Status}
        try:
            cursor = await self._requests.aggregate(pipeline)
            async for row in cursor:
                result[Status(row["_id"])] = int(row["n"])
        except ConnectionFailure as exc:
            raise _unavailable(exc) from exc
        return result

    async def unfinished(self) -> AsyncIterator[Record]:
        query = {"status": {"$in": [Status.IN_QUEUE.value, Status.IN_PROGRESS.value]}}
        try:
            async for doc in self._requests.find(query).sort("created_at", ASCENDING):
                yield from_document(doc)
        except ConnectionFailure as exc:
            raise _unavailable(exc) from exc
