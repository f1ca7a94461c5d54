"""The ``BlobStore`` contract, run against every implementation (``blobs`` fixture)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from asyncgw.backends.interfaces import Blob, BlobStore
from asyncgw.errors import BlobNotFound, PayloadTooLarge
from asyncgw.schema import new_id, payload_key, result_key

API = "contract"
CHUNK = 64 * 1024


def key() -> str:
    return payload_key(API, new_id())


async def chunks_of(data: bytes, size: int = CHUNK) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def collect(blob: Blob) -> list[bytes]:
    return [chunk async for chunk in blob.chunks]


async def test_put_read_round_trip_with_content_type(blobs: BlobStore) -> None:
    k = result_key(API, new_id())
    data = b'{"answer": 42}'
    await blobs.put(k, data, "application/json")
    assert await blobs.read(k) == data
    blob = await blobs.get(k)
    assert blob.content_type == "application/json"
    assert blob.size == len(data)
    assert (blob.start, blob.end) == (0, len(data) - 1)
    assert b"".join(await collect(blob)) == data


async def test_put_overwrites(blobs: BlobStore) -> None:
    k = key()
    await blobs.put(k, b"first version", "text/plain")
    await blobs.put(k, b"second", "application/octet-stream")
    blob = await blobs.get(k)
    assert blob.content_type == "application/octet-stream"
    assert b"".join(await collect(blob)) == b"second"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain; charset=utf-8", "application/vnd.example+json; version=2", "image/png"],
)
async def test_content_type_preserved_exactly(blobs: BlobStore, content_type: str) -> None:
    k = key()
    await blobs.put(k, b"x", content_type)
    assert (await blobs.get(k)).content_type == content_type
    k2 = key()
    assert await blobs.put_stream(k2, chunks_of(b"yy"), content_type) == 2
    blob = await blobs.get(k2)
    assert blob.content_type == content_type
    assert b"".join(await collect(blob)) == b"yy"


async def test_put_stream_many_chunks(blobs: BlobStore, blobs_kind: str) -> None:
    # S3: 11 MiB with 5 MiB parts is a three-part multipart upload (moto is slow on big bodies,
    # so this is the suite's one big S3 upload). Files: 12 MiB.
    size = {"s3": 11 * 2**20 + 12345, "file": 12 * 2**20}[blobs_kind]
    data = os.urandom(size)
    k = key()
    written = await blobs.put_stream(k, chunks_of(data), "application/octet-stream")
    assert written == size
    got = await blobs.read(k)
    assert len(got) == size
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    blob = await blobs.get(k)
    assert blob.size == size
    assert blob.content_type == "application/octet-stream"


async def test_put_stream_past_max_size_leaves_nothing(blobs: BlobStore) -> None:
    k = key()
    data = os.urandom(5 * CHUNK)
    with pytest.raises(PayloadTooLarge):
        await blobs.put_stream(
            k, chunks_of(data), "application/octet-stream", max_size=len(data) - 1
        )
    with pytest.raises(BlobNotFound):
        await blobs.get(k)
    with pytest.raises(BlobNotFound):
        await blobs.read(k)


async def test_put_stream_at_max_size_is_fine(blobs: BlobStore) -> None:
    k = key()
    data = os.urandom(3 * CHUNK)
    assert await blobs.put_stream(k, chunks_of(data), "text/csv", max_size=len(data)) == len(data)
    assert await blobs.read(k) == data


async def test_get_streams_in_chunks(blobs: BlobStore) -> None:
    k = key()
    data = os.urandom(2**20)
    await blobs.put(k, data, "application/octet-stream")
    blob = await blobs.get(k)
    chunks = await collect(blob)
    assert len(chunks) > 1, "the blob came as one piece, not streamed"
    assert all(chunks)
    assert b"".join(chunks) == data


async def test_get_range(blobs: BlobStore) -> None:
    k = key()
    data = bytes(range(256)) * 4  # 1024 bytes
    await blobs.put(k, data, "application/x-test")

    blob = await blobs.get(k, 10, 19)
    assert (blob.start, blob.end, blob.size) == (10, 19, 1024)
    assert blob.content_type == "application/x-test"
    assert b"".join(await collect(blob)) == data[10:20]

    blob = await blobs.get(k, 1000)  # open-ended
    assert (blob.start, blob.end, blob.size) == (1000, 1023, 1024)
    assert b"".join(await collect(blob)) == data[1000:]

    blob = await blobs.get(k, 0, 0)  # one byte
    assert (blob.start, blob.end, blob.size) == (0, 0, 1024)
    assert b"".join(await collect(blob)) == data[:1]

    blob = await blobs.get(k, 1020, 5000)  # end past the blob: clamped to the last byte
    assert (blob.start, blob.end, blob.size) == (1020, 1023, 1024)
    assert b"".join(await collect(blob)) == data[1020:]


async def test_get_unknown_raises_not_found(blobs: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        await blobs.get(key())
    with pytest.raises(BlobNotFound):
        await blobs.read(key())


async def test_delete_then_get_not_found(blobs: BlobStore) -> None:
    k = key()
    other = key()
    await blobs.put(k, b"bye", "text/plain")
    await blobs.put(other, b"stay", "text/plain")
    await blobs.delete(k)
    with pytest.raises(BlobNotFound):
        await blobs.get(k)
    with pytest.raises(BlobNotFound):
        await blobs.read(k)
    assert await blobs.read(other) == b"stay"


async def test_delete_unknown_is_fine(blobs: BlobStore) -> None:
    await blobs.delete(key())
    k = key()
    await blobs.put(k, b"x", "text/plain")
    await blobs.delete(k)
    await blobs.delete(k)  # twice


async def test_empty_blob_round_trip(blobs: BlobStore) -> None:
    k = key()
    await blobs.put(k, b"", "text/plain; charset=utf-8")
    assert await blobs.read(k) == b""
    blob = await blobs.get(k)
    assert blob.size == 0
    assert blob.content_type == "text/plain; charset=utf-8"
    assert b"".join(await collect(blob)) == b""

    k2 = key()
    assert await blobs.put_stream(k2, chunks_of(b""), "application/json") == 0
    assert await blobs.read(k2) == b""
    assert (await blobs.get(k2)).content_type == "application/json"


# --- expiry ------------------------------------------------------------------------------------

DAY_S = 86400


async def test_expire_after_differs_on_purpose(
    blobs: BlobStore, blobs_kind: str, request: pytest.FixtureRequest
) -> None:
    # Both stores delete an API's blobs once they are as old as its retention, but differently:
    # the file store sweeps its folders itself, S3 is given lifecycle rules and does it alone.
    expiring, lasting, untouched = (f"exp{new_id()[:8]}" for _ in range(3))
    r1, r2 = payload_key(expiring, new_id()), payload_key(expiring, new_id())
    r1_result = r1.rsplit("/", 1)[0] + "/result"
    others = [payload_key(lasting, new_id()), payload_key(untouched, new_id())]
    for k in (r1, r1_result, r2, *others):
        await blobs.put(k, b"data of " + k.encode(), "text/plain")

    if blobs_kind == "file":
        from asyncgw.backends.files import FileBlobs

        assert isinstance(blobs, FileBlobs)
        written = time.time()
        await blobs.expire_after(expiring, 3600)
        await blobs.expire_after(lasting, 10 * DAY_S)
        # Setting the retention sweeps at once: nothing is that old yet.
        for k in (r1, r1_result, r2, *others):
            assert await blobs.read(k) == b"data of " + k.encode()
        # Half the retention later, the fresh blobs stay.
        assert await blobs.sweep(at=written + 1800) == 0
        for k in (r1, r1_result, r2, *others):
            assert await blobs.read(k) == b"data of " + k.encode()
        # Past the retention, that API's request folders go (one per request); blobs of an API
        # with a longer retention, or with none, stay.
        assert await blobs.sweep(at=time.time() + 3600 + 60) == 2
        for k in (r1, r1_result, r2):
            with pytest.raises(BlobNotFound):
                await blobs.read(k)
        for k in others:
            assert await blobs.read(k) == b"data of " + k.encode()
        assert await blobs.sweep(at=time.time() + 3600 + 60) == 0
        assert await blobs.sweep(at=time.time() + 11 * DAY_S) == 1
        with pytest.raises(BlobNotFound):
            await blobs.read(others[0])
        assert await blobs.read(others[1]) == b"data of " + others[1].encode()
    else:
        from asyncgw.backends.s3 import S3Blobs

        assert isinstance(blobs, S3Blobs)
        client = boto3.client(
            "s3",
            endpoint_url=request.getfixturevalue("s3_endpoint"),
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path"},
            ),
        )
        ours = f"{blobs.prefix}/"

        def rules() -> dict[str, list[dict[str, Any]]]:
            """This test's lifecycle rules by prefix (the bucket is shared with other tests)."""
            try:
                answer = client.get_bucket_lifecycle_configuration(Bucket=blobs.bucket)
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "NoSuchLifecycleConfiguration":
                    return {}
                raise
            found: dict[str, list[dict[str, Any]]] = {}
            for rule in answer.get("Rules", []):
                prefix = rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))
                if prefix.startswith(ours):
                    found.setdefault(prefix, []).append(rule)
            return found

        def days(prefix: str) -> int:
            (rule,) = rules()[prefix]
            assert rule["Status"] == "Enabled"
            return int(rule["Expiration"]["Days"])

        first, second = f"{ours}{expiring}/", f"{ours}{lasting}/"
        try:
            await blobs.expire_after(expiring, 3 * DAY_S)
            assert set(rules()) == {first}
            assert days(first) == 3
            # A second API gets its own rule beside the first; S3 counts whole days, rounding
            # up.
            await blobs.expire_after(lasting, 1.5 * DAY_S)
            assert set(rules()) == {first, second}
            assert (days(first), days(second)) == (3, 2)
            # Setting the first API's retention again replaces its rule, not adds one.
            await blobs.expire_after(expiring, 5 * DAY_S)
            assert set(rules()) == {first, second}
            assert (days(first), days(second)) == (5, 2)
            # Less than a day is still one day.
            await blobs.expire_after(expiring, 60)
            assert (days(first), days(second)) == (1, 2)
            # The rules only schedule deletion: every blob is still there now.
            for k in (r1, r1_result, r2, *others):
                assert await blobs.read(k) == b"data of " + k.encode()
        finally:
            try:
                answer = client.get_bucket_lifecycle_configuration(Bucket=blobs.bucket)
                kept = [
                    r
                    for r in answer.get("Rules", [])
                    if not r.get("Filter", {}).get("Prefix", "").startswith(ours)
                ]
                if kept:
                    client.put_bucket_lifecycle_configuration(
                        Bucket=blobs.bucket, LifecycleConfiguration={"Rules": kept}
                    )
                else:
                    client.delete_bucket_lifecycle(Bucket=blobs.bucket)
            except ClientError:
                pass
            client.close()
