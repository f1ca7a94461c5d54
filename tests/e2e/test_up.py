"""``asyncgw up`` with no servers at all: the whole lifecycle in one process, a crash and restart
that loses nothing, and the README's run command."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import aiohttp

from tests import servers
from tests.e2e.stack import EXAMPLES, Proc, Stack, embedded_env, submit, wait_terminal

ROOT = Path(__file__).parents[2]


async def test_up_runs_json_text_and_binary_requests(
    local: Stack, http: aiohttp.ClientSession
) -> None:
    local.add_api("iris", EXAMPLES / "iris" / "handler.py")
    local.add_api("shout", EXAMPLES / "shout" / "handler.py")
    local.add_api("checksum", EXAMPLES / "checksum" / "handler.py")
    proc = await local.up()
    base = local.base_url
    iris = await submit(http, f"{base}/iris", json={"petal_length": 1.0})
    shout = await submit(http, f"{base}/shout", data="abc", headers={"Content-Type": "text/plain"})
    blob = os.urandom(300 * 1024)  # over the inline limit: goes through the file store
    checksum = await submit(http, f"{base}/checksum", data=blob)

    record = await wait_terminal(http, f"{base}/iris/{iris['id']}")
    assert record["result"] == {"label": "setosa", "request_id": iris["id"]}
    record = await wait_terminal(http, f"{base}/shout/{shout['id']}")
    assert record["result"] == {"text": "ABC", "length": 3}
    record = await wait_terminal(http, f"{base}/checksum/{checksum['id']}")
    assert record["status"] == "completed"
    async with http.get(f"{base}/checksum/{checksum['id']}/result") as answer:
        assert await answer.read() == hashlib.sha256(blob).digest()
    assert (local.workdir / ".asyncgw" / "asyncgw.db").exists()
    proc.process.send_signal(signal.SIGINT)
    assert proc.process.wait(30) == 0
    assert '"msg": "stopped"' in proc.output()


async def test_kill_9_and_restart_loses_no_request(
    local: Stack, http: aiohttp.ClientSession
) -> None:
    marks = local.workdir / "marks"
    marks.mkdir()
    local.add_api(
        "slow",
        "slow",
        handler={"config": {"seconds": 0.3, "marks": str(marks)}, "max_concurrency": 5},
    )
    first = await local.up()
    ids = [(await submit(http, f"{local.base_url}/slow", json={"n": i}))["id"] for i in range(50)]
    deadline = time.monotonic() + 30
    while len(list(marks.glob(f"*.start.{first.process.pid}"))) < 8:
        assert time.monotonic() < deadline, "requests never started"
        await asyncio.sleep(0.02)
    first.kill()
    second = await local.up()
    assert "queued" in second.output() and "unfinished requests again" in second.output()

    records = [await wait_terminal(http, f"{local.base_url}/slow/{i}", 120) for i in ids]
    assert [r["status"] for r in records] == ["completed"] * 50
    first_pid, second_pid = first.process.pid, second.process.pid
    reran = 0
    for record in records:
        starts = [p.name.rsplit(".", 1)[1] for p in marks.glob(f"{record['id']}.start.*")]
        # Every run of the handler is an attempt; an attempt can also be claimed and cut short
        # by the crash before the handler started. The only repeat is the one the crash forced.
        assert len(starts) <= record["attempts"] <= 2
        assert starts.count(str(second_pid)) <= 1
        assert starts.count(str(first_pid)) <= 1
        reran += record["attempts"] == 2
    assert reran <= 5  # at most the requests claimed (5 slots) when the process died


def readme_run_command() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"```sh\n(scripts/run\.sh[^\n]*)\n```", text)
    assert match, "README has no run command block"
    return match.group(1)


async def test_readme_run_command_serves_the_examples(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    command = readme_run_command()
    port = servers.free_port()
    log_path = tmp_path / "run.log"
    process = subprocess.Popen(
        f"{command} --port {port} --data-dir {tmp_path / 'data'}",
        shell=True,
        cwd=ROOT,
        env=embedded_env(),
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc = Proc(process, log_path)
    try:
        await proc.wait_for_output("asyncgw is up on", 120)
        curl = await asyncio.create_subprocess_exec(
            "curl",
            "-s",
            "-X",
            "POST",
            f"http://127.0.0.1:{port}/iris",
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"petal_length": 6, "petal_width": 2}',
            stdout=subprocess.PIPE,
        )
        out, _ = await curl.communicate()
        assert curl.returncode == 0
        request_id = __import__("json").loads(out)["id"]
        record = await wait_terminal(http, f"http://127.0.0.1:{port}/iris/{request_id}")
        assert record["result"]["label"] == "virginica"
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl+C reaches the whole process group
        process.wait(30)
    assert '"msg": "stopped"' in proc.output()


async def test_up_also_runs_on_rabbitmq_mongodb_and_s3(
    stack: Stack, http: aiohttp.ClientSession, api_name: str
) -> None:
    stack.add_api(api_name, EXAMPLES / "checksum" / "handler.py")
    proc = await stack.up()
    blob = os.urandom(400 * 1024)
    accepted = await submit(http, f"{stack.base_url}/{api_name}", data=blob)
    record = await wait_terminal(http, f"{stack.base_url}/{api_name}/{accepted['id']}")
    assert record["status"] == "completed"
    async with http.get(f"{stack.base_url}/{api_name}/{accepted['id']}/result") as answer:
        assert await answer.read() == hashlib.sha256(blob).digest()
    assert not (stack.workdir / ".asyncgw").exists()  # nothing embedded was used
    proc.process.send_signal(signal.SIGTERM)
    assert proc.process.wait(30) == 0


async def test_idle_api_scales_from_zero_on_a_submit(
    local: Stack, http: aiohttp.ClientSession
) -> None:
    local.env["ASYNCGW_SCALER_INTERVAL"] = "0.2s"
    local.add_api(
        "lazy",
        EXAMPLES / "shout" / "handler.py",
        autoscaling={"min_replicas": 0, "window": "1s", "downscale_stabilization_period": "1s"},
    )
    await local.up()
    url = f"{local.base_url}/lazy"
    async with http.get(url) as answer:
        assert (await answer.json())["replicas"]["current"] == 0  # no worker slots while idle
    accepted = await submit(http, url, data="wake", headers={"Content-Type": "text/plain"})
    record = await wait_terminal(http, f"{url}/{accepted['id']}")
    assert record["result"] == {"text": "WAKE", "length": 4}
    deadline = time.monotonic() + 30
    while True:  # and back to zero once idle for the downscale window
        async with http.get(url) as answer:
            if (await answer.json())["replicas"]["current"] == 0:
                break
        assert time.monotonic() < deadline, "never scaled back to zero"
        await asyncio.sleep(0.1)
