"""The floor: what RabbitMQ and MongoDB give with no asyncgw code at all.

A submit is one ``insert_one`` of a small record and one persistent publish, confirmed, to a
quorum queue; processing a message is one ``update_one`` of its record and an ack. Both sides use
one connection and keep ``in_flight`` operations going at once, as asyncgw's gateway and worker do.

    python bench/floor.py consume --amqp URL --mongo URL --queue NAME -n 5000

runs the consuming side in its own process; the harness drives the submitting side.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
from pymongo import AsyncMongoClient


def _client(mongo_url: str) -> AsyncMongoClient[dict[str, Any]]:
    """Without retryable writes: SecantusDB keeps every retryable write's reply and scans them
    on each new one, so a single-document write gets slower the more of them the server took.
    The floor should measure the store, not that history (see docs/benchmarks.md)."""
    return AsyncMongoClient(mongo_url, tz_aware=True, retryWrites=False)


def _collection(client: AsyncMongoClient[dict[str, Any]]) -> Any:
    return client["bench_floor"]["requests"]


async def declare(amqp_url: str, queue: str) -> None:
    """A fresh, empty quorum queue."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)
        await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})


async def submit(
    amqp_url: str, mongo_url: str, queue: str, total: int, in_flight: int, size: int
) -> dict[str, Any]:
    """Insert and publish ``total`` requests of ``size`` bytes; the rate and each latency."""
    body = b"x" * size
    client = _client(mongo_url)
    requests = _collection(client)
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    latencies: list[float] = []
    remaining = iter(range(total))

    async def one_at_a_time() -> None:
        for _ in remaining:
            t0 = time.perf_counter()
            request_id = uuid.uuid4().hex
            await requests.insert_one(
                {"_id": request_id, "status": "in_queue", "created_at": datetime.now(UTC)}
            )
            message = aio_pika.Message(
                body,
                message_id=request_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={"sent": time.time()},
            )
            await channel.default_exchange.publish(message, routing_key=queue)
            latencies.append(time.perf_counter() - t0)

    try:
        start = time.perf_counter()
        await asyncio.gather(*(one_at_a_time() for _ in range(in_flight)))
        elapsed = time.perf_counter() - start
    finally:
        await connection.close()
        await client.close()
    return {"rps": total / elapsed, "started": start, "latencies": latencies}


async def consume(amqp_url: str, mongo_url: str, queue: str, total: int, in_flight: int) -> None:
    """Process ``total`` messages: one conditional update of the record each, then the ack."""
    client = _client(mongo_url)
    requests = _collection(client)
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=in_flight)
    queue_ = await channel.get_queue(queue)
    done = asyncio.Event()
    count = 0

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal count
        await requests.update_one(
            {"_id": message.message_id, "status": "in_queue"},
            {"$set": {"status": "completed", "finished_at": datetime.now(UTC)}},
        )
        await message.ack()
        count += 1
        if count >= total:
            done.set()

    await queue_.consume(on_message)
    print("consuming", flush=True)
    try:
        await done.wait()
    finally:
        await connection.close()
        await client.close()


async def last_finished(mongo_url: str) -> float:
    """When the last request completed (wall clock)."""
    client = _client(mongo_url)
    try:
        doc = await _collection(client).find_one(
            {"status": "completed"}, sort=[("finished_at", -1)]
        )
    finally:
        await client.close()
    if doc is None:
        raise RuntimeError("no request completed")
    return float(doc["finished_at"].timestamp())


async def reset(mongo_url: str) -> None:
    client = _client(mongo_url)
    try:
        await _collection(client).drop()
    finally:
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["consume"])
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--mongo", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("-n", "--requests", type=int, required=True)
    parser.add_argument("-c", "--in-flight", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(consume(args.amqp, args.mongo, args.queue, args.requests, args.in_flight))
    return 0


if __name__ == "__main__":
    sys.exit(main())
