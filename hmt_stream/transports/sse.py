"""Server-Sent Events: a session's log as `id: seq / event: type / data: json`, resumable by Last-Event-ID."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from ..keys import SETTINGS
from .limits import READERS, hold
from .rest import find_session


class _Response(EventSourceResponse):
    """aiohttp-sse's response (which already sends X-Accel-Buffering: no, so nginx passes each event at once),
    plus `no-transform`, so that no proxy compresses or rewrites the stream."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.headers["Cache-Control"] = "no-cache, no-transform"

log = logging.getLogger(__name__)

# How long the negotiation probe stays open after its hello, if the client does not close it first. Longer than a
# client waits for the hello (a buffering proxy would pass the hello at the end of the response, too late), short
# enough that an abandoned probe does not hold a handler for long.
PROBE_LIFETIME_S = 10.0


def resume_point(request: web.Request) -> int:
    """Last-Event-ID (sent by EventSource on reconnect) wins over ?after (the client's first request)."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("after", "0")
    try:
        return max(0, int(raw))
    except ValueError:
        raise web.HTTPBadRequest(reason=f"after / Last-Event-ID must be an integer seq, not {raw!r}") from None


async def stream(request: web.Request) -> web.StreamResponse:
    session = await find_session(request)
    if session is None:
        # 204 is the one answer that makes EventSource stop reconnecting.
        return web.Response(status=204)
    after = resume_point(request)
    settings = request.app[SETTINGS]
    # send_timeout: a reader that accepts nothing for that long is dropped; its session carries on for resume.
    with hold(request, READERS):
        async with sse_response(request, ping_interval=settings.transports.heartbeat_s, response_cls=_Response,
                                send_timeout=settings.limits.slow_reader_timeout_s) as response:
            try:
                async for event in session.events(after=after):
                    await response.send(event.json, id=str(event.seq), event=event.type)
            except (TimeoutError, ConnectionResetError):
                log.info("dropped an SSE reader of session %s: it stopped reading or went away", session.id)
    return response


async def probe(request: web.Request) -> web.StreamResponse:
    """A hello that only arrives in time if nothing between here and the client buffers the stream."""
    heartbeat = request.app[SETTINGS].transports.heartbeat_s
    with hold(request, READERS):
        async with sse_response(request, ping_interval=heartbeat, response_cls=_Response) as response:
            await response.send(json.dumps({"type": "hello", "heartbeat_s": heartbeat}), event="hello")
            await asyncio.sleep(PROBE_LIFETIME_S)
    return response
