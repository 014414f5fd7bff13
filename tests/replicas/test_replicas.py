"""Two replicas (`serve` processes on the demo model) sharing a real redis-server, behind nginx round-robin: a
session created on one is read on the other by each transport, by the terminal client and by the page; a cancel
sent to one stops the other's generation; the one generating is SIGKILLed and the other finishes its sessions."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hmt_stream.client import StreamClient
from tests.replicas.cluster import Cluster, check, stuck
from tests.replicas.redis_server import RedisServer

pytestmark = pytest.mark.slow

TEXT = "Hello there, how are you?"  # greedy on the demo model: text from the first tokens on, up to the limit


@pytest.fixture(scope="module")
def cluster(redis_server: RedisServer, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("replicas"), redis_server, demo_dir, 2).start()
    yield cluster
    cluster.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        yield session


async def create(http: aiohttp.ClientSession, base: str, text: str) -> str:
    async with http.post(f"{base}/api/sessions", json={"text": text, "source": "en", "target": "fr"}) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["session"])


async def by_sse(http: aiohttp.ClientSession, base: str, session: str) -> list[dict[str, Any]]:
    async with http.get(f"{base}/api/sessions/{session}/events",
                        headers={"Accept": "text/event-stream"}) as response:
        assert response.status == 200
        text = await response.text()
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


async def by_poll(http: aiohttp.ClientSession, base: str, session: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while not events or events[-1]["type"] not in ("done", "error", "cancelled"):
        async with http.get(f"{base}/api/sessions/{session}/events?after={len(events)}&timeout=5") as response:
            assert response.status == 200, await response.text()
            events += (await response.json())["events"]
    return events


async def by_websocket(http: aiohttp.ClientSession, base: str, session: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with http.ws_connect(f"{base}/ws") as ws:
        assert (await ws.receive_json())["type"] == "hello"
        await ws.send_json({"type": "resume", "session": session, "after": 0})
        while not events or events[-1]["type"] not in ("done", "error", "cancelled"):
            message = await asyncio.wait_for(ws.receive_json(), 60)
            if "seq" in message:
                events.append(message)
    return events


async def test_a_session_created_on_one_replica_is_read_on_the_other_by_each_transport(
        cluster: Cluster, http: aiohttp.ClientSession) -> None:
    a, b = cluster.replicas
    session = await create(http, a.base, TEXT)
    logs = await asyncio.gather(*(read(http, b.base, session) for read in (by_sse, by_poll, by_websocket)))
    text = check(logs[0])
    assert text and logs[1] == logs[0] and logs[2] == logs[0]
    # Read again on A, which generated it: the very same log.
    assert await by_poll(http, a.base, session) == logs[0]


@pytest.mark.parametrize("transport", ["websocket", "sse", "poll"])
async def test_the_terminal_client_through_round_robin_reads_on_both_replicas(
        cluster: Cluster, http: aiohttp.ClientSession, transport: str) -> None:
    events: list[dict[str, Any]] = []
    dropped = False

    async with aiohttp.ClientSession(cluster.url, timeout=aiohttp.ClientTimeout(total=120)) as proxied:
        client = StreamClient(proxied, transport=transport, on_event=events.append)

        def drop_once(event: dict[str, Any]) -> None:
            nonlocal dropped
            events.append(event)
            if not dropped:  # at its first event, long before its last
                dropped = True
                client.drop()  # the next connection goes to the other replica

        client.on_event = drop_once
        terminal = await client.translate(f"{TEXT} ({transport})", "en", "de")
    assert terminal["type"] == "done"
    check(events)
    # nginx passed this session's requests to both replicas.
    assert client.session is not None
    # nginx logs a WebSocket when it closes: the last one may take a moment.
    for _ in range(50):
        ports = {port for _, path, port in cluster.served() if client.session in path or path == "/ws"}
        if ports == {replica.port for replica in cluster.replicas}:
            break
        await asyncio.sleep(0.1)
    assert ports == {replica.port for replica in cluster.replicas}, cluster.served()


async def test_a_cancel_sent_to_one_replica_stops_the_generation_on_the_other(
        cluster: Cluster, http: aiohttp.ClientSession) -> None:
    a, b = cluster.replicas
    session = await create(http, a.base, TEXT)
    events: list[dict[str, Any]] = []
    async with http.get(f"{a.base}/api/sessions/{session}/events",
                        headers={"Accept": "text/event-stream"}) as response:
        async for line in response.content:
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
                if events[-1]["type"] == "delta" and len(events) == 3:
                    async with http.delete(f"{b.base}/api/sessions/{session}") as cancelled:
                        assert cancelled.status == 200
    assert events[-1]["type"] == "cancelled", events[-1]
    async with http.get(f"{a.base}/api/sessions/{session}") as response:
        assert (await response.json())["state"] == "cancelled"


def test_the_page_through_round_robin_reads_its_session_on_the_other_replica(cluster: Cluster) -> None:
    """The page (Chromium) with WebSocket refused: it creates its session with a POST and follows it over SSE, the
    two requests landing on different replicas; its output is the session's text, every seq once."""
    from playwright.sync_api import WebSocketRoute, sync_playwright

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
    from tests.e2e.helpers import output, session_id, translate, wait_finished

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))

            def refuse(ws: WebSocketRoute) -> None:
                ws.close()

            page.route_web_socket("**/ws", refuse)
            page.goto(cluster.url)
            page.wait_for_selector("body[data-ready='true']")
            translate(page, TEXT, "en", "ja")
            assert wait_finished(page) == "done"
            session = session_id(page)
            seqs = page.evaluate("window.hmt.translation.seqs")
            text = output(page)
        finally:
            browser.close()
    assert errors == []
    with urllib.request.urlopen(f"{cluster.url}/api/sessions/{session}") as response:
        stored = json.load(response)
    assert stored["state"] == "done" and text == stored["text"] != ""
    assert seqs == list(range(1, stored["seq"] + 1))
    for _ in range(50):  # nginx logs a stream once it has closed
        created = [port for method, path, port in cluster.served() if method == "POST" and path == "/api/sessions"]
        read = {port for method, path, port in cluster.served() if path == f"/api/sessions/{session}/events"}
        if read - {created[-1]}:
            break
        time.sleep(0.1)
    assert read - {created[-1]}, (created, read)  # read on a replica that did not create it


