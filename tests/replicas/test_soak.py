"""Many terminal clients over three replicas behind nginx round-robin, with random drops; meanwhile one replica is
SIGKILLed and started again, and Redis is restarted (without persistence: its data is gone): every client still
gets its translation whole, every seq exactly once, the deltas adding up to done.text.

Short form in `make test` (60 clients); the long form: `HMT_REPLICA_SOAK_CLIENTS=500`."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hmt_stream.client import StreamClient
from tests.replicas.cluster import Cluster, check, wait_ready
from tests.replicas.redis_server import RedisServer

pytestmark = pytest.mark.slow

CLIENTS = int(os.environ.get("HMT_REPLICA_SOAK_CLIENTS", "60"))
AT_ONCE = 40
TEXTS = ["Hello there, how are you?", "The weather is nice today.", "Where is the station?", "Thank you very much!"]
TARGETS = ["fr", "de", "es", "it"]


@pytest.fixture(scope="module")
def cluster(redis_server: RedisServer, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("replicas"), redis_server, demo_dir, 3,
                      HMT_GENERATION_MAX_NEW_TOKENS="40", HMT_SCHEDULER_MAX_QUEUE=str(CLIENTS),
                      HMT_GENERATION_TEMPERATURE="0.7").start()
    yield cluster
    cluster.stop()


async def one_client(http: aiohttp.ClientSession, number: int, rng: random.Random) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    drop_after = rng.choice([None, 1, 2, 5])
    client = StreamClient(http, transport=rng.choice(["websocket", "sse", "poll"]), attempts=12)

    def take(event: dict[str, Any]) -> None:
        events.append(event)
        if drop_after is not None and sum(e["type"] == "delta" for e in events) == drop_after:
            client.drop()

    client.on_event = take
    terminal = await client.translate(f"{TEXTS[number % 4]} ({number})", "en", TARGETS[number % 4])
    assert terminal is events[-1]
    return events


async def test_clients_lose_nothing_while_a_replica_and_redis_restart(cluster: Cluster) -> None:
    rng = random.Random(14)
    finished = 0
    gate = asyncio.Semaphore(AT_ONCE)

    async def run(number: int) -> list[dict[str, Any]]:
        nonlocal finished
        async with gate:
            events = await one_client(http, number, rng)
        finished += 1
        return events

    async def chaos() -> None:
        while finished < CLIENTS // 4:
            await asyncio.sleep(0.1)
        victim = cluster.replicas[1]
        victim.kill()  # in the middle of its translations: the others adopt them
        victim.start()
        killed_at = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, wait_ready, victim)
        while finished < CLIENTS // 2 or time.monotonic() - killed_at < 10:
            await asyncio.sleep(0.1)
        cluster.redis.stop()  # its data is gone: the replicas write their sessions back
        await asyncio.sleep(2)
        cluster.redis.start()

    async with aiohttp.ClientSession(cluster.url, timeout=aiohttp.ClientTimeout(total=60)) as http:
        trouble = asyncio.create_task(chaos())
        logs = await asyncio.wait_for(asyncio.gather(*(run(number) for number in range(CLIENTS))), 600)
        await trouble
    for events in logs:
        check(events)
