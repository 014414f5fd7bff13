"""The plain HTTP API: create, inspect, cancel sessions; one-shot translate; languages, health, negotiate."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import __version__, errors, wirejson
from ..errors import HmtError
from ..keys import METRICS, SETTINGS, TRANSLATOR
from ..languages import LANGUAGES
from ..session import TranslationSession
from ..translator import Translator
from .guard import Handler, owner_of, principal_of

log = logging.getLogger(__name__)



def retry_headers(error: HmtError) -> dict[str, str]:
    return {} if error.retry_after is None else {"Retry-After": str(max(1, round(error.retry_after)))}


def error_response(error: HmtError) -> web.Response:
    return web.json_response({"error": error.as_dict()}, status=error.kind.http_status, headers=retry_headers(error))


ErrorShape = Callable[[HmtError], web.Response]
# Paths whose errors another wire format writes (the OpenAI API's under /v1/), by path prefix.
ERROR_SHAPES = web.AppKey("error_shapes", dict[str, ErrorShape])


def _shape(request: web.Request) -> ErrorShape | None:
    for prefix, shape in request.app.get(ERROR_SHAPES, {}).items():
        if request.path.startswith(prefix):
            return shape
    return error_response if request.path.startswith("/api/") else None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HmtError as error:
        request.app[METRICS].error(error.code)
        return (_shape(request) or error_response)(error)
    except web.HTTPException as exc:
        shape = _shape(request)
        if shape is None or exc.status < 400:
            raise
        kind = {404: errors.NOT_FOUND, 413: errors.TOO_LARGE}.get(exc.status) or errors.ErrorKind(
            errors.BAD_REQUEST.code, exc.status, errors.BAD_REQUEST.ws_close)
        request.app[METRICS].error(kind.code)
        return shape(HmtError(kind, exc.reason))


def translator_of(request: web.Request) -> Translator:
    translator = request.app.get(TRANSLATOR)
    if translator is None:
        raise HmtError(errors.SHUTTING_DOWN, "the model is still loading", retry_after=5)
    return translator


async def find_session(request: web.Request) -> TranslationSession | None:
    """The session named in the path, if the caller may see it (someone else's is as good as missing); from
    another replica too, with a shared store."""
    return await translator_of(request).locate(request.match_info["id"], owner_of(request))


async def get_session(request: web.Request) -> TranslationSession:
    session = await find_session(request)
    if session is None:
        raise HmtError(errors.NOT_FOUND, f"no session {request.match_info['id']!r} (unknown or expired)")
    return session


async def read_json(request: web.Request) -> Any:
    try:
        return await request.json(loads=wirejson.loads)
    except UnicodeDecodeError as exc:
        raise HmtError(errors.BAD_REQUEST, f"the body is not valid JSON: {exc}") from None
    except LookupError:  # Content-Type names a charset Python does not know
        raise HmtError(errors.BAD_REQUEST, "the body's charset is unknown; send UTF-8 JSON") from None


async def create_session(request: web.Request) -> web.Response:
    translator = translator_of(request)
    session = await translator.start(translator.parse(await read_json(request)),
                                     principal=principal_of(request).id, owner=owner_of(request))
    url = f"/api/sessions/{session.id}/events"
    return web.json_response({**session.snapshot(), "events_url": url}, status=201,
                             headers={"Location": f"/api/sessions/{session.id}"})


async def show_session(request: web.Request) -> web.Response:
    return web.json_response((await get_session(request)).snapshot())


async def cancel_session(request: web.Request) -> web.Response:
    session = await get_session(request)
    session.cancel()
    return web.json_response(session.snapshot())


async def translate(request: web.Request) -> web.Response:
    translator = translator_of(request)
    session = await translator.translate(translator.parse(await read_json(request)),
                                         principal=principal_of(request).id, owner=owner_of(request))
    last = session.log[-1]
    if last.type == "done":
        return web.json_response({"session": session.id, **last.data})
    if last.type == "error":
        raise HmtError(errors.KINDS.get(last.data["code"], errors.MODEL_ERROR), last.data["message"])
    raise HmtError(errors.SHUTTING_DOWN, "the translation was cancelled")


async def languages(request: web.Request) -> web.Response:
    return web.json_response([{"code": lang.code, "name": lang.name, "zh_name": lang.zh_name}
                              for lang in LANGUAGES.values()])


def model_name(name: str) -> str:
    """A hub id as it is; a local directory by its last part only (its path says nothing the public needs)."""
    if name.startswith(("/", ".", "~")) or Path(name).expanduser().is_dir():
        return Path(name).expanduser().name
    return name


async def health(request: web.Request) -> web.Response:
    translator = request.app.get(TRANSLATOR)
    answer: dict[str, Any] = {
        "status": "ok" if translator else "starting",
        "model": model_name(request.app[SETTINGS].model.name),
        "demo": bool(translator and translator.engine.demo),
        "ready": translator is not None,
        "version": __version__,
    }
    remote = getattr(translator.engine, "health", None) if translator else None
    if remote is not None:  # the inference servers of a remote engine
        answer["endpoints"] = endpoints = remote()
        if not any(endpoint["state"] == "healthy" for endpoint in endpoints):
            answer["status"] = "degraded"
    return web.json_response(answer)


async def negotiate(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    t = settings.transports
    events_url = "/api/sessions/{session}/events"
    transports: list[dict[str, str]] = []
    if t.websocket:
        transports.append({"name": "websocket", "url": "/ws"})
    if t.sse:
        transports.append({"name": "sse", "url": events_url, "probe_url": "/api/negotiate/sse"})
    if t.poll:
        transports.append({"name": "poll", "url": events_url})
    translator = request.app.get(TRANSLATOR)
    return web.json_response({
        "transports": transports,
        "heartbeat_s": t.heartbeat_s,
        "poll_timeout_s": t.poll_timeout_s,
        "max_chars": settings.generation.max_chars,
        "demo": bool(translator and translator.engine.demo),
        "auth": settings.auth.enabled,
    })


def setup(app: web.Application) -> None:
    app.router.add_post("/api/sessions", create_session)
    app.router.add_get("/api/sessions/{id}", show_session)
    app.router.add_delete("/api/sessions/{id}", cancel_session)
    app.router.add_post("/api/translate", translate)
    app.router.add_get("/api/languages", languages)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/negotiate", negotiate)
