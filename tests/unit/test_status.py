"""Statuses and their transitions, ids, timestamps, the record view and the store documents."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from asyncgw.backends.records import from_document, to_document
from asyncgw.schema import (
    TERMINAL,
    Record,
    Status,
    can_transition,
    new_id,
    now,
    record_view,
    rfc3339,
    sources,
)

S = Status

#: The intended table (SPEC §4), written out independently of ``schema.TRANSITIONS``.
ALLOWED = {
    (S.IN_QUEUE, S.IN_PROGRESS),
    (S.IN_QUEUE, S.FAILED),
    (S.IN_QUEUE, S.CANCELED),
    (S.IN_PROGRESS, S.IN_PROGRESS),
    (S.IN_PROGRESS, S.IN_QUEUE),
    (S.IN_PROGRESS, S.COMPLETED),
    (S.IN_PROGRESS, S.FAILED),
    (S.IN_PROGRESS, S.CANCELED),
}


@pytest.mark.parametrize(
    ("current", "target"),
    list(itertools.product(Status, Status)),
    ids=lambda s: s.value,
)
def test_can_transition_matches_table(current: Status, target: Status) -> None:
    assert can_transition(current, target) is ((current, target) in ALLOWED)


@pytest.mark.parametrize("current", sorted(TERMINAL), ids=lambda s: s.value)
def test_terminal_statuses_go_nowhere(current: Status) -> None:
    assert [t for t in Status if can_transition(current, t)] == []


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (S.IN_QUEUE, {S.IN_PROGRESS}),
        (S.IN_PROGRESS, {S.IN_QUEUE, S.IN_PROGRESS}),
        (S.COMPLETED, {S.IN_PROGRESS}),
        (S.FAILED, {S.IN_QUEUE, S.IN_PROGRESS}),
        (S.CANCELED, {S.IN_QUEUE, S.IN_PROGRESS}),
    ],
    ids=lambda v: v.value if isinstance(v, Status) else "",
)
def test_sources(target: Status, expected: set[Status]) -> None:
    got = sources(target)
    assert isinstance(got, tuple)
    assert len(got) == len(set(got))
    assert set(got) == expected
    assert all(s not in TERMINAL for s in got)


def test_terminal_set() -> None:
    assert frozenset({S.COMPLETED, S.FAILED, S.CANCELED}) == TERMINAL


@pytest.mark.parametrize(
    ("status", "value"),
    [
        (S.IN_QUEUE, "in_queue"),
        (S.IN_PROGRESS, "in_progress"),
        (S.COMPLETED, "completed"),
        (S.FAILED, "failed"),
        (S.CANCELED, "canceled"),
    ],
)
def test_status_values(status: Status, value: str) -> None:
    assert status.value == value
    assert Status(value) is status


def test_new_id_is_uuid4() -> None:
    value = new_id()
    parsed = uuid.UUID(value)
    assert parsed.version == 4
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == value  # canonical, lower-case, hyphenated form


def test_new_id_unique() -> None:
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(uuid.UUID(i).version == 4 for i in ids)


def test_now_is_utc_at_millisecond_precision() -> None:
    t = now()
    assert t.tzinfo is not None
    assert t.utcoffset() == timedelta(0)
    assert t.microsecond % 1000 == 0
    assert abs(datetime.now(UTC) - t) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), "2026-01-02T03:04:05.678Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 678000), "2026-01-02T03:04:05.678Z"),  # naive = UTC
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05.000Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 678999, tzinfo=UTC), "2026-01-02T03:04:05.678Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 999, tzinfo=UTC), "2026-01-02T03:04:05.000Z"),
        (
            datetime(2026, 1, 2, 5, 4, 5, 1000, tzinfo=timezone(timedelta(hours=2))),
            "2026-01-02T03:04:05.001Z",
        ),
        (
            datetime(2026, 1, 1, 22, 0, 0, tzinfo=timezone(timedelta(hours=-5))),
            "2026-01-02T03:00:00.000Z",
        ),
    ],
)
def test_rfc3339(value: datetime | None, expected: str | None) -> None:
    assert rfc3339(value) == expected


T0 = datetime(2026, 3, 1, 12, 0, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=1, milliseconds=250)
T2 = T0 + timedelta(seconds=3, milliseconds=500)
RID = "6f1c2a4e-1b7d-4c3e-9a8b-0123456789ab"


def make_record(**overrides: Any) -> Record:
    values: dict[str, Any] = {
        "id": RID,
        "api": "iris",
        "status": S.IN_QUEUE,
        "created_at": T0,
        "expires_at": T0 + timedelta(days=7),
        "content_type": "application/json",
        "payload_size": 7,
    }
    values.update(overrides)
    return Record(**values)


def test_record_view_in_queue() -> None:
    view = record_view(make_record())
    assert view == {
        "id": RID,
        "api": "iris",
        "status": "in_queue",
        "created_at": "2026-03-01T12:00:00.000Z",
        "started_at": None,
        "completed_at": None,
        "timestamp": None,
        "attempts": 0,
    }
    json.dumps(view)


@pytest.mark.parametrize(
    ("overrides", "present", "absent"),
    [
        pytest.param(
            {"status": S.IN_PROGRESS, "started_at": T1, "attempts": 1},
            {},
            {"result", "result_url", "error", "webhook"},
            id="in_progress",
        ),
        pytest.param(
            {
                "status": S.COMPLETED,
                "started_at": T1,
                "completed_at": T2,
                "attempts": 1,
                "result_json": '{"label": "setosa", "p": [0.9, 0.1]}',
            },
            {
                "result": {"label": "setosa", "p": [0.9, 0.1]},
                "result_url": f"/iris/{RID}/result",
            },
            {"error", "webhook"},
            id="completed-json",
        ),
        pytest.param(
            {"status": S.COMPLETED, "completed_at": T2, "result_json": "null"},
            {"result": None, "result_url": f"/iris/{RID}/result"},
            {"error", "webhook"},
            id="completed-json-null",
        ),
        pytest.param(
            {
                "status": S.COMPLETED,
                "completed_at": T2,
                "result_content_type": "image/png",
                "result_size": 10,
            },
            {"result_url": f"/iris/{RID}/result"},
            {"result", "error", "webhook"},
            id="completed-binary",
        ),
        pytest.param(
            {
                "status": S.FAILED,
                "completed_at": T2,
                "result_json": "[1]",
                "error": {"type": "ValueError", "message": "boom"},
            },
            {"error": {"type": "ValueError", "message": "boom"}},
            {"result", "result_url", "webhook"},
            id="failed",
        ),
        pytest.param(
            {
                "status": S.CANCELED,
                "completed_at": T2,
                "webhook": {"url": "https://example.com/h", "attempts": 1, "last_status": 200},
            },
            {"webhook": {"url": "https://example.com/h", "attempts": 1, "last_status": 200}},
            {"result", "result_url", "error"},
            id="canceled-webhook",
        ),
        pytest.param(
            {"status": S.IN_QUEUE, "webhook_url": "https://example.com/h"},
            {},
            {"result", "result_url", "error", "webhook", "webhook_url"},
            id="webhook-url-only-not-shown",
        ),
    ],
)
def test_record_view_optional_fields(
    overrides: dict[str, Any], present: dict[str, Any], absent: set[str]
) -> None:
    record = make_record(**overrides)
    view = record_view(record)
    for key, value in present.items():
        assert key in view
        assert view[key] == value
    assert not (absent & view.keys())
    assert view["status"] == record.status.value
    assert view["timestamp"] == view["completed_at"] == rfc3339(record.completed_at)
    assert view["started_at"] == rfc3339(record.started_at)
    assert view["attempts"] == record.attempts
    # internal fields never leak into the view
    assert not ({"payload", "payload_key", "expires_at", "idempotency_key"} & view.keys())
    json.dumps(view)


def test_record_view_timestamp_is_completed_at() -> None:
    view = record_view(make_record(status=S.COMPLETED, started_at=T1, completed_at=T2))
    assert view["timestamp"] == "2026-03-01T12:00:03.500Z"
    assert view["started_at"] == "2026-03-01T12:00:01.250Z"


FULL = make_record(
    status=S.COMPLETED,
    payload=b"\x00payload",
    payload_key="iris/x/payload",
    started_at=T1,
    completed_at=T2,
    attempts=2,
    result_json='{"a": 1}',
    result_content_type="application/json",
    result_size=8,
    error={"type": "ValueError", "message": "first attempt"},
    webhook_url="https://example.com/h",
    webhook={"url": "https://example.com/h", "attempts": 1},
    idempotency_key="k-1",
)


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(make_record(), id="minimal"),
        pytest.param(make_record(status=S.IN_PROGRESS, started_at=T1, attempts=1), id="started"),
        pytest.param(FULL, id="full"),
    ],
)
def test_document_round_trip(record: Record) -> None:
    doc = to_document(record)
    assert doc["_id"] == record.id
    assert "id" not in doc
    assert type(doc["status"]) is str
    assert doc["status"] == record.status.value
    assert None not in doc.values()
    assert from_document(doc) == record


def test_document_omits_none_fields() -> None:
    doc = to_document(make_record())
    assert set(doc) == {
        "_id",
        "api",
        "status",
        "created_at",
        "expires_at",
        "content_type",
        "payload_size",
        "attempts",
    }


def test_document_keeps_values() -> None:
    doc = to_document(FULL)
    assert doc["payload"] == b"\x00payload"
    assert doc["started_at"] == T1
    assert doc["error"] == {"type": "ValueError", "message": "first attempt"}
    assert doc["idempotency_key"] == "k-1"
    assert doc["attempts"] == 2


def test_from_document_naive_datetimes_become_utc() -> None:
    naive = datetime(2026, 3, 1, 12, 0, 0, 123000)
    doc = {
        "_id": RID,
        "api": "iris",
        "status": "completed",
        "created_at": naive,
        "expires_at": naive + timedelta(days=7),
        "completed_at": naive + timedelta(seconds=2),
        "content_type": "text/plain",
        "payload_size": 3,
    }
    record = from_document(doc)
    assert record.status is S.COMPLETED
    for t in (record.created_at, record.expires_at, record.completed_at):
        assert t is not None
        assert t.tzinfo is UTC
    assert record.created_at == naive.replace(tzinfo=UTC)
    assert record.completed_at == (naive + timedelta(seconds=2)).replace(tzinfo=UTC)
    assert record.started_at is None
    assert rfc3339(record.created_at) == "2026-03-01T12:00:00.123Z"


def test_from_document_ignores_unknown_keys() -> None:
    doc = {**to_document(make_record()), "_v": 3, "shard": "a"}
    assert from_document(doc) == make_record()


def test_from_document_rejects_unknown_status() -> None:
    with pytest.raises(ValueError):
        from_document({**to_document(make_record()), "status": "done"})
