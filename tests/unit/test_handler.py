"""The handler interface (SPEC §5): arguments by name, payload decoding, result classification,
loading a Handler class from a file and calling it."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from asyncgw import Result
from worker.handler import (
    HandlerError,
    LoadedHandler,
    Output,
    PayloadError,
    bind_arguments,
    classify,
    decode_payload,
    load_handler,
)

AVAILABLE = {"payload": {"x": 1}, "request_id": "rid-1"}

# --- bind_arguments -------------------------------------------------------------------------


def f_both(payload: Any, request_id: str) -> None: ...
def f_payload(payload: Any) -> None: ...
def f_request_id(request_id: str) -> None: ...
def f_none() -> None: ...
def f_kwargs(**kwargs: Any) -> None: ...
def f_payload_kwargs(payload: Any, **rest: Any) -> None: ...
def f_default(payload: Any, extra: int = 3) -> None: ...
def f_kwonly(*, request_id: str) -> None: ...
def f_varargs(payload: Any, *args: Any) -> None: ...
def f_unknown(payload: Any, model: Any) -> None: ...
def f_positional_only(payload: Any, /) -> None: ...


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        (f_both, AVAILABLE),
        (f_payload, {"payload": {"x": 1}}),
        (f_request_id, {"request_id": "rid-1"}),
        (f_none, {}),
        (f_kwargs, AVAILABLE),
        (f_payload_kwargs, AVAILABLE),
        (f_default, {"payload": {"x": 1}}),
        (f_kwonly, {"request_id": "rid-1"}),
        (f_varargs, {"payload": {"x": 1}}),
        (lambda payload, request_id=None: None, AVAILABLE),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_bind_arguments(func: Callable[..., Any], expected: dict[str, Any]) -> None:
    bound = bind_arguments(func, AVAILABLE)
    assert bound == expected
    func(**bound)  # the call really works


@pytest.mark.parametrize(
    ("func", "missing"),
    [(f_unknown, "model"), (f_positional_only, "payload")],
    ids=["unknown", "positional-only"],
)
def test_bind_arguments_required_unknown(func: Callable[..., Any], missing: str) -> None:
    with pytest.raises(HandlerError, match=f"'{missing}'"):
        bind_arguments(func, AVAILABLE)


def test_bind_arguments_class_uses_init() -> None:
    class WithConfig:
        def __init__(self, config: dict[str, Any]) -> None:
            self.config = config

    class NoInit:
        pass

    available = {"config": {"a": 1}, "metrics_client": object()}
    assert bind_arguments(WithConfig, available) == {"config": {"a": 1}}
    assert bind_arguments(NoInit, available) == {}


def test_bind_arguments_returns_a_copy() -> None:
    available = dict(AVAILABLE)
    bound = bind_arguments(f_kwargs, available)
    bound["payload"] = "changed"
    assert available == AVAILABLE


# --- decode_payload -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"a": [1, 2]}', "application/json", {"a": [1, 2]}),
        (b'{"a": 1}', "application/json; charset=utf-8", {"a": 1}),
        (b'{"a": 1}', "Application/JSON", {"a": 1}),
        (b"[1, 2]", "  application/json  ", [1, 2]),
        (b'"s"', "application/problem+json", "s"),
        (b"3", "application/vnd.api+json; charset=utf-8", 3),
        (b"null", "application/json", None),
        ('{"k": "é"}'.encode(), "application/json", {"k": "é"}),
        ("héllo".encode(), "text/plain", "héllo"),
        ("héllo".encode(), "text/plain; charset=utf-8", "héllo"),
        ("héllo".encode(), "TEXT/PLAIN; CHARSET=UTF-8", "héllo"),
        (b"h\xe9llo", "text/plain; charset=latin-1", "héllo"),
        (b"h\xe9llo", 'text/plain; charset="ISO-8859-1"', "héllo"),
        ("héllo".encode("utf-16"), "text/plain; format=flowed; charset=utf-16", "héllo"),
        (b"", "text/plain", ""),
        (b"\x00\x01\xff", "application/octet-stream", b"\x00\x01\xff"),
        (b"\x89PNG", "image/png", b"\x89PNG"),
        (b"<p>", "text/html", b"<p>"),
        (b"a,b", "text/csv", b"a,b"),
        (b'{"a": 1}', "", b'{"a": 1}'),
        (b'{"a": 1}', "application/jsonx", b'{"a": 1}'),
        (b"raw", "multipart/form-data; boundary=x", b"raw"),
    ],
)
def test_decode_payload(body: bytes, content_type: str, expected: Any) -> None:
    got = decode_payload(body, content_type)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b"\xff\xfe\x00", "application/json"),
        (b"{", "application/ld+json"),
        (b"h\xe9llo", "text/plain"),
        (b"h\xe9llo", "text/plain; charset=utf-8"),
        (b"hello", "text/plain; charset=no-such-charset"),
    ],
)
def test_decode_payload_errors(body: bytes, content_type: str) -> None:
    with pytest.raises(PayloadError):
        decode_payload(body, content_type)


def test_payload_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        decode_payload(b"nope", "application/json")


# --- classify -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [{"a": [1, 2.5, None]}, [1, "x"], "text", 42, 2.5, None, True, [], {}],
    ids=["dict", "list", "str", "int", "float", "none", "bool", "empty-list", "empty-dict"],
)
def test_classify_json(value: Any) -> None:
    out = classify(value)
    assert out.kind == "json"
    assert out.content_type == "application/json"
    assert json.loads(out.body) == value
    assert out.chunks is None


@pytest.mark.parametrize(
    ("value", "content_type", "body"),
    [
        (b"\x00\x01", "application/octet-stream", b"\x00\x01"),
        (b"", "application/octet-stream", b""),
        (bytearray(b"ab"), "application/octet-stream", b"ab"),
        (memoryview(b"cd"), "application/octet-stream", b"cd"),
        (Result(b"\x89PNG", "image/png"), "image/png", b"\x89PNG"),
        (Result(b"x"), "application/octet-stream", b"x"),
        (Result(b"<svg/>", "image/svg+xml"), "image/svg+xml", b"<svg/>"),
    ],
    ids=["bytes", "empty", "bytearray", "memoryview", "result-png", "result-default", "svg"],
)
def test_classify_bytes(value: Any, content_type: str, body: bytes) -> None:
    out = classify(value)
    assert out.kind == "bytes"
    assert out.content_type == content_type
    assert type(out.body) is bytes
    assert out.body == body
    assert out.chunks is None


def sync_gen() -> Iterator[bytes]:
    yield b"a"


async def async_gen() -> AsyncIterator[bytes]:
    yield b"a"


@pytest.mark.parametrize(
    "make",
    [sync_gen, async_gen, lambda: iter([b"a"])],
    ids=["generator", "async-generator", "iterator"],
)
async def test_classify_stream(make: Callable[[], Any]) -> None:
    out = classify(make())
    assert out.kind == "stream"
    assert out.content_type == "application/octet-stream"
    assert out.body == b""
    assert out.chunks is not None
    assert await collect(out) == [b"a"]


@pytest.mark.parametrize(
    "value",
    [
        object(),
        {1, 2},
        float("nan"),
        float("inf"),
        {"x": float("nan")},
        [float("-inf")],
        {"when": threading.Lock()},
        Path("/tmp"),
    ],
    ids=["object", "set", "nan", "inf", "nested-nan", "nested-inf", "nested-object", "path"],
)
def test_classify_not_serialisable(value: Any) -> None:
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        classify(value)


async def collect(out: Output) -> list[bytes]:
    assert out.chunks is not None
    return [chunk async for chunk in out.chunks]


def chunks_sync(items: list[Any]) -> Iterator[Any]:
    yield from items


async def chunks_async(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


@pytest.mark.parametrize("producer", [chunks_sync, chunks_async], ids=["sync", "async"])
@pytest.mark.parametrize(
    "items",
    [[], [b"one"], [b"a", bytearray(b"b"), memoryview(b"c"), b""]],
    ids=["empty", "one", "mixed-bytes-types"],
)
async def test_stream_chunks(producer: Callable[[list[Any]], Any], items: list[Any]) -> None:
    got = await collect(classify(producer(items)))
    assert got == [bytes(i) for i in items]
    assert all(type(c) is bytes for c in got)


@pytest.mark.parametrize("producer", [chunks_sync, chunks_async], ids=["sync", "async"])
@pytest.mark.parametrize("bad", ["text", 1, None, {"a": 1}], ids=["str", "int", "none", "dict"])
async def test_stream_non_bytes_chunk(producer: Callable[[list[Any]], Any], bad: Any) -> None:
    out = classify(producer([b"ok", bad, b"never"]))
    assert out.chunks is not None
    got: list[bytes] = []
    with pytest.raises(TypeError, match="chunks must be bytes"):
        async for chunk in out.chunks:
            got.append(chunk)
    assert got == [b"ok"]


@pytest.mark.parametrize("producer", [chunks_sync, chunks_async], ids=["sync", "async"])
async def test_stream_producer_error_propagates(producer: Callable[[list[Any]], Any]) -> None:
    def boom() -> Iterator[bytes]:
        yield b"first"
        raise RuntimeError("producer failed")

    async def aboom() -> AsyncIterator[bytes]:
        yield b"first"
        raise RuntimeError("producer failed")

    out = classify(boom() if producer is chunks_sync else aboom())
    with pytest.raises(RuntimeError, match="producer failed"):
        await collect(out)


async def test_sync_stream_is_produced_in_the_executor() -> None:
    threads: list[str] = []

    def produce() -> Iterator[bytes]:
        for part in (b"x", b"y"):
            threads.append(threading.current_thread().name)
            yield part

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="unit-stream") as executor:
        got = await collect(classify(produce(), executor))
    assert got == [b"x", b"y"]
    assert len(threads) == 2
    assert all(t.startswith("unit-stream") for t in threads)
    assert threading.current_thread().name not in threads


# --- load_handler ---------------------------------------------------------------------------

Loader = Callable[..., LoadedHandler]


@pytest.fixture
def load(tmp_path: Path) -> Iterator[Loader]:
    """Writes a handler file into tmp_path and loads it under a unique module name; restores
    ``sys.path`` and ``sys.modules`` afterwards."""
    saved_path = list(sys.path)
    names: list[str] = []

    def _load(
        source: str,
        config: dict[str, Any] | None = None,
        metrics_client: Any = None,
        filename: str = "handler.py",
    ) -> LoadedHandler:
        path = tmp_path / filename
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        name = f"unit_handler_{uuid.uuid4().hex}"
        names.append(name)
        return load_handler(
            path,
            tmp_path,
            {} if config is None else config,
            module_name=name,
            metrics_client=metrics_client,
        )

    yield _load
    sys.path[:] = saved_path
    for name in names:
        sys.modules.pop(name, None)


SYNC_HANDLER = """
    import threading

    class Handler:
        def __init__(self, config):
            self.config = config

        def handle_async(self, payload, request_id):
            return {
                "payload": payload,
                "request_id": request_id,
                "thread": threading.current_thread().name,
            }
