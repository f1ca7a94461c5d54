"""The embedded blob store: local files below one folder. Writes stream into a temporary file
that is renamed into place only when complete, so a crash never leaves half a blob; file I/O runs
in threads so the event loop stays free."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from asyncgw.backends.interfaces import Blob
from asyncgw.errors import BlobNotFound, PayloadTooLarge
from asyncgw.periodic import Periodic
from asyncgw.schema import new_id

log = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
#: How often expired blobs are deleted.
SWEEP_INTERVAL_S = 600.0
_TYPE_SUFFIX = ".content-type"


class FileBlobs:
    """``file:///absolute/path`` (or ``file://relative/path``)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.root = Path(unquote(parts.netloc + parts.path)).resolve()
        self._retention_s: dict[str, float] = {}
        self._sweeper = Periodic(SWEEP_INTERVAL_S, self.sweep, "blob sweep")

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"blob key {key!r} leaves the store")
        return path

    async def open(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        await self._sweeper.stop()

    async def expire_after(self, api: str, retention_s: float) -> None:
        """Swept at once and then every ``SWEEP_INTERVAL_S``: a request's folder goes when its
        newest file is older than the retention."""
        self._retention_s[api] = retention_s
        await self.sweep()
        self._sweeper.start()

    async def sweep(self, at: float | None = None) -> int:
        """Delete expired request folders; return how many."""
        retention = dict(self._retention_s)
        return await asyncio.to_thread(_sweep, self.root, retention, at or time.time())

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        async def one() -> AsyncIterator[bytes]:
            yield data

        await self.put_stream(key, one(), content_type)

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        content_type: str,
        *,
        max_size: int | None = None,
    ) -> int:
        path = self._path(key)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{new_id()}.tmp")
        handle: IO[bytes] = await asyncio.to_thread(open, temp, "wb")
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise PayloadTooLarge(f"body is larger than {max_size} bytes")
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(_finish, handle, temp, path, content_type)
        except BaseException:
            handle.close()
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        return size

    async def get(self, key: str, start: int = 0, end: int | None = None) -> Blob:
        path = self._path(key)
        try:
            handle: IO[bytes] = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        try:
            size = os.fstat(handle.fileno()).st_size
            content_type = await asyncio.to_thread(_read_type, path)
            last = size - 1 if end is None else min(end, size - 1)
            if start > max(last, 0) or (size and start > last):
                raise ValueError(f"range {start}-{end} is outside the blob")
            handle.seek(start)
        except BaseException:
            handle.close()
            raise

        async def stream() -> AsyncIterator[bytes]:
            remaining = last - start + 1
            try:
                while remaining > 0:
                    chunk = await asyncio.to_thread(handle.read, min(READ_CHUNK, remaining))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                    yield chunk
            finally:
                handle.close()

        return Blob(content_type=content_type, size=size, start=start, end=last, chunks=stream())

    async def read(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    async def delete(self, key: str) -> None:
        path = self._path(key)
        for victim in (path, path.with_name(path.name + _TYPE_SUFFIX)):
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(victim.unlink)


def _finish(handle: IO[bytes], temp: Path, path: Path, content_type: str) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    type_path = path.with_name(path.name + _TYPE_SUFFIX)
    type_temp = temp.with_name(temp.name + _TYPE_SUFFIX)
    type_temp.write_text(content_type, encoding="utf-8")
    os.replace(type_temp, type_path)
    os.replace(temp, path)


def _read_type(path: Path) -> str:
    try:
        return path.with_name(path.name + _TYPE_SUFFIX).read_text(encoding="utf-8")
    except FileNotFoundError:
        return "application/octet-stream"


def _sweep(root: Path, retention_s: dict[str, float], at: float) -> int:
    removed = 0
    for api, seconds in retention_s.items():
        folder = root / api
        if not folder.is_dir():
            continue
        for request in folder.iterdir():
            try:
                newest = max((p.stat().st_mtime for p in request.iterdir()), default=0.0)
            except (NotADirectoryError, FileNotFoundError):
                continue
            if newest + seconds <= at:
                shutil.rmtree(request, ignore_errors=True)
                removed += 1
    return removed
