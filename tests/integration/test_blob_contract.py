"""The ``BlobStore`` contract, run against every implementation (``blobs`` fixture)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import pytest

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
