"""Backends picked from a URL: ``amqp://`` or ``memory://`` queues, ``mongodb://`` or
``sqlite://`` stores, ``s3://`` or ``file://`` blob stores. Imports are lazy so a service loads only
the client libraries it uses."""

from __future__ import annotations

from urllib.parse import urlsplit

from asyncgw.backends.interfaces import Blob, BlobStore, Consumer, Delivery, Queue, StatusStore
from asyncgw.errors import ConfigError

__all__ = [
    "Blob",
    "BlobStore",
    "Consumer",
    "Delivery",
    "Queue",
    "StatusStore",
    "blobs_from_url",
    "queue_from_url",
    "store_from_url",
]


def _scheme(url: str, variable: str, known: str) -> str:
    scheme = urlsplit(url).scheme
    if not scheme:
        raise ConfigError([f"{variable}: {url!r} is not a URL; expected {known}"])
    return scheme


def queue_from_url(url: str) -> Queue:
    """The queue backend for ``ASYNCGW_QUEUE_URL``."""
    scheme = _scheme(url, "ASYNCGW_QUEUE_URL", "amqp://… or memory://")
    if scheme in {"amqp", "amqps"}:
        from asyncgw.backends.rabbitmq import RabbitQueue

        return RabbitQueue(url)
    if scheme == "memory":
        from asyncgw.backends.memory import MemoryQueue

        return MemoryQueue()
    raise ConfigError(
        [f"ASYNCGW_QUEUE_URL: unsupported scheme {scheme!r}; use amqp:// or memory://"]
    )


def store_from_url(url: str) -> StatusStore:
    """The status store for ``ASYNCGW_STORE_URL``."""
    scheme = _scheme(url, "ASYNCGW_STORE_URL", "mongodb://… or sqlite:///path")
    if scheme in {"mongodb", "mongodb+srv"}:
        from asyncgw.backends.mongo import MongoStore

        return MongoStore(url)
    if scheme == "sqlite":
        from asyncgw.backends.sqlite import SqliteStore

        return SqliteStore(url)
    raise ConfigError(
        [f"ASYNCGW_STORE_URL: unsupported scheme {scheme!r}; use mongodb:// or sqlite:///path"]
    )


def blobs_from_url(url: str) -> BlobStore:
    """The blob store for ``ASYNCGW_STORAGE_URL``."""
    scheme = _scheme(url, "ASYNCGW_STORAGE_URL", "s3://bucket/prefix or file:///path")
    if scheme == "s3":
        from asyncgw.backends.s3 import S3Blobs

        return S3Blobs(url)
    if scheme == "file":
        from asyncgw.backends.files import FileBlobs

        return FileBlobs(url)
    raise ConfigError(
        [f"ASYNCGW_STORAGE_URL: unsupported scheme {scheme!r}; use s3://bucket or file:///path"]
    )
