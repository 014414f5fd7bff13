"""Load-generating clients, one per transport, written against docs/protocol.md. They talk to 127.0.0.1 only.

Each reads one session and notes, for every delta, when it arrived (time.monotonic_ns(), the same clock the
ScriptedEngine stamps its tokens with, system-wide on Linux) next to the production stamps it carries. They parse
no more than they must: a WebSocket frame or an SSE data line is one event, recognised by its compact JSON.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from hmt_stream.engine.scripted import stamps

TRANSPORTS = ("websocket", "sse", "poll")
_DELTA = '"type":"delta"'
_TERMINALS = ('"type":"done"', '"type":"error"', '"type":"cancelled"')


@dataclass
class Stream:
    """What one client saw of one session."""

    start: int = 0  # when the request was sent
    first: int | None = None  # when the first delta arrived
    end: int | None = None  # when the terminal event arrived
    recv: list[int] = field(default_factory=list)  # arrival of each stamped token
    stamps: list[int] = field(default_factory=list)  # its production time
    terminal: str | None = None
    error: str | None = None
    cached: bool = False

    def absorb(self, raw: str, now: int) -> bool:
        """Take in one event's JSON; True once it is the terminal one."""
        if _DELTA in raw:
            if self.first is None:
                self.first = now
            for stamp in stamps(raw):
                self.recv.append(now)
                self.stamps.append(stamp)
            return False
        for terminal in _TERMINALS:
            if terminal in raw:
                self.terminal = terminal.split('"')[-2]
                self.end = now
                self.cached = '"cached":true' in raw
                return True
        return False

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Stream:
        return cls(start=record["start"], first=record["first"], end=record.get("end"), recv=record["recv"],
                   stamps=record["stamps"], terminal=record["terminal"], error=record["error"])


def payload(text: str) -> dict[str, str]:
    return {"text": text, "source": "en", "target": "fr"}


def http_session() -> aiohttp.ClientSession:
    """One client for thousands of streams: no connection limit, long timeouts (a stalled stream shows as a gap)."""
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=30))


class WebSocketClient:
    """One socket, kept open as a browser tab keeps it; translate requests go over it one after another."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self) -> None:
        self.ws = await self.http.ws_connect(f"{self.base}/ws", compress=0, max_msg_size=0)
        hello = await self.ws.receive_str()
        if '"hello"' not in hello:
            raise RuntimeError(f"expected hello, got {hello[:100]}")

    async def translate(self, text: str, stream: Stream) -> None:
        ws = self.ws
        assert ws is not None
        stream.start = time.monotonic_ns()
        await ws.send_str(json.dumps({"type": "translate", **payload(text)}))
        while True:
            message = await ws.receive()
            now = time.monotonic_ns()
            if message.type != aiohttp.WSMsgType.TEXT:
                stream.error = f"socket ended: {message.type.name}"
                return
            data: str = message.data
            if '"session"' not in data:  # ping, pong, hello: not an event
                if data.startswith('{"type":"error"'):
                    stream.error = data[:200]
                    return
                continue
            if stream.absorb(data, now):
                return

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def create(http: aiohttp.ClientSession, base: str, text: str) -> str:
    async with http.post(f"{base}/api/sessions", json=payload(text)) as response:
        body = await response.json()
        if response.status != 201:
            raise RuntimeError(f"POST /api/sessions: {response.status} {body}")
        return str(body["session"])


async def sse(http: aiohttp.ClientSession, base: str, text: str, stream: Stream) -> None:
    """POST the session, then read its events as Server-Sent Events until the terminal one."""
    stream.start = time.monotonic_ns()
    session = await create(http, base, text)
    async with http.get(f"{base}/api/sessions/{session}/events",
                        headers={"Accept": "text/event-stream"}) as response:
        # One event (id, event, data lines) or one `: ping` comment per read: they end with a blank line.
        while True:
            try:
                block = await response.content.readuntil(b"\r\n\r\n")
            except ValueError:  # the stream ended inside a block
                break
            if not block:
                break
            if b"data:" in block and stream.absorb(block.decode(), time.monotonic_ns()):
                return
    stream.error = "stream ended before the terminal event"


async def poll(http: aiohttp.ClientSession, base: str, text: str, stream: Stream) -> None:
    """POST the session, then long-poll `?after=next` until `done`."""
    stream.start = time.monotonic_ns()
    session = await create(http, base, text)
    after = 0
    while True:
        async with http.get(f"{base}/api/sessions/{session}/events",
                            params={"after": str(after), "timeout": "20"}) as response:
            raw = await response.read()
        now = time.monotonic_ns()
        page = json.loads(raw)
        for event in page["events"]:
            if event["type"] == "delta":
                if stream.first is None:
                    stream.first = now
                for stamp in stamps(event["text"]):
                    stream.recv.append(now)
                    stream.stamps.append(stamp)
            elif event["type"] in ("done", "error", "cancelled"):
                stream.terminal = event["type"]
                stream.end = now
                stream.cached = bool(event.get("cached"))
        after = page["next"]
        if page["done"]:
            return


async def rest(http: aiohttp.ClientSession, base: str, text: str, stream: Stream) -> None:
    """The one-shot POST /api/translate (no streaming): the whole text in one answer."""
    stream.start = time.monotonic_ns()
    async with http.post(f"{base}/api/translate", json=payload(text)) as response:
        body = await response.json()
    stream.first = stream.end = time.monotonic_ns()
    stream.terminal = "done" if response.status == 200 else "error"
    stream.cached = bool(body.get("cached"))


async def run_stream(transport: str, http: aiohttp.ClientSession, base: str, text: str, stream: Stream,
                     delay: float = 0.0) -> None:
    """Read one session over `transport` (a fresh WebSocket for each), starting after `delay` seconds."""
    if delay > 0:
        await asyncio.sleep(delay)
    try:
        if transport == "websocket":
            client = WebSocketClient(http, base)
            try:
                await client.connect()
                await client.translate(text, stream)
            finally:
                await client.close()
        elif transport == "sse":
            await sse(http, base, text, stream)
        elif transport == "poll":
            await poll(http, base, text, stream)
        else:
            raise ValueError(f"unknown transport {transport!r}")
    except (TimeoutError, aiohttp.ClientError, OSError, RuntimeError) as exc:
        stream.error = f"{type(exc).__name__}: {exc}"[:200]
