"""Two apps in this process sharing one real Redis: a session started on A is read, cancelled and owned on B."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
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


async def test_the_phrase_cache_is_shared_and_scoped_per_key(make_client: MakeClient,
                                                             redis_server: RedisServer) -> None:
    keys = ("k" * 16 + "-first", "k" * 16 + "-second")
    a, b = await pair(make_client, redis_server, auth__enabled=True, auth__api_keys=keys)
    body = {**BODY, "text": "Shared between replicas", "target": "de"}

    async def translate(client: TestClient[Any, Any], key: str) -> dict[str, Any]:
        async with client.post("/api/translate", json=body, headers={"Authorization": f"Bearer {key}"}) as answer:
            assert answer.status == 200, await answer.text()
            return dict(await answer.json())

    first = await translate(a, keys[0])
    assert first["cached"] is False
    again = await translate(b, keys[0])  # the other replica, which never translated it: Redis's tier
    assert again["cached"] is True and again["text"] == first["text"]
    other = await translate(b, keys[1])  # another key's entries are not this key's
    assert other["cached"] is False


async def test_rate_limits_are_counted_for_all_replicas(make_client: MakeClient, redis_server: RedisServer) -> None:
    a, b = await pair(make_client, redis_server, limits__rate="2/minute", cache__enabled=False)
    answers = []
    for client in (a, b, a, b):
        async with client.post("/api/sessions", json={**BODY, "text": "Counted once"}) as response:
            answers.append((response.status, (await response.json()).get("error", {}).get("code")))
    assert answers == [(201, None), (201, None), (429, "rate_limited"), (429, "rate_limited")]


async def test_while_redis_is_down_new_requests_get_503_and_service_resumes_when_it_is_back(
        make_client: MakeClient, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path).start()
    try:
        a, b = await pair(make_client, redis)
        async with a.post("/api/translate", json=BODY) as response:
            assert response.status == 200
        redis.stop()
        for client in (a, b):
            answer = await until(client, 503)
            assert answer["error"]["code"] == "store_unavailable"
        async with b.get("/api/health") as response:  # the server itself keeps serving
            assert response.status == 200
        redis.start()
        for client in (a, b):
            await until(client, 201)
    finally:
        redis.stop()


@contextlib.asynccontextmanager
async def until_found(client: TestClient[Any, Any], session: str, timeout: float = 30) -> AsyncIterator[None]:
    """Wait while the store answers store_unavailable for session (it has just restarted)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with client.get(f"/api/sessions/{session}") as response:
            if response.status != 503:
                assert response.status == 200, await response.text()
                break
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.2)
    yield


async def until(client: TestClient[Any, Any], status: int, timeout: float = 30) -> dict[str, Any]:
    """POST sessions until one is answered with status; its body."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with client.post("/api/sessions", json={**BODY, "text": "Are you there?"}) as response:
            body = dict(await response.json())
            if response.status == status:
                return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.2)


async def test_after_redis_restarts_empty_the_replicas_write_their_sessions_back(make_client: MakeClient,
                                                                                  tmp_path: Path) -> None:
    redis = RedisServer(tmp_path).start()
    try:
        a, b = await pair(make_client, redis)
        async with a.post("/api/translate", json={**BODY, "target": "it"}) as response:
            before = (await response.json())["session"]
        redis.stop()
        redis.start()  # no persistence: empty
        await until(a, 201)
        async with a.post("/api/sessions", json={**BODY, "target": "pt"}) as response:
            after = (await response.json())["session"]
        for session in (before, after):
            async with until_found(b, session):
                events = await asyncio.wait_for(sse_events(b, session), 60)
            assert events and events[-1]["type"] == "done"
    finally:
        redis.stop()
