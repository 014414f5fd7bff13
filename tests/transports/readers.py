"""Minimal readers of each transport for the tests: read a session's events, optionally dropping after k."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient

TERMINAL = ("done", "error", "cancelled")


async def read_ws(client: TestClient[Any, Any], session: str, after: int, limit: int | None) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with client.ws_connect("/ws") as ws:
        assert json.loads((await ws.receive()).data)["type"] == "hello"
        await ws.send_json({"type": "resume", "session": session, "after": after})
        async for message in ws:
            event = json.loads(message.data)
            if event.get("session") != session:
                continue
            events.append(event)
            if event["type"] in TERMINAL or len(events) == limit:
                break
    return events


async def read_sse(client: TestClient[Any, Any], session: str, after: int, limit: int | None) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    headers = {"Accept": "text/event-stream", "Last-Event-ID": str(after)}
    async with client.get(f"/api/sessions/{session}/events", headers=headers) as response:
        while len(events) != limit:
            frame = (await response.content.readuntil(b"\r\n\r\n")).decode()
            if frame.startswith(":"):
                continue
            if not frame.strip():
                break
            data = next(line[6:] for line in frame.split("\r\n") if line.startswith("data: "))
            events.append(json.loads(data))
            if events[-1]["type"] in TERMINAL:
                break
    return events


async def read_poll(client: TestClient[Any, Any], session: str, after: int, limit: int | None) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        page = await (await client.get(f"/api/sessions/{session}/events?after={after}&timeout=10")).json()
        for event in page["events"]:
            events.append(event)
            if len(events) == limit:
                return events
        after = page["next"]
        if page["done"]:
            return events


READERS = {"ws": read_ws, "sse": read_sse, "poll": read_poll}
