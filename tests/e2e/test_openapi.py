"""Schemathesis fuzzes the gateway from its own ``/openapi.json``: answers match the document,
no request gets a 500, methods not listed get 405. (A request the schema allows may still be
refused with a declared 4xx by policy — a private webhook URL — so that one check is left out.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.e2e.stack import EXAMPLES, Stack

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


async def test_gateway_conforms_to_its_openapi_document(
    local: Stack, http: aiohttp.ClientSession
) -> None:
    local.add_api("iris", EXAMPLES / "iris" / "handler.py")
    local.add_api("shout", EXAMPLES / "shout" / "handler.py")
    await local.up()
    async with http.get(f"{local.base_url}/openapi.json") as answer:
        assert answer.status == 200
        document = await answer.json()
    assert document["openapi"].startswith("3.1")
    run = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{local.base_url}/openapi.json",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=local.workdir,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
