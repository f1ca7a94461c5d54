"""The ``StatusStore`` contract, run against every implementation (``store`` fixture)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from asyncgw.backends.interfaces import StatusStore
from asyncgw.errors import DuplicateRequest
from asyncgw.schema import TERMINAL, Record, Status, new_id, now, payload_key, sources

API = "contract"
OTHER_API = "other"
DATETIME_FIELDS = ("created_at", "expires_at", "started_at", "completed_at")


def record(status: Status = Status.IN_QUEUE, *, api: str = API, **changes: Any) -> Record:
    created = now()
    base = Record(
        id=new_id(),
        api=api,
        status=status,
        created_at=created,
        expires_at=created + timedelta(days=7),
        content_type="application/json",
        payload_size=5,
        payload=b"hello",
    )
    return dataclasses.replace(base, **changes)


def assert_utc(r: Record) -> None:
    for name in DATETIME_FIELDS:
        value = getattr(r, name)
        if value is not None:
            assert value.utcoffset() == timedelta(0), f"{name} is not aware UTC: {value!r}"


async def test_ping(store: StatusStore) -> None:
    await store.ping()


async def test_insert_get_round_trips_every_field(store: StatusStore) -> None:
    t = now()
    request_id = new_id()
    naive_created = t.astimezone(UTC).replace(tzinfo=None)
    local = timezone(timedelta(hours=2))
    sent = Record(
        id=request_id,
        api=API,
        status=Status.IN_PROGRESS,
        created_at=naive_created,  # naive: taken as UTC
        expires_at=(t + timedelta(days=7)).astimezone(local),  # aware, not UTC
        content_type="application/octet-stream",
        payload_size=7,
        payload=b"\x00\x01\xfe\xff\n\r\x00",
        payload_key=payload_key(API, request_id),
        started_at=t + timedelta(milliseconds=1),
        completed_at=t + timedelta(seconds=2, milliseconds=345),
        attempts=3,
        result_json='{"answer": [1, 2.5, "three", null, {"nested": true}]}',
        result_content_type="application/json",
        result_size=52,
        error={"type": "HandlerError", "message": "boom: ünïcode ✓"},
        webhook_url="https://example.test/hook?x=1",
        webhook={"attempts": 2, "last_status": 500, "delivered": False, "at": "2026-01-01"},
        idempotency_key="idem-1",
    )
    await store.insert(sent)
    got = await store.get(request_id)
    assert got is not None
    expected = dataclasses.replace(
        sent, created_at=naive_created.replace(tzinfo=UTC), expires_at=sent.expires_at
    )
    assert got == expected
    assert_utc(got)
    assert isinstance(got.status, Status)
    assert isinstance(got.payload, bytes)


async def test_insert_get_minimal_record_leaves_optional_fields_unset(store: StatusStore) -> None:
    sent = record(payload=None)
    await store.insert(sent)
    got = await store.get(sent.id)
    assert got == sent
    assert got is not None
    assert got.attempts == 0
    for name in ("payload", "payload_key", "started_at", "result_json", "error", "webhook"):
        assert getattr(got, name) is None
    assert_utc(got)


async def test_get_unknown_is_none(store: StatusStore) -> None:
    assert await store.get(new_id()) is None


async def test_insert_duplicate_id_raises_and_keeps_first(store: StatusStore) -> None:
    first = record()
    await store.insert(first)
    second = dataclasses.replace(first, api=OTHER_API, status=Status.FAILED, payload=b"other")
    with pytest.raises(Exception):  # noqa: B017 - which exception is the store's own
        await store.insert(second)
    assert await store.get(first.id) == first


async def test_insert_duplicate_idempotency_key_in_same_api_raises(store: StatusStore) -> None:
    first = record(idempotency_key="same")
    await store.insert(first)
    with pytest.raises(Exception):  # noqa: B017
        await store.insert(record(idempotency_key="same"))
    await store.insert(record(api=OTHER_API, idempotency_key="same"))  # other API: fine
    await store.insert(record())  # no key: any number
    await store.insert(record())
    assert await store.get(first.id) == first


async def test_transition_only_from_expected_statuses(store: StatusStore) -> None:
    r = record()
    await store.insert(r)
    assert await store.transition(r.id, [Status.IN_PROGRESS], Status.COMPLETED) is False
    assert await store.transition(r.id, [], Status.IN_PROGRESS) is False
    assert await store.get(r.id) == r

    started = now()
    assert (
        await store.transition(
            r.id, [Status.IN_QUEUE], Status.IN_PROGRESS, fields={"started_at": started}
        )
        is True
    )
    moved = await store.get(r.id)
    assert moved == dataclasses.replace(r, status=Status.IN_PROGRESS, started_at=started)
    assert moved is not None
    assert_utc(moved)

    done = now()
    assert (
        await store.transition(
            r.id,
            [Status.IN_QUEUE, Status.IN_PROGRESS],
            Status.COMPLETED,
            fields={
                "completed_at": done,
                "result_json": '{"ok": true}',
                "result_content_type": "application/json",
                "result_size": 12,
            },
        )
        is True
    )
    assert await store.get(r.id) == dataclasses.replace(
        moved,
        status=Status.COMPLETED,
        completed_at=done,
        result_json='{"ok": true}',
        result_content_type="application/json",
        result_size=12,
    )


async def test_transition_increments_attempts(store: StatusStore) -> None:
    r = record()
    await store.insert(r)

    async def attempts() -> int:
        got = await store.get(r.id)
        assert got is not None
        return got.attempts

    assert await store.transition(
        r.id, [Status.IN_QUEUE], Status.IN_PROGRESS, increment_attempts=True
    )
    assert await attempts() == 1
    assert await store.transition(r.id, [Status.IN_PROGRESS], Status.IN_QUEUE)
    assert await attempts() == 1
    assert await store.transition(
        r.id, [Status.IN_QUEUE], Status.IN_PROGRESS, increment_attempts=True
    )
    assert await attempts() == 2
    # A failed condition does not count an attempt.
    assert not await store.transition(
        r.id, [Status.IN_QUEUE], Status.IN_PROGRESS, increment_attempts=True
    )
    assert await attempts() == 2


async def test_transition_started_at_condition(store: StatusStore) -> None:
    first = now() - timedelta(minutes=5)
    r = record(status=Status.IN_PROGRESS, started_at=first, attempts=1)
    await store.insert(r)
    # A redelivered message takes over: a new attempt with a new start time.
    second = now()
    assert await store.transition(
        r.id,
        [Status.IN_PROGRESS],
        Status.IN_PROGRESS,
        started_at=first,
        increment_attempts=True,
        fields={"started_at": second},
    )
    # The old attempt can no longer finish the request ...
    assert not await store.transition(
        r.id, [Status.IN_PROGRESS], Status.COMPLETED, started_at=first
    )
    assert await store.get(r.id) == dataclasses.replace(r, started_at=second, attempts=2)
    # ... right start time but wrong status does not move it either ...
    assert not await store.transition(r.id, [Status.IN_QUEUE], Status.FAILED, started_at=second)
    # ... the current attempt can, also when it names the same instant in another zone.
    assert await store.transition(
        r.id,
        [Status.IN_PROGRESS],
        Status.COMPLETED,
        started_at=second.astimezone(timezone(timedelta(hours=9))),
    )
    done = await store.get(r.id)
    assert done is not None
    assert done.status is Status.COMPLETED


async def test_transition_started_at_condition_on_record_never_started(
    store: StatusStore,
) -> None:
    r = record()
    await store.insert(r)
    assert not await store.transition(r.id, [Status.IN_QUEUE], Status.IN_PROGRESS, started_at=now())
    assert await store.get(r.id) == r


async def test_transition_fields_none_unsets(store: StatusStore) -> None:
    started = now()
    r = record(
        status=Status.IN_PROGRESS,
        started_at=started,
        error={"type": "Timeout", "message": "took too long"},
        result_json='{"partial": 1}',
        payload_key="contract/x/payload",
    )
    await store.insert(r)
    assert await store.transition(
        r.id,
        [Status.IN_PROGRESS],
        Status.IN_QUEUE,
        fields={"started_at": None, "error": None, "result_json": None, "payload": None},
    )
    assert await store.get(r.id) == dataclasses.replace(
        r, status=Status.IN_QUEUE, started_at=None, error=None, result_json=None, payload=None
    )


async def test_transition_fields_replace_dicts_whole(store: StatusStore) -> None:
    r = record(
        status=Status.IN_PROGRESS,
        error={"type": "Timeout", "message": "took too long", "detail": "attempt 1"},
        webhook={"attempts": 1, "last_error": "connection refused", "delivered": False},
    )
    await store.insert(r)
    error = {"type": "HandlerError", "message": "boom"}
    webhook = {"attempts": 2, "delivered": True}
    assert await store.transition(
        r.id, [Status.IN_PROGRESS], Status.FAILED, fields={"error": error, "webhook": webhook}
    )
    got = await store.get(r.id)
    assert got is not None
    # A field is set to the value given, not merged with what was there.
    assert got.error == error
    assert got.webhook == webhook


async def test_transition_unknown_id_is_false(store: StatusStore) -> None:
    assert await store.transition(new_id(), [Status.IN_QUEUE], Status.IN_PROGRESS) is False
    assert (
        await store.transition(new_id(), list(Status), Status.CANCELED, increment_attempts=True)
        is False
    )
    assert await store.transition(new_id(), list(Status), Status.FAILED, started_at=now()) is False


@pytest.mark.parametrize("terminal", sorted(TERMINAL), ids=str)
async def test_terminal_records_never_move(store: StatusStore, terminal: Status) -> None:
    r = record(status=terminal, completed_at=now())
    await store.insert(r)
    for target in Status:
        moved = await store.transition(
            r.id, sources(target), target, increment_attempts=True, fields={"error": None}
        )
        assert moved is False, f"{terminal} moved to {target}"
    assert await store.get(r.id) == r


async def test_concurrent_transitions_exactly_one_wins(store: StatusStore) -> None:
    r = record()
    await store.insert(r)
    starts = [now() + timedelta(milliseconds=i) for i in range(20)]
    results = await asyncio.gather(
        *(
            store.transition(
                r.id,
                [Status.IN_QUEUE],
                Status.IN_PROGRESS,
                increment_attempts=True,
                fields={"started_at": t},
            )
            for t in starts
        )
    )
    assert results.count(True) == 1
    assert results.count(False) == 19
    got = await store.get(r.id)
    assert got is not None
    assert got.status is Status.IN_PROGRESS
    assert got.attempts == 1
    assert got.started_at == starts[results.index(True)]


async def test_counts_by_status_per_api(store: StatusStore) -> None:
    assert await store.counts(API) == dict.fromkeys(Status, 0)
    wanted = {
        Status.IN_QUEUE: 3,
        Status.IN_PROGRESS: 2,
        Status.COMPLETED: 1,
        Status.FAILED: 1,
        Status.CANCELED: 0,
    }
    for status, n in wanted.items():
        for _ in range(n):
            await store.insert(record(status))
    for _ in range(4):
        await store.insert(record(Status.IN_QUEUE, api=OTHER_API))
    await store.insert(record(Status.CANCELED, api=OTHER_API))

    counts = await store.counts(API)
    assert counts == wanted
    assert all(isinstance(k, Status) for k in counts)
    assert await store.counts(OTHER_API) == {
        **dict.fromkeys(Status, 0),
        Status.IN_QUEUE: 4,
        Status.CANCELED: 1,
    }
    assert await store.counts("nobody") == dict.fromkeys(Status, 0)


async def test_unfinished_yields_in_queue_and_in_progress_oldest_first(
    store: StatusStore,
) -> None:
    t0 = now() - timedelta(hours=1)

    def at(minutes: int, status: Status, api: str = API) -> Record:
        created = t0 + timedelta(minutes=minutes)
        return record(status, api=api, created_at=created, expires_at=created + timedelta(days=1))

    records = [
        at(5, Status.IN_QUEUE),
        at(1, Status.IN_PROGRESS),
        at(0, Status.COMPLETED),
        at(3, Status.IN_QUEUE, OTHER_API),
        at(2, Status.FAILED),
        at(4, Status.CANCELED),
        at(6, Status.IN_PROGRESS, OTHER_API),
        at(-1, Status.IN_QUEUE),
    ]
    for r in records:  # inserted out of order on purpose
        await store.insert(r)

    got = [r async for r in store.unfinished()]
    expected = sorted(
        (r for r in records if r.status in {Status.IN_QUEUE, Status.IN_PROGRESS}),
        key=lambda r: r.created_at,
    )
    assert [r.id for r in got] == [r.id for r in expected]
    assert got == expected
    for r in got:
        assert_utc(r)


async def test_datetimes_come_back_aware_utc_after_transition(store: StatusStore) -> None:
    r = record()
    await store.insert(r)
    naive = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    other_zone = (now() + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=-5)))
    assert await store.transition(
        r.id,
        [Status.IN_QUEUE],
        Status.IN_PROGRESS,
        fields={"started_at": naive, "completed_at": other_zone},
    )
    stored = await store.get(r.id)
    assert stored is not None
    assert stored.started_at == naive.replace(tzinfo=UTC)
    assert stored.completed_at == other_zone
    assert_utc(stored)


# --- idempotency keys --------------------------------------------------------------------------


async def test_duplicate_idempotency_key_raises_duplicate_request(store: StatusStore) -> None:
    first = record(idempotency_key="key-1")
    await store.insert(first)
    second = record(idempotency_key="key-1", status=Status.COMPLETED, payload=b"second")
    with pytest.raises(DuplicateRequest):
        await store.insert(second)
    assert await store.get(first.id) == first
    assert await store.get(second.id) is None
    # The same key in another API, and another key in this one, are fine.
    elsewhere = record(api=OTHER_API, idempotency_key="key-1")
    await store.insert(elsewhere)
    await store.insert(record(idempotency_key="key-2"))
    assert await store.find_idempotent(API, "key-1") == first
    assert await store.find_idempotent(OTHER_API, "key-1") == elsewhere


@pytest.mark.parametrize(
    ("first_key", "second_key"),
    [(None, None), ("key-a", None), (None, "key-b"), ("key-a", "key-b")],
    ids=["no_keys", "first_keyed", "second_keyed", "both_keyed"],
)
async def test_duplicate_id_is_not_a_duplicate_request(
    store: StatusStore, first_key: str | None, second_key: str | None
) -> None:
    # A clash of ids is a bug or an attack, not a client's retry: it must not be answered as
    # the idempotent replay of an earlier request.
    first = record(idempotency_key=first_key)
    await store.insert(first)
    second = dataclasses.replace(record(idempotency_key=second_key), id=first.id)
    with pytest.raises(Exception) as raised:  # which exception is the store's own
        await store.insert(second)
    assert not isinstance(raised.value, DuplicateRequest), repr(raised.value)
    assert await store.get(first.id) == first
    if second_key is not None:
        assert await store.find_idempotent(API, second_key) is None


async def test_find_idempotent(store: StatusStore) -> None:
    a1 = record(idempotency_key="k1")
    a2 = record(idempotency_key="k2", status=Status.COMPLETED, completed_at=now())
    b1 = record(api=OTHER_API, idempotency_key="k1", payload=b"other")
    unkeyed = record()
    for r in (a1, a2, b1, unkeyed):
        await store.insert(r)
    assert await store.find_idempotent(API, "k1") == a1
    assert await store.find_idempotent(API, "k2") == a2
    assert await store.find_idempotent(OTHER_API, "k1") == b1
    assert await store.find_idempotent(OTHER_API, "k2") is None
    assert await store.find_idempotent(API, "k3") is None
    assert await store.find_idempotent(API, "K1") is None  # keys are matched exactly
    assert await store.find_idempotent("nobody", "k1") is None
    assert await store.find_idempotent(API, "") is None


# --- by_status ---------------------------------------------------------------------------------


async def test_by_status_filters_sorts_and_limits(store: StatusStore) -> None:
    t0 = now() - timedelta(hours=2)

    def at(minutes: int, status: Status, api: str = API) -> Record:
        created = t0 + timedelta(minutes=minutes)
        return record(status, api=api, created_at=created, expires_at=created + timedelta(days=1))

    failed = [
        at(7, Status.FAILED),
        at(2, Status.FAILED),
        at(9, Status.FAILED),
        at(4, Status.FAILED),
    ]
    noise = [
        at(1, Status.COMPLETED),
        at(3, Status.IN_QUEUE),
        at(0, Status.FAILED, OTHER_API),
        at(5, Status.FAILED, OTHER_API),
        at(6, Status.CANCELED),
    ]
    for r in [*failed[:2], *noise, *failed[2:]]:  # out of order on purpose
        await store.insert(r)

    oldest_first = sorted(failed, key=lambda r: r.created_at)
    got = await store.by_status(API, Status.FAILED)
    assert got == oldest_first
    for r in got:
        assert_utc(r)
    assert await store.by_status(API, Status.FAILED, limit=2) == oldest_first[:2]
    assert await store.by_status(API, Status.FAILED, limit=1) == oldest_first[:1]
    assert await store.by_status(API, Status.FAILED, limit=100) == oldest_first
    assert [r.id for r in await store.by_status(OTHER_API, Status.FAILED)] == [
        noise[2].id,
        noise[3].id,
    ]
    assert await store.by_status(API, Status.IN_QUEUE) == [noise[1]]
    assert await store.by_status(API, Status.IN_PROGRESS) == []
    assert await store.by_status("nobody", Status.FAILED) == []


async def test_by_status_follows_transitions(store: StatusStore) -> None:
    r = record()
    await store.insert(r)
    assert [x.id for x in await store.by_status(API, Status.IN_QUEUE)] == [r.id]
    assert await store.transition(r.id, [Status.IN_QUEUE], Status.FAILED)
    assert await store.by_status(API, Status.IN_QUEUE) == []
    assert [x.id for x in await store.by_status(API, Status.FAILED)] == [r.id]


async def test_undelivered_webhooks_are_ended_records_without_an_outcome(
    store: StatusStore,
) -> None:
    url = "https://example.com/hook"
    never_tried = record(Status.COMPLETED, webhook_url=url)
    retrying = record(Status.FAILED, webhook_url=url, webhook={"outcome": "pending"})
    delivered = record(Status.COMPLETED, webhook_url=url, webhook={"outcome": "delivered"})
    gone = record(Status.CANCELED, webhook_url=url, webhook={"outcome": "gone"})
    running = record(Status.IN_PROGRESS, webhook_url=url)
    no_hook = record(Status.COMPLETED)
    for r in (never_tried, retrying, delivered, gone, running, no_hook):
        await store.insert(r)
    found = {r.id async for r in store.undelivered_webhooks()}
    assert found == {never_tried.id, retrying.id}


async def test_concurrent_inserts_each_get_their_own_outcome(store: StatusStore) -> None:
    # Concurrent writes may share a round trip; each caller must still hear of its own write
    # alone: the clashing one fails, the rest land.
    existing = record(idempotency_key="taken")
    await store.insert(existing)
    fresh = [record() for _ in range(30)]
    clash = record(idempotency_key="taken")
    twins = [record(idempotency_key="twin"), record(idempotency_key="twin")]
    outcomes = await asyncio.gather(
        *(store.insert(r) for r in [*fresh[:15], clash, *twins, *fresh[15:]]),
        return_exceptions=True,
    )
    assert outcomes[:15] == [None] * 15
    assert isinstance(outcomes[15], DuplicateRequest)
    assert sorted(type(o).__name__ for o in outcomes[16:18]) == ["DuplicateRequest", "NoneType"]
    assert outcomes[18:] == [None] * 15
    for r in fresh:
        assert await store.get(r.id) == r
    assert await store.get(clash.id) is None
    landed = [r for r, o in zip(twins, outcomes[16:18], strict=True) if o is None]
    assert await store.find_idempotent(API, "twin") == landed[0]


async def test_concurrent_transitions_each_get_their_own_outcome(store: StatusStore) -> None:
    # Half the records are where the move expects them and half are not: a shared round trip
    # must not blur which moves went through.
    records = [record(Status.IN_QUEUE if i % 2 else Status.CANCELED) for i in range(40)]
    for r in records:
        await store.insert(r)
    started = now()
    results = await asyncio.gather(
        *(
            store.transition(
                r.id,
                [Status.IN_QUEUE],
                Status.IN_PROGRESS,
                increment_attempts=True,
                fields={"started_at": started},
            )
            for r in records
        )
    )
    assert results == [bool(i % 2) for i in range(40)]
    for i, r in enumerate(records):
        got = await store.get(r.id)
        assert got is not None
        if i % 2:
            assert (got.status, got.attempts, got.started_at) == (
                Status.IN_PROGRESS,
                1,
                started,
            )
        else:
            assert got == r
