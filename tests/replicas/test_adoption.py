"""Three replicas behind nginx round-robin; the one generating is SIGKILLed mid-generation: every session still
ends in `done` on another replica, its seq without gaps and its deltas adding up to done.text."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.replicas.cluster import Cluster, check
from tests.replicas.redis_server import RedisServer

pytestmark = pytest.mark.slow

TEXT = "Hello there, how are you?"  # greedy on the demo model: text from the first tokens on, up to the limit
SESSIONS = 6  # more than the replica's 4 slots: two wait in line when it dies


@pytest.fixture(scope="module")
def cluster(redis_server: RedisServer, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("replicas"), redis_server, demo_dir, 3).start()
    yield cluster
    cluster.stop()


async def follow(http: aiohttp.ClientSession, session: str, events: list[dict[str, Any]]) -> None:
    """Long-poll through the proxy until the terminal event, through whatever errors a dying replica causes."""
    while not events or events[-1]["type"] not in ("done", "error", "cancelled"):
        try:
            async with http.get(f"/api/sessions/{session}/events?after={len(events)}&timeout=5") as response:
                if response.status != 200:
                    await asyncio.sleep(0.2)
                    continue
                page = await response.json()
        except (aiohttp.ClientError, TimeoutError):
            await asyncio.sleep(0.2)
            continue
        for event in page["events"]:
            assert event["seq"] == len(events) + 1, (event, len(events))  # never a gap, never a repeat
            events.append(event)


async def test_the_sessions_of_a_killed_replica_end_in_done_on_another(cluster: Cluster) -> None:
    doomed = cluster.replicas[0]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as direct:
        sessions = []
        for index in range(SESSIONS):
            body = {"text": TEXT, "source": "en", "target": ["fr", "de", "es", "it", "pt", "ru"][index]}
            async with direct.post(f"{doomed.base}/api/sessions", json=body) as response:
                assert response.status == 201, await response.text()
                sessions.append((await response.json())["session"])
    logs: list[list[dict[str, Any]]] = [[] for _ in sessions]
    async with aiohttp.ClientSession(cluster.url, timeout=aiohttp.ClientTimeout(total=30)) as http:
        followers = [asyncio.create_task(follow(http, session, log))
                     for session, log in zip(sessions, logs, strict=True)]
        # Mid-generation: the first sessions have text out, the last still wait for a slot.
        while sum(any(e["type"] == "delta" for e in log) for log in logs) < 2:
            await asyncio.sleep(0.05)
        doomed.kill()
        at_kill = [[e["type"] for e in log] for log in logs]
        await asyncio.wait_for(asyncio.gather(*followers), 180)
    for log in logs:
        check(log)
    # Cut in the middle of its text: continued from there by another replica.
    assert any("delta" in types and "done" not in types for types in at_kill), at_kill
    assert any(any(e["type"] == "queued" for e in log) for log in logs)  # some had waited in line
