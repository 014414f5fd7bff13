"""LibreTranslate's wire: bodies as JSON or forms, its fields checked, its errors as {"error": message}."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .. import errors
from ..errors import HmtError
from ..keys import SETTINGS
from . import libre_codes
from .origin import FORM_TYPES
from .rest import read_json, retry_headers

PREFIX = "libretranslate:"  # the names of this API's routes; metrics label its requests by them

# Our error kinds that LibreTranslate answers with another status: a key it refuses is 403, a full queue a 429.
_STATUS = {errors.UNAUTHORIZED.code: 403, errors.OVERLOADED.code: 429}

Body = Mapping[str, Any]


def bad(message: str) -> HmtError:
    return HmtError(errors.BAD_REQUEST, message)


async def read_body(request: web.Request) -> Body:
    """The request's fields: a JSON object, or a form (urlencoded or multipart) over the query string's."""
    if request.content_type == "application/json":
        payload = await read_json(request)
        if not isinstance(payload, dict):
            raise bad("Invalid JSON format: expected an object")
        return payload
    fields: dict[str, Any] = dict(request.query)
    if request.content_type in FORM_TYPES:
        fields.update(await request.post())
    return fields


def string(body: Body, name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise bad(f"Invalid request: missing {name} parameter")
        return None
    if not isinstance(value, str):
        raise bad(f"Invalid request: {name} must be a string")
    return value


def api_key(body: Body) -> str | None:
    return string(body, "api_key", required=False)


def language(body: Body, name: str) -> str:
    """Our code for the body's source or target (400 when missing or not a language of ours)."""
    code = string(body, name)
    assert code is not None
    ours = libre_codes.to_ours(code)
    if ours is None or (ours == "auto" and name == "target"):
        raise bad(f"{code} is not supported")
    return ours


def detected(language: str | None, confidence: float) -> dict[str, Any]:
    """detectedLanguage: confidence 0-100; nothing found is English at 0, as LibreTranslate answers."""
    if language is None or language == "auto":
        return {"confidence": 0.0, "language": "en"}
    return {"confidence": round(confidence * 100, 1), "language": libre_codes.to_libre(language)}


def error_response(error: HmtError) -> web.Response:
    """An error as LibreTranslate answers it: {"error": message}, a refused key as 403, a full queue as 429."""
    status = _STATUS.get(error.code, error.kind.http_status)
    message = f"Slowdown: {error.message}" if status == 429 else error.message
    return web.json_response({"error": message}, status=status, headers=retry_headers(error))


def is_libretranslate(request: web.Request) -> bool:
    return (request.match_info.route.name or "").startswith(PREFIX)


def _allowed_origin(request: web.Request) -> str | None:
    """The request's Origin when auth.allowed_origins lets that site's pages call (and read) this API."""
    origin = request.headers.get("Origin")
    allowed = request.app[SETTINGS].auth.allowed_origins
    return origin if origin and ("*" in allowed or origin in allowed) else None


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight: LibreTranslate lets every site's pages call it; here, the sites of auth.allowed_origins."""
    if _allowed_origin(request) is None:
        raise HmtError(errors.FORBIDDEN_ORIGIN, f"origin {request.headers.get('Origin')!r} may not call this API "
                                                "from its pages; add it to auth.allowed_origins")
    return web.Response(status=204, headers={"Access-Control-Allow-Methods": "GET, POST",
                                             "Access-Control-Allow-Headers": "Authorization, Content-Type",
                                             "Access-Control-Max-Age": "3600"})


async def add_cors(request: web.Request, response: web.StreamResponse) -> None:
    """Let an allowed site's page read this API's answers, errors included."""
    origin = _allowed_origin(request) if is_libretranslate(request) else None
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
