"""HTTP transports: each a thin adapter that decodes a request, calls the translator, encodes session events."""

from __future__ import annotations

from aiohttp import web

from ..config import Settings
from ..keys import SETTINGS
from ..ratelimit import RateLimiter
from . import documents, guard, headers, libretranslate, limits, openai, poll, rest, sse, websocket


def setup(app: web.Application, settings: Settings) -> None:
    """Register the REST API and every transport that config enables."""
    app.middlewares.append(rest.error_middleware)
    app.middlewares.append(guard.guard_middleware)
    app.middlewares.append(limits.body_deadline)
    app[guard.AUTH_FAILURES] = RateLimiter(settings.auth.failure_rate, settings.limits.storage,
                                           what="failed authentications", advice="check the key, then try later")
    app[limits.STREAMS] = limits.StreamCounts()
    headers.setup(app)
    rest.setup(app)
    documents.setup(app)
    app.router.add_post("/api/token", guard.issue_token)
    app.router.add_get("/api/sessions/{id}/events", events)
    if settings.transports.sse:
        app.router.add_get("/api/negotiate/sse", sse.probe)
    if settings.transports.libretranslate:
        libretranslate.setup(app)
    if settings.transports.websocket:
        app[websocket.CONNECTIONS] = set()
        app.router.add_get("/ws", websocket.handler)
        app.on_shutdown.insert(0, websocket.stop_protocol_pings)  # before the translator's drain (app.py)
        app.on_shutdown.append(websocket.shutdown)
    if settings.transports.openai:
        openai.setup(app)


async def events(request: web.Request) -> web.StreamResponse:
    """One resource, two representations: SSE for `Accept: text/event-stream`, long-poll JSON otherwise."""
    settings = request.app[SETTINGS]
    wants_sse = "text/event-stream" in request.headers.get("Accept", "")
    if wants_sse and settings.transports.sse:
        return await sse.stream(request)
    if settings.transports.poll:
        return await poll.handler(request)
    return web.json_response({"error": {"code": "bad_request", "message": "this transport is switched off"}},
                             status=400)
