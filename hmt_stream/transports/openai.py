"""The OpenAI-compatible API: /v1/models and /v1/chat/completions over the same sessions as every transport.

A chat completion is a session like any other (auth, rate limit, queue, cache, metrics); this module only turns
its events into OpenAI's chunks. A client that goes away mid-answer cancels its session at once: an OpenAI client
never comes back to resume, so the grace period other transports get would only burn GPU time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from .. import errors
from ..errors import HmtError
from ..keys import SETTINGS
from ..session import Event, TranslationSession
from . import openai_protocol as wire
from .guard import owner_of, principal_of
from .rest import ERROR_SHAPES, read_json, retry_headers, translator_of

log = logging.getLogger(__name__)

_CREATED = wire.now()  # when this server's model "was created", as /v1/models reports it


def _json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def error_response(error: HmtError) -> web.Response:
    """OpenAI's error body, from which the SDKs raise their own classes (auth errors of the guard included)."""
    return web.Response(body=_json(wire.error_body(error)), status=error.kind.http_status,
                        headers={"Content-Type": "application/json", **retry_headers(error)})


def _served(request: web.Request) -> tuple[str, set[str]]:
    """The model id this server answers as, and every name a client may ask for it by."""
    model_id = translator_of(request).engine.model_id
    return model_id, {model_id, request.app[SETTINGS].model.name}


async def models(request: web.Request) -> web.Response:
    model_id, _ = _served(request)
    return web.json_response({"object": "list", "data": [wire.model_card(model_id, _CREATED)]})


async def model(request: web.Request) -> web.Response:
    model_id, names = _served(request)
    if request.match_info["model"] not in names:
        raise HmtError(wire.MODEL_NOT_FOUND, f"the model {request.match_info['model']!r} does not exist")
    return web.json_response(wire.model_card(model_id, _CREATED))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    translator = translator_of(request)
    model_id, names = _served(request)
    call = wire.parse_chat(await read_json(request), default_model=model_id)
    if call.model not in names:
        raise HmtError(wire.MODEL_NOT_FOUND, f"the model {call.model!r} does not exist; this server serves "
                                             f"{model_id!r} (GET /v1/models)")
    session = await translator.start(call.request, principal=principal_of(request).id, owner=owner_of(request))
    try:
        if call.stream:
            return await _stream(request, session, wire.Chunks(wire.completion_id(), wire.now(), model_id,
                                                               call.include_usage))
        return await _complete(session, model_id)
    finally:
        if session.cancel():  # the client went away (or the server is stopping): no one will read the rest
            log.info("chat completion %s cancelled: its client went away", session.id)


def _failure(event: Event) -> HmtError:
    if event.type == "error":
        return HmtError(errors.KINDS.get(event.data["code"], errors.MODEL_ERROR), event.data["message"])
    return HmtError(errors.SHUTTING_DOWN, "the completion was cancelled: the server is stopping", retry_after=5)


async def _complete(session: TranslationSession, model_id: str) -> web.Response:
    async for _ in session.events(after=session.last_seq):
        pass
    last = session.log[-1]
    if last.type != "done":
        raise _failure(last)
    data = last.data
    return web.Response(body=_json(wire.completion(
        id=wire.completion_id(), created=wire.now(), model=model_id, text=data["text"],
        finish_reason=data["finish_reason"], prompt_tokens=data["prompt_tokens"], completion_tokens=data["tokens"],
    )), content_type="application/json")


class _Writer:
    """SSE lines as OpenAI sends them (`data: <json>` and a blank line), with a comment as a heartbeat when nothing
    was sent for a while (a long wait in the queue), so that proxies keep the connection."""

    def __init__(self, response: web.StreamResponse, heartbeat_s: float) -> None:
        self._response = response
        self._heartbeat_s = heartbeat_s
        self._sent_at = asyncio.get_running_loop().time()

    async def data(self, body: Any) -> None:
        await self.raw(b"data: " + (body if isinstance(body, bytes) else _json(body)) + b"\n\n")

    async def raw(self, line: bytes) -> None:
        self._sent_at = asyncio.get_running_loop().time()
        await self._response.write(line)

    async def heartbeats(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(max(0.0, self._sent_at + self._heartbeat_s - loop.time()))
                if loop.time() - self._sent_at >= self._heartbeat_s:
                    await self.raw(b": ping\n\n")
        except ConnectionResetError:
            pass  # the stream's own loop finds out too, and ends the session


async def _stream(request: web.Request, session: TranslationSession, chunks: wire.Chunks) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache, "
                                           "no-transform", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    writer = _Writer(response, request.app[SETTINGS].transports.heartbeat_s)
    heartbeats = asyncio.create_task(writer.heartbeats())
    try:
        await writer.data(chunks.delta({"role": "assistant", "content": ""}))
        async for event in session.events():
            if event.type == "delta":
                await writer.data(chunks.delta({"content": event.data["text"]}))
            elif event.type == "queued":
                await writer.raw(b": queued %d\n\n" % event.data["position"])
            elif event.type == "done":
                await writer.data(chunks.delta({}, event.data["finish_reason"]))
                if chunks.include_usage:
                    await writer.data(chunks.usage(event.data["prompt_tokens"], event.data["tokens"]))
            elif event.terminal:
                await writer.data(wire.error_body(_failure(event)))
        await writer.raw(b"data: [DONE]\n\n")
    except (ConnectionResetError, TimeoutError):
        log.info("chat completion %s: the client went away", session.id)
    finally:
        heartbeats.cancel()
    return response


def setup(app: web.Application) -> None:
    app.setdefault(ERROR_SHAPES, {})["/v1/"] = error_response
    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/models/{model}", model)
    app.router.add_post("/v1/chat/completions", chat_completions)
