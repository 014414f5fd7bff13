"""A Python client of the protocol: negotiates WS → SSE → poll and resumes the same session after drops."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import aiohttp

TERMINAL = ("done", "error", "cancelled")
# Refusals that pass: the server is restarting, or its session store (replicas' Redis) is back in a moment.
TRANSIENT = ("shutting_down", "store_unavailable")
NAMES = {"ws": "websocket", "websocket": "websocket", "sse": "sse", "poll": "poll"}


class TransportFailed(Exception):
    """This transport cannot carry the session now; the client tries the next one."""


class ServerError(Exception):
    """The server refused the request (bad input, overloaded, ...): trying another transport will not help."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class StreamClient:
    def __init__(self, http: aiohttp.ClientSession, *, transport: str | None = None,
                 on_event: Callable[[dict[str, Any]], None] = lambda event: None,
                 on_transport: Callable[[str, str], None] = lambda name, why: None,
                 attempts: int = 6, connect_timeout: float = 5.0) -> None:
        self.http = http
        self.forced = NAMES[transport] if transport else None
        self.on_event = on_event
        self.on_transport = on_transport
        self.attempts = attempts
        self.connect_timeout = connect_timeout
        self.session: str | None = None
        self.after = 0
        self.heartbeat = 15.0
        self._request: dict[str, Any] = {}
        self._terminal: dict[str, Any] | None = None
        self._current: Any = None
        self._closing: asyncio.Future[Any] | None = None

    async def negotiate(self) -> dict[str, Any]:
        async with self.http.get("/api/negotiate") as response:
            info: dict[str, Any] = await response.json()
        self.heartbeat = float(info["heartbeat_s"])
        return info

    async def translate(self, text: str, source: str, target: str) -> dict[str, Any]:
        """Stream one translation to on_event; returns its terminal event."""
        info = await self.negotiate()
        order = [t["name"] for t in info["transports"]]
        if self.forced:
            if self.forced not in order:
                raise ServerError("bad_request", f"the server does not offer {self.forced}")
            order = [self.forced]
        self._request = {"text": text, "source": source, "target": target}
        index, failures = 0, 0
        while True:
            name = order[index]
            self.on_transport(name, "trying")
            try:
                await getattr(self, "_via_" + name)()
                assert self._terminal is not None
                return self._terminal
            except (TransportFailed, aiohttp.ClientError, TimeoutError, ServerError) as exc:
                if isinstance(exc, ServerError) and exc.code not in TRANSIENT:
                    raise
                failures += 1
                if failures >= self.attempts:
                    raise TransportFailed(f"gave up after {failures} attempts; last: {name}: {exc}") from exc
                self.on_transport(name, f"failed ({exc or type(exc).__name__})")
                if index + 1 < len(order):
                    index += 1
                else:
                    await asyncio.sleep(min(8.0, 0.25 * 2 ** failures))  # every transport failed: back off

    def drop(self) -> None:
        """Close the current connection (as a flaky network would); the client resumes on the next transport."""
        current = self._current
        if isinstance(current, aiohttp.ClientWebSocketResponse):
            self._closing = asyncio.ensure_future(current.close())
        elif current is not None:
            current.close()

    # -- events ------------------------------------------------------------------------------------------------

    def _accept(self, event: dict[str, Any]) -> bool:
        """Hand a new event on; True once the terminal one has come. Replays of seen events are skipped."""
        if event.get("session") != self.session or event["seq"] <= self.after:
            return False
        self.after = event["seq"]
        self.on_event(event)
        if event["type"] in TERMINAL:
            self._terminal = event
            return True
        return False

    async def _create(self) -> None:
        if self.session is not None:
            return
        async with self.http.post("/api/sessions", json=self._request) as response:
            body = await response.json()
            if response.status != 201:
                raise ServerError(body["error"]["code"], body["error"]["message"])
        self.session = body["session"]

    # -- transports --------------------------------------------------------------------------------------------

    async def _via_websocket(self) -> None:
        try:
            ws = await self.http.ws_connect("/ws", timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5))
        except aiohttp.WSServerHandshakeError as exc:
            raise TransportFailed(f"WebSocket handshake refused ({exc.status})") from exc
        self._current = ws
        async with ws:
            hello = await self._ws_message(ws, self.connect_timeout)
            if hello.get("type") != "hello":
                raise TransportFailed("no hello from the server")
            if self.session is None:
                await ws.send_json({"type": "translate", **self._request, "ref": "cli"})
            else:
                await ws.send_json({"type": "resume", "session": self.session, "after": self.after})
            while True:
                message = await self._ws_message(ws, 2 * self.heartbeat + 5)
                kind = message.get("type")
                if kind == "ping":
                    await ws.send_json({"type": "pong"})
                elif kind == "error" and "seq" not in message:
                    raise ServerError(message["code"], message["message"])
                elif kind in ("hello", "pong"):
                    continue
                else:
                    if self.session is None and message.get("ref") == "cli":
                        self.session = message["session"]
                    if self._accept(message):
                        return

    @staticmethod
    async def _ws_message(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> dict[str, Any]:
        message = await asyncio.wait_for(ws.receive(), timeout)
        if message.type != aiohttp.WSMsgType.TEXT:
            raise TransportFailed(f"WebSocket closed ({message.type.name})")
        data: dict[str, Any] = json.loads(message.data)
        return data

    async def _via_sse(self) -> None:
        await self._create()
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(self.after)}
        async with self.http.get(f"/api/sessions/{self.session}/events", headers=headers) as response:
            if response.status == 204:
                raise ServerError("not_found", "the session has expired")
            self._current = response
            data: list[str] = []
            while True:
                line = await asyncio.wait_for(response.content.readline(), 2 * self.heartbeat + 5)
                if not line:
                    raise TransportFailed("the event stream ended early")
                text = line.decode().rstrip("\r\n")
                if text.startswith("data: "):
                    data.append(text[6:])
                elif not text and data:
                    if self._accept(json.loads("\n".join(data))):
                        return
                    data = []

    async def _via_poll(self) -> None:
        await self._create()
        while True:
            url = f"/api/sessions/{self.session}/events?after={self.after}"
            async with self.http.get(url) as response:
                self._current = response
                if response.status != 200:
                    body = await response.json()
                    raise ServerError(body["error"]["code"], body["error"]["message"])
                page = await response.json()
            for event in page["events"]:
                if self._accept(event):
                    return

    async def cancel(self) -> None:
        if self.session is not None:
            with contextlib.suppress(aiohttp.ClientError):
                await self.http.delete(f"/api/sessions/{self.session}")
