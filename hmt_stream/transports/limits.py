"""What one client may hold open (WebSockets, event streams), how fast one socket may talk, and how long a
request body may take: the caps that keep one client from starving the rest."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from aiohttp import web

from .. import errors
from ..errors import HmtError
from ..keys import SETTINGS
from .guard import Handler, principal_of

WEBSOCKETS, READERS = "WebSockets", "event streams (SSE and long-polls)"


class StreamCounts:
    """Open streams by (kind, client)."""

    def __init__(self) -> None:
        self._open: Counter[tuple[str, str]] = Counter()

    @contextmanager
    def hold(self, kind: str, client: str, limit: int) -> Iterator[None]:
        key = (kind, client)
        if self._open[key] >= limit:
            raise HmtError(errors.TOO_MANY_STREAMS, f"this client already has {self._open[key]} {kind} open, the "
                                                    f"most it may; close one first")
        self._open[key] += 1
        try:
            yield
        finally:
            self._open[key] -= 1
            if not self._open[key]:
                del self._open[key]


STREAMS = web.AppKey("streams", StreamCounts)


def hold(request: web.Request, kind: str) -> AbstractContextManager[None]:
    """Count a WebSocket, or an SSE stream or long-poll (READERS), against its client's cap."""
    limits = request.app[SETTINGS].limits
    limit = limits.max_websockets_per_client if kind == WEBSOCKETS else limits.max_readers_per_client
    return request.app[STREAMS].hold(kind, principal_of(request).id, limit)


class MessageBudget:
    """A token bucket: `rate` messages a second, in bursts of up to twice that."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, 2 * rate)
        self._tokens = self.capacity
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


@web.middleware
async def body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A body still arriving after limits.body_timeout_s fails its reader with request_timeout: a client that
    trickles a byte now and then would otherwise hold its connection (and a handler) for as long as it likes."""
    if not request.body_exists or request.content.is_eof():
        return await handler(request)
    timeout = request.app[SETTINGS].limits.body_timeout_s

    def expire() -> None:
        if not request.content.is_eof():
            request.content.set_exception(
                HmtError(errors.REQUEST_TIMEOUT, f"the request body did not arrive within {timeout:g} s"))

    timer = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        return await handler(request)
    finally:
        timer.cancel()
