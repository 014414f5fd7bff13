"""POST /api/prompts (a dry run: segments and their exact prompts, nothing generated) and POST /api/detect."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .. import errors
from ..documents.detect import Detection, detect
from ..errors import HmtError
from ..request import _is_utf8
from .guard import owner_of, principal_of
from .rest import read_json, translator_of


async def prompts(request: web.Request) -> web.Response:
    translator = translator_of(request)
    parsed = translator.parse(await read_json(request))
    plan = await translator.preview(parsed, principal=principal_of(request).id, owner=owner_of(request))
    detected = None if plan.detection is None else plan.detection.as_dict()
    return web.json_response({
        "profile": translator.planner.profile.name,
        "format": parsed.format,
        "source": plan.source,
        "detected": detected,
        "segments": [{
            "index": job.index,
            "text": job.segment.source,
            "template": job.prompt.template,
            "prompt": job.prompt.text,
            "messages": job.chat.as_dicts(),
            "glossary": [{"source": source, "target": target} for source, target in job.glossary],
            "cached": job.cached is not None,
        } for job in plan.jobs],
    })


async def detect_text(request: web.Request, text: str) -> list[Detection]:
    """The languages of text, best first, detected in a worker thread (too_long over generation.max_chars)."""
    if not _is_utf8(text):
        raise HmtError(errors.BAD_REQUEST, "the text contains lone UTF-16 surrogates, which are not characters")
    limit = translator_of(request).max_chars
    if len(text) > limit:
        raise HmtError(errors.TOO_LONG, f"'text' has {len(text)} characters; the limit is {limit}")
    return await asyncio.get_running_loop().run_in_executor(None, detect, text)


async def detect_language(request: web.Request) -> web.Response:
    payload: Any = await read_json(request)
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str) or not text.strip() or not _is_utf8(text):
        raise HmtError(errors.BAD_REQUEST, "expected a JSON object with a non-empty 'text' string")
    found = await detect_text(request, text)
    return web.json_response([detection.as_dict() for detection in found])


def setup(app: web.Application) -> None:
    app.router.add_post("/api/prompts", prompts)
    app.router.add_post("/api/detect", detect_language)