# -- a replica's death ---------------------------------------------------------------------------------------

SESSIONS = 6  # more than the replica's 4 slots: two wait in line when it dies
STATUS: dict[str, str] = {}  # each session's last answer (a failure's report)


async def follow(http: aiohttp.ClientSession, session: str, events: list[dict[str, Any]]) -> None:
    """Long-poll through the proxy until the terminal event, through whatever errors a dying replica causes."""
    while not events or events[-1]["type"] not in ("done", "error", "cancelled"):
        try:
            async with http.get(f"/api/sessions/{session}/events?after={len(events)}&timeout=5") as response:
                STATUS[session] = f"{response.status} {await response.text()}"[:200]
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


async def test_the_sessions_of_a_killed_replica_end_in_done_on_the_other(cluster: Cluster) -> None:
    """Last in this module: replica A is SIGKILLed mid-generation; every session still ends in `done` on B, its
    seq without gaps and its deltas adding up to done.text."""
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
        began = time.monotonic()
        while sum(any(e["type"] == "delta" for e in log) for log in logs) < 2:
            await asyncio.sleep(0.05)
            assert time.monotonic() - began < 90, stuck(cluster, set(followers)) + f"\n{STATUS}\n{logs}"
        doomed.kill()
        at_kill = [[e["type"] for e in log] for log in logs]
        _, pending = await asyncio.wait(followers, timeout=150)
        assert not pending, stuck(cluster, pending) + f"\n{sessions}\n" + "\n".join(
            f"{session}: {[e['type'] for e in log]}" for session, log in zip(sessions, logs, strict=True))
    for log in logs:
        check(log)
    # Cut in the middle of its text: continued from there by another replica.
    assert any("delta" in types and "done" not in types for types in at_kill), at_kill
    assert any(any(e["type"] == "queued" for e in log) for log in logs)  # some had waited in line