"""

ASYNC_HANDLER = """
    import asyncio
    import threading

    class Handler:
        def __init__(self, config):
            self.config = config

        async def handle_async(self, payload, request_id):
            await asyncio.sleep(0)
            return {
                "payload": payload,
                "request_id": request_id,
                "thread": threading.current_thread().name,
            }
"""


async def test_sync_handler_runs_in_executor_thread(load: Loader) -> None:
    handler = load(SYNC_HANDLER)
    assert not handler.is_async
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="unit-handler") as executor:
        result = await handler.call({"n": 1}, "rid-7", executor)
    assert result["payload"] == {"n": 1}
    assert result["request_id"] == "rid-7"
    assert result["thread"] != threading.current_thread().name
    assert result["thread"] != threading.main_thread().name
    assert result["thread"].startswith("unit-handler")


async def test_async_handler_runs_on_the_loop(load: Loader) -> None:
    handler = load(ASYNC_HANDLER)
    assert handler.is_async
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="unit-handler") as executor:
        result = await handler.call("text", "rid-8", executor)
    assert result == {
        "payload": "text",
        "request_id": "rid-8",
        "thread": threading.current_thread().name,
    }


@pytest.mark.parametrize(
    ("signature", "expected"),
    [
        ("self, payload, request_id", {"payload": "p", "request_id": "r"}),
        ("self, payload", {"payload": "p"}),
        ("self, request_id", {"request_id": "r"}),
        ("self", {}),
        ("self, **kwargs", {"payload": "p", "request_id": "r"}),
        ("self, payload, timeout=5", {"payload": "p"}),
    ],
)
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_handle_async_gets_only_its_arguments(
    load: Loader, signature: str, expected: dict[str, Any], asynchronous: bool
) -> None:
    prefix = "async " if asynchronous else ""
    handler = load(
        f"""
        def received(names):
            names = dict(names)
            names.update(names.pop("kwargs", {{}}))
            return {{k: v for k, v in names.items() if k in ("payload", "request_id")}}

        class Handler:
            {prefix}def handle_async({signature}):
                return received(locals())
        """
    )
    assert handler.arguments("p", "r") == expected
    assert await handler.call("p", "r", None) == expected


def test_handle_async_requiring_unknown_argument_fails_at_load(load: Loader) -> None:
    with pytest.raises(HandlerError, match="'model'"):
        load(
            """
            class Handler:
                def handle_async(self, payload, model):
                    return payload
            """
        )


@pytest.mark.parametrize(
    ("init", "expect_config", "expect_metrics"),
    [
        ("def __init__(self, config):\n    self.config = config", True, False),
        (
            "def __init__(self, config, metrics_client):\n"
            "    self.config = config\n"
            "    self.metrics_client = metrics_client",
            True,
            True,
        ),
        (
            "def __init__(self, metrics_client):\n    self.metrics_client = metrics_client",
            False,
            True,
        ),
        ("def __init__(self):\n    self.ready = True", False, False),
        ("pass", False, False),
        (
            "def __init__(self, **kwargs):\n"
            "    self.config = kwargs['config']\n"
            "    self.metrics_client = kwargs['metrics_client']",
            True,
            True,
        ),
    ],
    ids=["config", "config+metrics", "metrics", "nothing", "no-init", "kwargs"],
)
def test_init_arguments(load: Loader, init: str, expect_config: bool, expect_metrics: bool) -> None:
    metrics = object()
    body = textwrap.indent(init, " " * 4)
    source = (
        f"class Handler:\n{body}\n\n    def handle_async(self, payload):\n        return payload\n"
    )
    handler = load(source, config={"k": "v"}, metrics_client=metrics)
    instance = handler.instance
    assert type(instance).__name__ == "Handler"
    assert hasattr(instance, "config") is expect_config
    if expect_config:
        assert instance.config == {"k": "v"}
    assert hasattr(instance, "metrics_client") is expect_metrics
    if expect_metrics:
        assert instance.metrics_client is metrics


def test_init_requiring_unknown_argument(load: Loader) -> None:
    with pytest.raises(HandlerError, match="'model_path'"):
        load(
            """
            class Handler:
                def __init__(self, config, model_path):
                    pass

                def handle_async(self, payload):
                    return payload
            """
        )


def test_config_is_a_deep_copy(load: Loader) -> None:
    config = {"nested": {"items": [1]}, "name": "x"}
    handler = load(
        """
        class Handler:
            def __init__(self, config):
                config["nested"]["items"].append(2)
                config["added"] = True
                self.config = config

            def handle_async(self, payload):
                return self.config
        """,
        config=config,
    )
    assert config == {"nested": {"items": [1]}, "name": "x"}
    assert handler.instance.config == {"nested": {"items": [1, 2]}, "name": "x", "added": True}
    assert handler.instance.config is not config
    assert handler.instance.config["nested"] is not config["nested"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HandlerError, match="does not exist"):
        load_handler(tmp_path / "absent.py", tmp_path, {}, module_name="unit_absent")
    assert "unit_absent" not in sys.modules


def test_directory_is_not_a_handler_file(tmp_path: Path) -> None:
    with pytest.raises(HandlerError):
        load_handler(tmp_path, tmp_path, {}, module_name="unit_dir")


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("def handle_async(payload):\n    return payload\n", "no class Handler"),
        ("class Predictor:\n    def handle_async(self, payload): ...\n", "no class Handler"),
        ("Handler = 42\n", "no class Handler"),
        ("class Handler:\n    pass\n", "no handle_async"),
        ("class Handler:\n    handle_async = 'not callable'\n", "no handle_async"),
    ],
    ids=["function-only", "other-class", "not-a-class", "no-method", "not-callable"],
)
def test_bad_handler_file(load: Loader, source: str, match: str) -> None:
    with pytest.raises(HandlerError, match=match):
        load(source)


def test_exception_in_init_propagates_unchanged(load: Loader) -> None:
    source = """
        class ModelMissing(Exception):
            pass

        class Handler:
            def __init__(self, config):
                raise ModelMissing("model file not found: " + config["model"])

            def handle_async(self, payload):
                return payload
    """
    with pytest.raises(Exception) as info:
        load(source, config={"model": "m.pt"})
    assert type(info.value).__name__ == "ModelMissing"
    assert not isinstance(info.value, HandlerError)
    assert str(info.value) == "model file not found: m.pt"


def test_python_path_is_importable(tmp_path: Path, load: Loader) -> None:
    helper = f"unit_helper_{uuid.uuid4().hex}"
    (tmp_path / f"{helper}.py").write_text("ANSWER = 42\n", encoding="utf-8")
    try:
        handler = load(
            f"""
            import {helper}

            class Handler:
                def handle_async(self):
                    return {helper}.ANSWER
            """
        )
        assert str(tmp_path) in sys.path
        assert handler.method() == 42
    finally:
        sys.modules.pop(helper, None)


async def test_async_generator_handler_streams(load: Loader) -> None:
    handler = load(
        """
        class Handler:
            async def handle_async(self, payload):
                for part in payload.split():
                    yield part.encode()
        """
    )
    assert handler.is_async_generator
    out = classify(await handler.call("a b c", "r", None))
    assert out.kind == "stream"
    assert await collect(out) == [b"a", b"b", b"c"]


async def test_sync_generator_handler_streams_from_the_executor(load: Loader) -> None:
    handler = load(
        """
        import threading

        class Handler:
            def handle_async(self, payload):
                for part in payload.split():
                    yield (part + ":" + threading.current_thread().name).encode()
        """
    )
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="unit-gen") as executor:
        out = classify(await handler.call("a b", "r", executor), executor)
        got = await collect(out)
    assert out.kind == "stream"
    assert [c.split(b":")[0] for c in got] == [b"a", b"b"]
    assert all(c.split(b":")[1].startswith(b"unit-gen") for c in got)


async def test_handler_result_kinds(load: Loader) -> None:
    handler = load(
        """
        from asyncgw import Result

        class Handler:
            def handle_async(self, payload):
                if payload == "json":
                    return {"ok": True}
                if payload == "bytes":
                    return b"raw"
                return Result(b"\\x89PNG", "image/png")
        """
    )
    outs = {p: classify(await handler.call(p, "r", None)) for p in ("json", "bytes", "png")}
    assert (outs["json"].kind, json.loads(outs["json"].body)) == ("json", {"ok": True})
    assert (outs["bytes"].kind, outs["bytes"].body) == ("bytes", b"raw")
    assert (outs["png"].content_type, outs["png"].body) == ("image/png", b"\x89PNG")


async def test_exception_in_handle_async_propagates(load: Loader) -> None:
    handler = load(
        """
        class Handler:
            def handle_async(self, payload):
                raise ValueError("bad input " + str(payload))
        """
    )
    with pytest.raises(ValueError, match="bad input 3"):
        await handler.call(3, "r", None)
