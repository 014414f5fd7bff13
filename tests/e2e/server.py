"""The real app on a free loopback port, served from a background thread with its own event loop."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")


class LiveServer:
    """`server = LiveServer(create_app(settings, engine=engine)); server.start()`; then a browser opens server.url.

    A test-side middleware remembers the TCP transport of every /ws request, so that a test can kill open
    WebSockets from the server side (kill_websockets) without any hook in the application itself. With
    silent_websocket, that middleware answers /ws itself: the upgrade succeeds and then nothing ever comes, as
    behind a proxy that accepts WebSockets but holds their frames.
    """

    def __init__(self, app: web.Application, *, silent_websocket: bool = False) -> None:
        self.app = app
        self.silent_websocket = silent_websocket
        self.port = 0
        self._websockets: list[asyncio.BaseTransport] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="e2e-server", daemon=True)
        self._runner: web.AppRunner | None = None
        app.middlewares.append(self._track_websockets)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @web.middleware
    async def _track_websockets(self, request: web.Request,
                                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path == "/ws" and request.transport is not None:
            self._websockets.append(request.transport)
            if self.silent_websocket:
                ws = web.WebSocketResponse()
                await ws.prepare(request)
                async for _ in ws:  # read until the client gives up; never say hello
                    pass
                return ws
        return await handler(request)

    def start(self) -> LiveServer:
        self._thread.start()
        self.port = self.call(self._start())
        return self

    async def _start(self) -> int:
        # A short shutdown_timeout: open streams (SSE probes, sockets) must not hold a test's teardown for 60 s.
        self._runner = web.AppRunner(self.app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def kill_websockets(self) -> int:
        """Close the TCP connection under every open WebSocket, as a crashing server or a dropped link would."""
        async def kill() -> int:
            open_ones = [transport for transport in self._websockets if not transport.is_closing()]
            for transport in open_ones:
                transport.close()
            return len(open_ones)
        return self.call(kill())

    @staticmethod
    async def _drain() -> None:
        # Handlers that outlived the shutdown timeout (an SSE probe a proxy kept open) were told to stop; let them
        # finish on this loop before it closes.
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.get_running_loop().shutdown_asyncgens()

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.load(response)

    def stop(self) -> None:
        if self._runner is not None:
            self.call(self._runner.cleanup(), timeout=60)
        self.call(self._drain(), timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
