"""POST /translate: a text or a list of them, each through the translator as a session of its own."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .. import errors
from ..errors import HmtError
from ..keys import SETTINGS
from ..languages import AUTO
from ..session import TranslationSession
from .guard import authenticate, owner_of, principal_of
from .libre_wire import api_key, bad, detected, language, read_body, string
from .rest import translator_of

MAX_BATCH = 1000  # texts in one q list (each is a translation of its own, counted against limits.rate)
FORMATS = ("text", "html")


async def run(request: web.Request, text: str, source: str, target: str, format: str) -> TranslationSession:
    """One text through the translator, to its terminal event; raises HmtError unless it is done."""
    translator = translator_of(request)
    parsed = translator.parse({"text": text, "source": source, "target": target, "format": format})
    session = await translator.start(parsed, principal=principal_of(request).id, owner=owner_of(request))
    try:
        async for _ in session.events(after=session.last_seq):
            pass
    finally:
        session.cancel()  # a request cancelled while waiting leaves no translation running for nobody
    last = session.log[-1]
    if last.type == "error":
        raise HmtError(errors.KINDS.get(last.data["code"], errors.MODEL_ERROR), last.data["message"])
    if last.type != "done":
        raise HmtError(errors.SHUTTING_DOWN, "the translation was cancelled")
    return session


async def _run_all(request: web.Request, texts: list[str], source: str, target: str,
                   format: str) -> list[dict[str, Any]]:
    """Each text's done event (blank ones answered as they are), a few at a time: half the caller's share of the
    queue (scheduler.max_per_client), so that a list does not crowd out its other requests. The first refusal
    cancels the rest."""
    share = request.app[SETTINGS].scheduler.max_per_client
    slots = asyncio.Semaphore(max(1, share // 2) if share else 8)

    async def one(text: str) -> dict[str, Any]:
        if not text.strip():
            return {"text": text}
        async with slots:
            return (await run(request, text, source, target, format)).log[-1].data

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(text)) for text in texts]
    except BaseExceptionGroup as failure:
        raise failure.exceptions[0] from None
    return [task.result() for task in tasks]


async def translate(request: web.Request) -> web.Response:
    body = await read_body(request)
    authenticate(request, api_key(body))
    q = body.get("q")
    if not q:
        raise bad("Invalid request: missing q parameter")
    batch = isinstance(q, list)
    texts = q if batch else [q]
    if not all(isinstance(text, str) for text in texts):
        raise bad("Invalid request: q must be a string or a list of strings")
    if len(texts) > MAX_BATCH:
        raise bad(f"Invalid request: request ({len(texts)}) exceeds text limit ({MAX_BATCH})")
    if request.content_type != "application/json":
        texts = ["\n".join(text.splitlines()) for text in texts]  # a form's CRLF line ends, as LibreTranslate
    source, target = language(body, "source"), language(body, "target")
    format = string(body, "format", required=False) or "text"
    if format not in FORMATS:
        raise bad(f"{format} format is not supported")
    try:
        alternatives = int(body.get("alternatives") or 0)
    except (TypeError, ValueError):
        raise bad("Invalid request: alternatives parameter is not a number") from None
    done = await _run_all(request, texts, source, target, format)
    # Hunyuan-MT gives one translation; a client that asks for alternatives gets none, as for LibreTranslate's HTML.
    answer: dict[str, Any] = {"translatedText": [data["text"] for data in done]}
    if source == AUTO:
        answer["detectedLanguage"] = [detected(data.get("source"), data.get("confidence", 0.0)) for data in done]
    if alternatives > 0:
        answer["alternatives"] = [[] for _ in done]
    if not batch:
        answer = {key: value[0] for key, value in answer.items()}
    return web.json_response(answer)
