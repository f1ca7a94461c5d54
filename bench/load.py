"""A closed-loop load generator for a running gateway: submits N requests with C in flight, then
waits until the API's summary counts them all completed, and prints the submit and end-to-end
rates.

    python bench/load.py --url http://127.0.0.1:8080 --api noop -n 1000 -c 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

import aiohttp


async def run(url: str, api: str, total: int, concurrency: int, size: int) -> dict[str, float]:
    payload = json.dumps({"data": "x" * max(0, size - 12)}).encode()
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    codes: dict[int, int] = {}
    remaining = iter(range(total))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(f"{url}/{api}") as answer:
            before = (await answer.json())["counts"]["completed"]

        async def client() -> None:
            for _ in remaining:
                t0 = time.perf_counter()
                async with http.post(f"{url}/{api}", data=payload, headers=headers) as answer:
                    await answer.read()
                    codes[answer.status] = codes.get(answer.status, 0) + 1
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        submitted = time.perf_counter()
        while True:
            async with http.get(f"{url}/{api}") as answer:
                summary = await answer.json()
            if summary["counts"]["completed"] - before >= codes.get(202, 0):
                break
            await asyncio.sleep(0.05)
        finished = time.perf_counter()
    latencies.sort()
    return {
        "accepted": codes.get(202, 0),
        "other_answers": sum(n for c, n in codes.items() if c != 202),
        "submit_rps": total / (submitted - start),
        "submit_p50_ms": 1000 * statistics.median(latencies),
        "submit_p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "end_to_end_rps": total / (finished - start),
        "queue_ready_after": summary["queue"]["ready"],
        "completed": summary["counts"]["completed"] - before,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--api", required=True)
    parser.add_argument("-n", "--requests", type=int, default=1000)
    parser.add_argument("-c", "--concurrency", type=int, default=64)
    parser.add_argument("--size", type=int, default=1024, help="payload bytes [1024]")
    args = parser.parse_args()
    result = asyncio.run(run(args.url, args.api, args.requests, args.concurrency, args.size))
    print(json.dumps(result, indent=2))
    return 0 if result["other_answers"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
