"""A soak of three replicas (`serve` processes on the demo model) sharing a real redis-server, behind nginx
round-robin: many terminal clients with random drops while one replica is SIGKILLed and started again and Redis
is restarted (without persistence: its data is gone); every client still gets its translation whole, every seq
exactly once, the deltas adding up to done.text. Short form in `make test` (60 clients); the long form:
`HMT_REPLICA_SOAK_CLIENTS=500`."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hmt_stream.client import StreamClient
from tests.replicas.cluster import Cluster, check, stuck
from tests.replicas.redis_server import RedisServer

pytestmark = pytest.mark.slow

CLIENTS = int(os.environ.get("HMT_REPLICA_SOAK_CLIENTS", "60"))
AT_ONCE = 40
TEXTS = ["Hello there, how are you?", "The weather is nice today.", "Where is the station?", "Thank you very much!"]
TARGETS = ["fr", "de", "es", "it"]


@pytest.fixture(scope="module")
def cluster(redis_server: RedisServer, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Short translations: 80 new tokens.
    cluster = Cluster(tmp_path_factory.mktemp("replicas"), redis_server, demo_dir, 3,
                      HMT_GENERATION_MAX_NEW_TOKENS="80", HMT_SCHEDULER_MAX_QUEUE=str(20 * CLIENTS)).start()
    yield cluster
    cluster.stop()


async def one_client(http: aiohttp.ClientSession, number: int, rng: random.Random) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    drop_after = rng.choice([None, 1, 2, 5])
    client = StreamClient(http, transport=rng.choice(["websocket", "sse", "poll"]), attempts=12)
    task = asyncio.current_task()

    def take(event: dict[str, Any]) -> None:
        events.append(event)
        if task is not None:
            task.set_name(f"{client.forced} {event['session']} seq {event['seq']} {event['type']}")
        if drop_after is not None and sum(e["type"] == "delta" for e in events) == drop_after:
            client.drop()

    client.on_event = take
    terminal = await client.translate(f"{TEXTS[number % 4]} ({number})", "en", TARGETS[number % 4])
    assert terminal is events[-1]
    return events


async def test_clients_lose_nothing_while_a_replica_and_redis_restart(cluster: Cluster) -> None:
    rng = random.Random(14)
    finished = serving = 0
    busy: list[int] = []  # clients being served at each blow
    gate = asyncio.Semaphore(AT_ONCE)

    async def run(number: int) -> list[dict[str, Any]]:
        nonlocal finished, serving
        async with gate:
            serving += 1
            try:
                events = await one_client(http, number, rng)
            finally:
                serving -= 1
        finished += 1
        return events

    async def strike_while_serving() -> None:
        # Clients come one every 0.3 s by now and may all be done at a given instant: wait for one being served.
        async with asyncio.timeout(30):
            while serving == 0:
                await asyncio.sleep(0.01)
        busy.append(serving)

    async def chaos() -> None:
        while finished < CLIENTS // 4:
            await asyncio.sleep(0.1)
        victim = cluster.replicas[1]
        await strike_while_serving()
        victim.kill()  # in the middle of its translations: the others adopt them
        victim.start()
        await asyncio.sleep(8)  # its sessions adopted before Redis forgets them
        await strike_while_serving()
        cluster.redis.stop()  # its data is gone: the replicas write their sessions back
        await asyncio.sleep(2)
        cluster.redis.start()

    async with aiohttp.ClientSession(cluster.url, timeout=aiohttp.ClientTimeout(total=60)) as http:
        tasks: list[asyncio.Task[list[dict[str, Any]]]] = []
        trouble = asyncio.create_task(chaos())
        # Clients keep coming until both blows have struck (at least CLIENTS of them).
        while len(tasks) < CLIENTS or not trouble.done():
            tasks.append(asyncio.create_task(run(len(tasks))))
            await asyncio.sleep(0.05 if len(tasks) < CLIENTS else 0.3)
            assert len(tasks) < 20 * CLIENTS, "the blows never struck"
        await trouble
        _, pending = await asyncio.wait(tasks, timeout=200)
        assert not pending, stuck(cluster, pending)
        logs = [task.result() for task in tasks]
    assert len(busy) == 2 and min(busy) > 0, busy  # both struck while clients were being served
    for events in logs:
        check(events)
