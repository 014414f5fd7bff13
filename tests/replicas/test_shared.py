"""Two apps in this process sharing one real Redis: a session started on A is read, cancelled and owned on B."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestClient

from hmt_stream.keys import TRANSLATOR
from tests.conftest import MakeClient
from tests.replicas.redis_server import RedisServer

BODY = {"text": "Hello there, how are you?", "source": "en", "target": "fr"}


async def pair(make_client: MakeClient, redis: RedisServer, **overrides: Any) -> list[TestClient[Any, Any]]:
    return [await make_client(store__url=redis.url, generation__temperature=0.0, **overrides) for _ in range(2)]


async def sse_events(client: TestClient[Any, Any], session: str) -> list[dict[str, Any]]:
    async with client.get(f"/api/sessions/{session}/events", headers={"Accept": "text/event-stream"}) as response:
        assert response.status == 200
        text = await response.text()
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


async def test_a_session_started_on_one_replica_is_read_on_the_other(make_client: MakeClient,
                                                                       redis_server: RedisServer) -> None:
    a, b = await pair(make_client, redis_server)
    async with a.post("/api/sessions", json=BODY) as response:
        assert response.status == 201
        session = (await response.json())["session"]
    events = await sse_events(b, session)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "done"
    assert "".join(e["text"] for e in events if e["type"] == "delta") == events[-1]["text"]
    # The same log through long-poll on B, from the middle.
    async with b.get(f"/api/sessions/{session}/events?after=2&timeout=1") as response:
        page = await response.json()
    assert page["events"] == events[2:] and page["done"] is True
    # A's own log is the same, event for event.
    async with a.get(f"/api/sessions/{session}/events?after=0&timeout=1") as response:
        assert (await response.json())["events"] == events


async def test_a_cancel_sent_to_the_other_replica_stops_the_generation(make_client: MakeClient,
                                                                        redis_server: RedisServer) -> None:
    a, b = await pair(make_client, redis_server, generation__max_new_tokens=600)
    async with a.post("/api/sessions", json={**BODY, "text": "Tell me a long story " * 5}) as response:
        session = (await response.json())["session"]
    async with b.ws_connect("/ws") as ws:
        await ws.receive_json()  # hello
        await ws.send_json({"type": "resume", "session": session, "after": 0})
        deltas = 0
        while deltas < 3:
            event = await asyncio.wait_for(ws.receive_json(), 30)
            deltas += event.get("type") == "delta"
        await ws.send_json({"type": "cancel", "session": session})
        while event.get("type") not in ("done", "cancelled", "error"):
            event = await asyncio.wait_for(ws.receive_json(), 30)
    assert event["type"] == "cancelled"
    generating = a.app[TRANSLATOR].store.get(session)  # A's own session, not a copy
    assert generating is not None and generating.state == "cancelled"
    assert a.app[TRANSLATOR].scheduler.running == 0
