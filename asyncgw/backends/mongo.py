"""The production status store: MongoDB through PyMongo's native asyncio client. One client per
process; one document per request in ``requests``; every status move is a conditional update
that names the statuses it expects.

Inserts and status moves made at the same time share round trips (``batching.py``): concurrent
inserts go as one unordered ``insert_many`` and concurrent moves as one ``bulk_write``. Each caller
still learns its own outcome: an insert from the write errors, which name their index, and a move
from the bulk's matched count, or, when some move of the bulk matched nothing, from the write
token each move sets in ``_w``."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Collection, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)

from asyncgw.backends.batching import Batcher
from asyncgw.backends.records import from_document, to_document
from asyncgw.errors import BackendUnavailable, DuplicateRequest
from asyncgw.schema import TERMINAL, Record, Status

log = logging.getLogger(__name__)


#: Server codes of a node that is shutting down, stepping down or not yet primary.
_TRANSIENT_CODES = frozenset({91, 189, 10107, 11600, 11602, 13435, 13436})


def _transient(exc: PyMongoError) -> bool:
    """Whether the error says the server is out of reach for now, not that the request is wrong."""
    if isinstance(exc, ConnectionFailure):
        return True
    if isinstance(exc, OperationFailure):
        return exc.code in _TRANSIENT_CODES or exc.has_error_label("RetryableWriteError")
    return False


@contextlib.contextmanager
def _guard() -> Iterator[None]:
    """Turn the errors of an unreachable server into ``BackendUnavailable``."""
    try:
        yield
    except DuplicateKeyError:
        raise
    except PyMongoError as exc:
        if _transient(exc):
            detail = str(exc).split(",", 1)[0] or type(exc).__name__
            raise BackendUnavailable("mongodb", detail) from exc
        raise


def _insert_error(doc: Mapping[str, Any], error: Mapping[str, Any]) -> Exception:
    """The exception a lone ``insert_one`` of ``doc`` would have raised for this write error."""
    code = error.get("code")
    message = str(error.get("errmsg", ""))
    if code == 11000:
        if "idempotency_key" in message:
            return DuplicateRequest(str(doc.get("idempotency_key", "")))
        return DuplicateKeyError(message, code, dict(error))
    return OperationFailure(message, code, dict(error))


#: A status move: the filter (naming the request by ``_id``) and the update.
_Move = tuple[dict[str, Any], dict[str, Any]]


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
        self._inserts: Batcher[dict[str, Any], None] = Batcher(
            self._insert_many, key=lambda doc: doc["_id"]
        )
        self._moves: Batcher[_Move, bool] = Batcher(
            self._bulk_move, key=lambda move: move[0]["_id"]
        )

    async def open(self) -> None:
        with _guard():
            # (api, status) queries use its prefix; created_at orders the backlog.
            await self._requests.create_index(
                [("api", ASCENDING), ("status", ASCENDING), ("created_at", ASCENDING)]
            )
            await self._requests.create_index("expires_at", expireAfterSeconds=0)
            await self._requests.create_index(
                [("api", ASCENDING), ("idempotency_key", ASCENDING)],
                unique=True,
                partialFilterExpression={"idempotency_key": {"$exists": True}},
                name="api_idempotency_key_unique",
            )

    async def close(self) -> None:
        await self._client.close()

    async def ping(self) -> None:
        try:
            await self._client.admin.command("ping")
        except PyMongoError as exc:
            raise BackendUnavailable("mongodb", str(exc).split(",", 1)[0]) from exc

    async def insert(self, record: Record) -> None:
        await self._inserts.submit(to_document(record))

    async def _insert_many(self, docs: list[dict[str, Any]]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = [None] * len(docs)
        try:
            with _guard():
                await self._requests.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                index = error["index"]
                outcomes[index] = _insert_error(docs[index], error)
        return outcomes

    async def find_idempotent(self, api: str, key: str) -> Record | None:
        with _guard():
            doc = await self._requests.find_one({"api": api, "idempotency_key": key})
        return None if doc is None else from_document(doc)

    async def by_status(self, api: str, status: Status, limit: int = 1000) -> list[Record]:
        query = {"api": api, "status": status.value}
        with _guard():
            cursor = self._requests.find(query).sort("created_at", ASCENDING).limit(limit)
            return [from_document(doc) async for doc in cursor]

    async def get(self, request_id: str) -> Record | None:
        with _guard():
            doc = await self._requests.find_one({"_id": request_id})
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
        return await self._moves.submit((query, update))

    async def _bulk_move(self, moves: list[_Move]) -> list[bool | BaseException]:
        if len(moves) == 1:
            query, update = moves[0]
            with _guard():
                result = await self._requests.update_one(query, update)
            return [result.matched_count == 1]
        tokens = [secrets.token_hex(8) for _ in moves]
        operations = [
            UpdateOne(query, {**update, "$set": {**update["$set"], "_w": token}})
            for (query, update), token in zip(moves, tokens, strict=True)
        ]
        with _guard():
            bulk = await self._requests.bulk_write(operations, ordered=False)
            if bulk.matched_count == len(moves):
                return [True] * len(moves)
            ids = [query["_id"] for query, _ in moves]
            written = {
                doc["_id"]: doc.get("_w")
                async for doc in self._requests.find({"_id": {"$in": ids}}, {"_w": True})
            }
        return [written.get(i) == token for i, token in zip(ids, tokens, strict=True)]

    async def counts(self, api: str) -> dict[Status, int]:
        pipeline: list[dict[str, Any]] = [
            {"$match": {"api": api}},
            {"$group": {"_id": "$status", "n": {"$sum": 1}}},
        ]
        result = {status: 0 for status in Status}
        with _guard():
            async for row in await self._requests.aggregate(pipeline):
                result[Status(row["_id"])] = int(row["n"])
        return result

    async def count(self, api: str, status: Status) -> int:
        with _guard():
            return await self._requests.count_documents({"api": api, "status": status.value})

    async def oldest(self, api: str, status: Status) -> datetime | None:
        with _guard():
            doc = await self._requests.find_one(
                {"api": api, "status": status.value},
                projection={"created_at": True},
                sort=[("created_at", ASCENDING)],
            )
        if doc is None:
            return None
        created: datetime = doc["created_at"]
        return created if created.tzinfo else created.replace(tzinfo=UTC)

    async def unfinished(self) -> AsyncIterator[Record]:
        query = {"status": {"$in": [Status.IN_QUEUE.value, Status.IN_PROGRESS.value]}}
        with _guard():
            async for doc in self._requests.find(query).sort("created_at", ASCENDING):
                yield from_document(doc)

    async def undelivered_webhooks(self) -> AsyncIterator[Record]:
        query = {
            "status": {"$in": [s.value for s in TERMINAL]},
            "webhook_url": {"$exists": True},
            "webhook.outcome": {"$in": [None, "pending"]},
        }
        with _guard():
            async for doc in self._requests.find(query):
                yield from_document(doc)
