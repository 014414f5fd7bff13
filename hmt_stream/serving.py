"""Serving the app on a TCP port, with its connections capped below the process's file limit.

aiohttp's own run_app cannot cap connections: it never lets anyone between the listening socket and the protocol
it builds for each connection. This runs the same AppRunner, on a listener whose protocol factory counts: at the
cap it closes the oldest idle connection (no request in progress: a client that connected and said nothing, or
a keep-alive connection between requests) to make room, and when none is idle it answers the newcomer with a
plain 503 and closes. The cap stays below the file limit; should accepting still hit that limit (asyncio accepts a
whole burst before the factory is asked), asyncio's traceback for every socket it could not accept is replaced by
a count in the same report, at most once a minute."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_runner import GracefulExit

from . import errors
from .keys import METRICS

log = logging.getLogger(__name__)

BACKLOG = 128  # also how many connections asyncio accepts in one go, before it closes any it refused
LOG_INTERVAL_S = 60.0
_BODY = json.dumps({"error": {"code": errors.OVERLOADED.code,
                              "message": "the server has too many open connections; try again shortly"}}).encode()
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 5\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY)
BUSY = web.AppKey("busy_connections", set[object])


def connection_limit(wanted: int) -> int:
    """At most `wanted`, and low enough that every accepted socket still gets a file descriptor: the soft file
    limit is raised towards the hard one, then the files already open and one accept burst are kept aside."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 64
    needed = wanted + in_use + BACKLOG + 32
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - in_use - BACKLOG - 32))


@web.middleware
async def track_busy(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
    """Mark the request's connection as busy while a handler serves it: busy connections are never evicted."""
    busy = request.app[BUSY]
    busy.add(request.protocol)
    try:
        return await handler(request)
    finally:
        busy.discard(request.protocol)


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_REFUSAL)
        transport.close()


class ConnectionCap:
    """The protocol factory's gatekeeper; reports what it did at most once per LOG_INTERVAL_S."""

    def __init__(self, server: web.Server, busy: set[object], limit: int, *,
                 on_refusal: Callable[[str], None] = lambda reason: None) -> None:
        self.server = server
        self.busy = busy
        self.limit = limit
        self.on_refusal = on_refusal
        self.evicted = 0
        self.refused = 0
        self.accept_failed = 0
        self._logged_at = -LOG_INTERVAL_S

    def __call__(self) -> asyncio.BaseProtocol:
        # A connection closed a moment ago (no transport any more) is still listed until the loop's next turn.
        connections = [handler for handler in self.server.connections if handler.transport is not None]
        if len(connections) < self.limit:
            return self.server()
        idle = next((handler for handler in connections if handler not in self.busy), None)
        if idle is None:
            self.refused += 1
            self._report("refused")
            return _Refuse()
        idle.force_close()  # its socket closes on the loop's next turn; BACKLOG keeps a descriptor for it
        self.evicted += 1
        self._report("evicted")
        return self.server()

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The loop's exception handler: an accept that failed for want of file descriptors is counted (asyncio
        retries it a second later), anything else logged as asyncio would."""
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            self.accept_failed += 1
            self._report("file_limit")
        else:
            loop.default_exception_handler(context)

    def _report(self, reason: str) -> None:
        self.on_refusal(reason)
        now = time.monotonic()
        if now - self._logged_at >= LOG_INTERVAL_S:
            log.warning("connection limit of %d reached: %d idle connections closed, %d new ones refused and %d "
                        "accepts failed at the file limit since the last report (server.max_connections; the file "
                        "limit caps it too)", self.limit, self.evicted, self.refused, self.accept_failed)
            self.evicted = self.refused = self.accept_failed = 0
            self._logged_at = now


async def _serve(app: web.Application, host: str, port: int, max_connections: int,
                 announce: Callable[[str], None], **runner_kwargs: Any) -> None:
    app[BUSY] = set()
    app.middlewares.insert(0, track_busy)
    runner = web.AppRunner(app, handle_signals=True, **runner_kwargs)
    await runner.setup()
    assert runner.server is not None
    limit = connection_limit(max_connections)
    if limit < max_connections:
        log.warning("at most %d connections (server.max_connections is %d, but the file limit is lower)",
                    limit, max_connections)
    metrics = app[METRICS]
    cap = ConnectionCap(runner.server, app[BUSY], limit,
                        on_refusal=lambda reason: metrics.refused(f"connection_limit_{reason}"))
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(cap.loop_exception)
    listener = await loop.create_server(cap, host, port, backlog=BACKLOG)
    try:
        announce(f"serving on http://{host}:{port}/")
        while True:
            await asyncio.sleep(3600)
    finally:
        listener.close()  # stop accepting, then shut down as aiohttp's runner does (on_shutdown, handlers, cleanup)
        await runner.cleanup()


def run(app: web.Application, *, host: str, port: int, max_connections: int, print: Callable[[str], None],
        **runner_kwargs: Any) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully: aiohttp's run_app, with the connection cap
    (print is called once the port is open)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, host, port, max_connections, print, **runner_kwargs))
    try:
        loop.run_until_complete(main)
    except (GracefulExit, KeyboardInterrupt):
        pass
    finally:
        # The shutdown itself runs while every other task is still alive (translations drain, sockets say
        # goodbye); only then is what is left cancelled.
        main.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(main)
        rest = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in rest:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)
