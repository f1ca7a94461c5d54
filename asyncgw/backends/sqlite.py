"""The embedded status store: SQLite in WAL mode, driven from one dedicated thread so the event
loop never blocks and no two statements race. The same conditional transitions as MongoDB: an
``UPDATE … WHERE status IN (…)`` that returns the row it changed."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from asyncgw.errors import BackendUnavailable, DuplicateRequest
from asyncgw.periodic import Periodic
from asyncgw.schema import RECORD_FIELDS, TERMINAL, Record, Status, now

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Record fields kept in columns (indexed or binary); all others live in the JSON ``data`` column.
_COLUMNS = (
    "id",
    "api",
    "status",
    "attempts",
    "created_at",
    "expires_at",
    "idempotency_key",
    "payload",
)
_DATETIMES = frozenset({"created_at", "expires_at", "started_at", "completed_at"})
_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    api TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    idempotency_key TEXT,
    payload BLOB,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS requests_api_status ON requests (api, status, created_at);
CREATE INDEX IF NOT EXISTS requests_expires_at ON requests (expires_at);
CREATE UNIQUE INDEX IF NOT EXISTS requests_api_idempotency_key
    ON requests (api, idempotency_key) WHERE idempotency_key IS NOT NULL;
"""
#: How often expired records are deleted.
SWEEP_INTERVAL_S = 60.0


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, Status):
        return value.value
    return value


def _decode_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _row_to_record(row: sqlite3.Row) -> Record:
    values: dict[str, Any] = json.loads(row["data"])
    for name in _COLUMNS:
        values[name] = row[name]
    values["status"] = Status(values["status"])
    for name in _DATETIMES:
        if values.get(name) is not None:
            values[name] = _decode_time(values[name])
    return Record(**{k: v for k, v in values.items() if k in RECORD_FIELDS})


class SqliteStore:
    """``sqlite:///absolute/path/asyncgw.db`` (``sqlite://relative.db`` also works)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.path = Path(unquote(parts.netloc + parts.path))
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None
        self._sweeper = Periodic(SWEEP_INTERVAL_S, self.expire, "expiry sweep")

    async def _run(self, func: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        if db is None:
            raise BackendUnavailable("sqlite", "store is not open")

        def call() -> T:
            try:
                with db:
                    return func(db)
            except sqlite3.OperationalError as exc:
                raise BackendUnavailable("sqlite", str(exc)) from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            db.isolation_level = "DEFERRED"
            return db

        self._db = await asyncio.get_running_loop().run_in_executor(self._executor, connect)
        await self.expire()
        self._sweeper.start()

    async def expire(self, at: datetime | None = None) -> int:
        """Delete records whose ``expires_at`` has passed; return how many."""
        cutoff = _encode(at or now())
        return await self._run(
            lambda db: db.execute("DELETE FROM requests WHERE expires_at <= ?", (cutoff,)).rowcount
        )

    async def close(self) -> None:
        await self._sweeper.stop()
        db, self._db = self._db, None
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, db.close)

    async def ping(self) -> None:
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    async def insert(self, record: Record) -> None:
        data = {
            name: _encode(getattr(record, name))
            for name in RECORD_FIELDS - set(_COLUMNS)
            if getattr(record, name) is not None
        }
        row = (
            record.id,
            record.api,
            record.status.value,
            record.attempts,
            _encode(record.created_at),
            _encode(record.expires_at),
            record.idempotency_key,
            record.payload,
            json.dumps(data),
        )
        try:
            await self._run(
                lambda db: db.execute(
                    "INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row
                )
            )
        except sqlite3.IntegrityError as exc:
            if "idempotency_key" in str(exc):
                raise DuplicateRequest(record.idempotency_key or "") from exc
            raise

    async def find_idempotent(self, api: str, key: str) -> Record | None:
        row = await self._run(
            lambda db: db.execute(
                "SELECT * FROM requests WHERE api = ? AND idempotency_key = ?", (api, key)
            ).fetchone()
        )
        return None if row is None else _row_to_record(row)

    async def by_status(self, api: str, status: Status, limit: int = 1000) -> list[Record]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT * FROM requests WHERE api = ? AND status = ? ORDER BY created_at LIMIT ?",
                (api, status.value, limit),
            ).fetchall()
        )
        return [_row_to_record(row) for row in rows]

    async def get(self, request_id: str) -> Record | None:
        row = await self._run(
            lambda db: db.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
        )
        return None if row is None else _row_to_record(row)

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
        columns: dict[str, Any] = {}
        data_expr = "data"
        data_params: list[Any] = []
        for name, value in (fields or {}).items():
            if name in _COLUMNS:
                columns[name] = _encode(value)
            else:
                if not name.isidentifier():
                    raise ValueError(f"bad field name {name!r}")
                # Whole values replace whole values, as MongoDB's $set and $unset do.
                if value is None:
                    data_expr = f"json_remove({data_expr}, '$.{name}')"
                else:
                    data_expr = f"json_set({data_expr}, '$.{name}', json(?))"
                    data_params.append(json.dumps(_encode(value)))
        sets = ["status = ?", "attempts = attempts + ?", f"data = {data_expr}"]
        params: list[Any] = [target.value, 1 if increment_attempts else 0, *data_params]
        for name, value in columns.items():
            sets.append(f"{name} = ?")
            params.append(value)
        marks = ", ".join("?" for _ in expected)
        sql = f"UPDATE requests SET {', '.join(sets)} WHERE id = ? AND status IN ({marks})"
        params += [request_id, *(s.value for s in expected)]
        if started_at is not None:
            sql += " AND json_extract(data, '$.started_at') = ?"
            params.append(_encode(started_at))
        count: int = await self._run(lambda db: db.execute(sql, params).rowcount)
        return count == 1

    async def counts(self, api: str) -> dict[Status, int]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT status, COUNT(*) AS n FROM requests WHERE api = ? GROUP BY status", (api,)
            ).fetchall()
        )
        result = {status: 0 for status in Status}
        for row in rows:
            result[Status(row["status"])] = int(row["n"])
        return result

    async def count(self, api: str, status: Status) -> int:
        row = await self._run(
            lambda db: db.execute(
                "SELECT COUNT(*) FROM requests WHERE api = ? AND status = ?", (api, status.value)
            ).fetchone()
        )
        return int(row[0])

    async def oldest(self, api: str, status: Status) -> datetime | None:
        row = await self._run(
            lambda db: db.execute(
                "SELECT MIN(created_at) FROM requests WHERE api = ? AND status = ?",
                (api, status.value),
            ).fetchone()
        )
        return _decode_time(row[0])

    async def unfinished(self) -> AsyncIterator[Record]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT * FROM requests WHERE status IN (?, ?) ORDER BY created_at",
                (Status.IN_QUEUE.value, Status.IN_PROGRESS.value),
            ).fetchall()
        )
        for row in rows:
            yield _row_to_record(row)

    async def undelivered_webhooks(self) -> AsyncIterator[Record]:
        marks = ", ".join("?" for _ in TERMINAL)
        sql = (
            f"SELECT * FROM requests WHERE status IN ({marks})"
            " AND json_extract(data, '$.webhook_url') IS NOT NULL"
            " AND coalesce(json_extract(data, '$.webhook.outcome'), 'pending') = 'pending'"
        )
        params = [s.value for s in TERMINAL]
        rows = await self._run(lambda db: db.execute(sql, params).fetchall())
        for row in rows:
            yield _row_to_record(row)
