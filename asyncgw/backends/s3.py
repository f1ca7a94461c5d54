"""The production blob store: S3 through aioboto3. One client per process; uploads of unknown
length go up as multipart uploads part by part, downloads stream (ranged when asked)."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from asyncgw.backends.interfaces import Blob
from asyncgw.errors import BackendUnavailable, BlobNotFound, PayloadTooLarge

log = logging.getLogger(__name__)

#: Size of one multipart part: S3's minimum is 5 MiB; memory use per upload is one part.
PART_SIZE = 8 * 2**20
READ_CHUNK = 256 * 1024


def _missing(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    return code in {"NoSuchKey", "404", "NotFound"}


class S3Blobs:
    """``s3://bucket/prefix``; the endpoint comes from ``AWS_ENDPOINT_URL_S3`` or
    ``AWS_ENDPOINT_URL`` (for MinIO and other S3-compatible servers), credentials as boto3 finds
    them."""

    def __init__(self, url: str, *, part_size: int = PART_SIZE) -> None:
        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError(f"{url!r} names no bucket; expected s3://bucket/prefix")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self._part_size = part_size
        self._endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def open(self) -> None:
        config = Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path" if self._endpoint else "auto"},
            retries={"max_attempts": 3, "mode": "standard"},
        )
        session = aioboto3.Session()
        self._client = await self._stack.enter_async_context(
            session.client("s3", endpoint_url=self._endpoint, config=config)
        )

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            await self._client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type
            )
        except (BotoCoreError, ClientError) as exc:
            raise BackendUnavailable("s3", str(exc)) from exc

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        content_type: str,
        *,
        max_size: int | None = None,
    ) -> int:
        # Chunks are kept as they came and joined once per part: a part is the one copy made
        # of the body. Parts may run a chunk over the part size; S3 only asks for a minimum.
        pending: list[bytes] = []
        pending_size = 0
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        full_key = self._key(key)
        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise PayloadTooLarge(f"body is larger than {max_size} bytes")
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= self._part_size:
                    if upload_id is None:
                        created = await self._client.create_multipart_upload(
                            Bucket=self.bucket, Key=full_key, ContentType=content_type
                        )
                        upload_id = created["UploadId"]
                    part = b"".join(pending)
                    pending.clear()
                    pending_size = 0
                    parts.append(await self._upload_part(full_key, upload_id, len(parts) + 1, part))
                    del part
            if upload_id is None:
                await self._client.put_object(
                    Bucket=self.bucket,
                    Key=full_key,
                    Body=b"".join(pending),
                    ContentType=content_type,
                )
                return size
            if pending or not parts:
                part = b"".join(pending)
                parts.append(await self._upload_part(full_key, upload_id, len(parts) + 1, part))
            await self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=full_key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            return size
        except BaseException as exc:
            if upload_id is not None:
                with contextlib.suppress(BotoCoreError, ClientError):
                    await self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=full_key, UploadId=upload_id
                    )
            if isinstance(exc, BotoCoreError | ClientError):
                raise BackendUnavailable("s3", str(exc)) from exc
            raise

    async def _upload_part(
        self, full_key: str, upload_id: str, number: int, body: bytes
    ) -> dict[str, Any]:
        answer = await self._client.upload_part(
            Bucket=self.bucket, Key=full_key, UploadId=upload_id, PartNumber=number, Body=body
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    async def get(self, key: str, start: int = 0, end: int | None = None) -> Blob:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            answer = await self._client.get_object(**args)
        except ClientError as exc:
            if _missing(exc):
                raise BlobNotFound(key) from exc
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                raise ValueError(f"range {start}-{end} is outside the blob") from exc
            raise BackendUnavailable("s3", str(exc)) from exc
        except BotoCoreError as exc:
            raise BackendUnavailable("s3", str(exc)) from exc
        length = int(answer["ContentLength"])
        total = length
        if "ContentRange" in answer:
            total = int(str(answer["ContentRange"]).rsplit("/", 1)[1])
        body = answer["Body"]

        async def stream() -> AsyncIterator[bytes]:
            async with body:
                async for chunk in body.iter_chunks(READ_CHUNK):
                    yield chunk

        return Blob(
            content_type=answer.get("ContentType") or "application/octet-stream",
            size=total,
            start=start,
            end=start + length - 1,
            chunks=stream(),
        )

    async def read(self, key: str) -> bytes:
        blob = await self.get(key)
        return b"".join([chunk async for chunk in blob.chunks])

    async def expire_after(self, api: str, retention_s: float) -> None:
        """A lifecycle rule on the API's prefix. S3 counts in whole days, so blobs live for the
        retention rounded up to a day (at least one)."""
        prefix = self._key(f"{api}/")
        days = max(1, math.ceil(retention_s / 86400))
        rule: dict[str, Any] = {
            "ID": f"asyncgw:{prefix}",
            "Filter": {"Prefix": prefix},
            "Status": "Enabled",
            "Expiration": {"Days": days},
            # Uploads a crashed gateway or worker left unfinished would otherwise cost forever.
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
        try:
            try:
                answer = await self._client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
                rules = [r for r in answer.get("Rules", []) if r.get("ID") != rule["ID"]]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
                    raise
                rules = []
            await self._client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": [*rules, rule]}
            )
        except (BotoCoreError, ClientError) as exc:
            log.warning(
                "cannot set the lifecycle rule that expires blobs after %s days: %s",
                days,
                exc,
                extra={"api": api},
            )

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise BackendUnavailable("s3", str(exc)) from exc
