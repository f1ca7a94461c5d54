"""Loading and calling a user's handler (SPEC §5, Cortex-compatible): arguments passed by name,
payload decoded by Content-Type, the return value classified into a JSON, binary or streamed
result."""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import inspect
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncgw.result import Result


class HandlerError(Exception):
    """The handler file cannot be loaded or its class cannot be used."""


class PayloadError(ValueError):
    """The payload does not decode as its Content-Type says."""


def bind_arguments(func: Callable[..., Any], available: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``available`` that ``func`` takes by name (all of it if it takes
    ``**kwargs``); ``HandlerError`` if it requires an argument asyncgw does not provide."""
    signature = inspect.signature(func)
    params = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(available)
    bound: dict[str, Any] = {}
    for name, param in params.items():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if name in available and param.kind is not inspect.Parameter.POSITIONAL_ONLY:
            bound[name] = available[name]
        elif param.default is inspect.Parameter.empty:
            offered = ", ".join(available)
            raise HandlerError(
                f"{getattr(func, '__qualname__', func)} requires argument {name!r}; "
                f"asyncgw passes only {offered}"
            )
    return bound


def decode_payload(body: bytes, content_type: str) -> Any:
    """``application/json`` → parsed JSON, ``text/plain`` → ``str``, anything else → ``bytes``."""
    mime, _, params = content_type.partition(";")
    mime = mime.strip().lower()
    if mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json")):
        try:
            return json.loads(body)
        except ValueError as exc:
            raise PayloadError(f"payload is not valid JSON: {exc}") from None
    if mime == "text/plain":
        charset = "utf-8"
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip('"')
        try:
            return body.decode(charset)
        except (LookupError, UnicodeDecodeError) as exc:
            raise PayloadError(f"payload is not valid {charset} text: {exc}") from None
    return body


@dataclass(frozen=True, slots=True)
class Output:
    """A handler's return value, classified. ``body`` is set for ``json`` and ``bytes``;
    ``chunks`` for ``stream``."""

    kind: str
    content_type: str
    body: bytes = b""
    chunks: AsyncIterator[bytes] | None = None


def classify(value: Any, executor: Executor | None = None) -> Output:
    """What the handler returned, as a result to store (SPEC §5)."""
    if isinstance(value, Result):
        return Output("bytes", value.content_type, body=bytes(value.body))
    if isinstance(value, bytes | bytearray | memoryview):
        return Output("bytes", "application/octet-stream", body=bytes(value))
    if isinstance(value, AsyncIterator):
        return Output("stream", "application/octet-stream", chunks=_checked(value))
    if isinstance(value, Iterator) and not isinstance(value, str):
        return Output("stream", "application/octet-stream", chunks=_from_sync(value, executor))
    try:
        body = json.dumps(value, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"handler returned a value that is not JSON-serialisable: {exc}") from None
    return Output("json", "application/json", body=body)


async def _checked(chunks: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(f"streamed result chunks must be bytes, got {type(chunk).__name__}")
        yield bytes(chunk)


_DONE = object()


async def _from_sync(chunks: Iterator[Any], executor: Executor | None) -> AsyncIterator[bytes]:
    """A sync iterator consumed in a thread, one chunk at a time, so slow producers never block
    the event loop."""
    loop = asyncio.get_running_loop()
    while True:
        chunk = await loop.run_in_executor(executor, next, chunks, _DONE)
        if chunk is _DONE:
            return
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(f"streamed result chunks must be bytes, got {type(chunk).__name__}")
        yield bytes(chunk)


class LoadedHandler:
    """A user's ``Handler`` instance with its ``handle_async`` ready to call."""

    def __init__(self, instance: Any) -> None:
        method = getattr(instance, "handle_async", None)
        if not callable(method):
            raise HandlerError("class Handler has no handle_async method")
        self.instance = instance
        self.method: Callable[..., Any] = method
        self.is_async = inspect.iscoroutinefunction(method)
        self.is_async_generator = inspect.isasyncgenfunction(method)
        params = inspect.signature(method).parameters
        self._wants_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        self._names = frozenset(params)
        bind_arguments(method, {"payload": None, "request_id": ""})

    def arguments(self, payload: Any, request_id: str) -> dict[str, Any]:
        """Keyword arguments for one call (the signature was checked once, at load)."""
        available = {"payload": payload, "request_id": request_id}
        if self._wants_kwargs:
            return available
        return {k: v for k, v in available.items() if k in self._names}

    async def call(self, payload: Any, request_id: str, executor: Executor | None) -> Any:
        """Run the handler: on the loop if async, in ``executor`` if sync."""
        kwargs = self.arguments(payload, request_id)
        if self.is_async:
            return await self.method(**kwargs)
        if self.is_async_generator:
            return self.method(**kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, lambda: self.method(**kwargs))


def load_handler(
    path: Path,
    python_path: Path,
    config: Mapping[str, Any],
    *,
    module_name: str,
    metrics_client: Any = None,
) -> LoadedHandler:
    """Import ``class Handler`` from ``path`` and instantiate it. Errors in the user's
    ``__init__`` propagate as they are, so the caller can report them."""
    if not path.is_file():
        raise HandlerError(f"handler file {path} does not exist")
    if str(python_path) not in sys.path:
        sys.path.insert(0, str(python_path))
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise HandlerError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    cls = getattr(module, "Handler", None)
    if not inspect.isclass(cls):
        raise HandlerError(f"{path} defines no class Handler")
    available = {"config": copy.deepcopy(dict(config)), "metrics_client": metrics_client}
    return LoadedHandler(cls(**bind_arguments(cls, available)))
