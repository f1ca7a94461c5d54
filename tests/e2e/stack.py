"""Start the real ``asyncgw`` commands as subprocesses and drive them over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests import servers

APPS = Path(__file__).parent / "apps"
EXAMPLES = Path(__file__).parents[2] / "examples"
ASYNCGW = str(Path(sys.executable).parent / "asyncgw")


@dataclass
class Proc:
    """A running command with its output in a file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    #: Where the process serves /metrics, when it does on a port of its own.
    metrics_port: int = 0

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for_output(self, text: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output():
            if self.process.poll() is not None:
                raise RuntimeError(f"process exited {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not seen in {timeout_s}s:\n{self.output()}")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """``kill -9``."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, then wait for the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@dataclass
class Stack:
    """An API file and the environment for gateway and worker processes."""

    workdir: Path
    env: dict[str, str]
    apis: list[dict[str, Any]] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)
    port: int = 0

    @property
    def config_path(self) -> Path:
        return self.workdir / "asyncgw.yaml"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_api(
        self, name: str, code: str | Path, handler: dict[str, Any] | None = None, **fields: Any
    ) -> None:
        """Add an API running ``code`` (a path, or the name of a module in ``apps/``)."""
        handler_fields = handler or {}
        path = code if isinstance(code, Path) else APPS / f"{code}.py"
        self.apis.append(
            {
                "name": name,
                "kind": "AsyncAPI",
                "handler": {"path": str(path), "python_path": str(APPS), **handler_fields},
                **fields,
            }
        )
        self.config_path.write_text(yaml.safe_dump(self.apis))

    def _start(self, args: list[str], name: str, env: Mapping[str, str] | None = None) -> Proc:
        log_path = self.workdir / f"{name}.{len(self.procs)}.log"
        process = subprocess.Popen(
            [ASYNCGW, *args, "--config", str(self.config_path)],
            env={**self.env, **(env or {})},
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        proc = Proc(process, log_path)
        self.procs.append(proc)
        return proc

    async def gateway(self) -> Proc:
        self.port = servers.free_port()
        proc = self._start(["gateway", "--host", "127.0.0.1", "--port", str(self.port)], "gateway")
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"{self.base_url}/readyz") as answer:
                        if answer.status == 200:
                            return proc
                except aiohttp.ClientError:
                    pass
                if proc.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gateway did not become ready:\n{proc.output()}")
                await asyncio.sleep(0.05)

    async def up(self) -> Proc:
        """``asyncgw up``: gateway and workers in one process (on the same port when run again)."""
        self.port = self.port or servers.free_port()
        proc = self._start(["up", "--port", str(self.port)], "up")
        await proc.wait_for_output("asyncgw is up on", 60)
        return proc

    def dlq(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``asyncgw dlq ARGS`` to completion."""
        return subprocess.run(
            [ASYNCGW, "dlq", *args, "--config", str(self.config_path)],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )

    async def worker(self, api: str, env: Mapping[str, str] | None = None) -> Proc:
        port = servers.free_port()
        args = ["worker", "--api", api, "--metrics-port", str(port)]
        proc = self._start(args, f"worker-{api}", env)
        proc.metrics_port = port
        await proc.wait_for_output("worker consuming", 60)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.process.poll() is None:
                proc.process.kill()
                proc.process.wait()


async def submit(
    http: aiohttp.ClientSession, url: str, data: Any = None, **kwargs: Any
) -> dict[str, Any]:
    async with http.post(url, data=data, **kwargs) as answer:
        body = await answer.json()
        assert answer.status == 202, (answer.status, body)
        assert answer.headers["Location"].endswith(body["id"])
        return dict(body)


async def wait_terminal(
    http: aiohttp.ClientSession, url: str, timeout_s: float = 60
) -> dict[str, Any]:
    """Poll ``GET url`` until the record is terminal."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with http.get(url) as answer:
            record = await answer.json()
        if record.get("status") in {"completed", "failed", "canceled"}:
            return dict(record)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} still {record.get('status')} after {timeout_s}s")
        await asyncio.sleep(0.05)


def embedded_env() -> dict[str, str]:
    """The environment of a newcomer: no ASYNCGW_* or AWS_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("ASYNCGW_", "AWS_"))}


def production_env(
    amqp_url: str, mongo_url: str, s3_endpoint: str, bucket: str, prefix: str
) -> dict[str, str]:
    return {
        **os.environ,
        "ASYNCGW_QUEUE_URL": amqp_url,
        "ASYNCGW_STORE_URL": mongo_url,
        "ASYNCGW_STORAGE_URL": f"s3://{bucket}/{prefix}",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "ASYNCGW_GRACE_PERIOD": "5s",
    }


@dataclass
class System:
    """The same scenario on either backend set: ``production`` runs ``asyncgw gateway`` and one
    ``asyncgw worker`` per API on RabbitMQ, SecantusDB and moto; ``embedded`` runs ``asyncgw up``
    on the in-process queue, SQLite and files. An API with ``autoscaling.min_replicas: 0`` gets no
    worker in either."""

    kind: str
    stack: Stack
    workers: dict[str, Proc] = field(default_factory=dict)
    up_proc: Proc | None = None

    @property
    def url(self) -> str:
        return self.stack.base_url

    async def start(self) -> None:
        if self.kind == "embedded":
            self.up_proc = await self.stack.up()
            return
        await self.stack.gateway()
        for api in self.stack.apis:
            if api.get("autoscaling", {}).get("min_replicas") != 0:
                self.workers[api["name"]] = await self.stack.worker(api["name"])

    async def stop(self) -> None:
        """Stop what processes requests (``up`` or the workers), gracefully."""
        if self.up_proc is not None:
            assert self.up_proc.stop() == 0
            self.up_proc = None
        for proc in self.workers.values():
            assert proc.stop() == 0
        self.workers.clear()

    async def resume(self) -> None:
        """Start again what ``stop`` stopped."""
        if self.kind == "embedded":
            self.up_proc = await self.stack.up()
        else:
            for api in self.stack.apis:
                if api.get("autoscaling", {}).get("min_replicas") != 0:
                    self.workers[api["name"]] = await self.stack.worker(api["name"])
