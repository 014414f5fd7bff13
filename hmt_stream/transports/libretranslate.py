"""The LibreTranslate-compatible API at the server's root, on LibreTranslate 1.9's wire: POST /translate, /detect
and /translate_file, GET /languages and /frontend/settings, and the translated files' downloads.

Each text is a translator session like any other (limits, the queue, the cache, detection, metrics); the key comes
as the body's `api_key` (this API's contract) or the usual Bearer header."""

from __future__ import annotations

from aiohttp import web

from ..keys import SETTINGS
from ..languages import AUTO
from . import libre_codes, libre_files
from .documents import detect_text
from .guard import authenticate, leave_auth_to_routes
from .libre_text import translate
from .libre_wire import PREFIX, add_cors, api_key, bad, detected, error_response, preflight, read_body
from .origin import accept_form_bodies
from .rest import ERROR_SHAPES


async def detect(request: web.Request) -> web.Response:
    body = await read_body(request)
    authenticate(request, api_key(body))
    q = body.get("q")
    if isinstance(q, list) and all(isinstance(text, str) for text in q):
        q = "\n".join(q)  # a list is detected as one text
    if not isinstance(q, str) or not q.strip():
        raise bad("Invalid request: missing q parameter")
    found = await detect_text(request, q)
    return web.json_response([detected(item.language, item.confidence) for item in found] or [detected(None, 0)])


async def languages(request: web.Request) -> web.Response:
    return web.json_response(libre_codes.languages())


async def frontend_settings(request: web.Request) -> web.Response:
    """The fields LibreTranslate's own page and clients read before they translate."""
    settings = request.app[SETTINGS]
    return web.json_response({
        "charLimit": settings.generation.max_chars,
        "frontendTimeout": 500,
        "apiKeys": settings.auth.enabled,
        "keyRequired": settings.auth.enabled,
        "suggestions": False,
        "filesTranslation": True,
        "supportedFilesFormat": list(libre_files.FORMATS),
        "language": {
            "source": {"code": AUTO, "name": "Auto Detect"},
            "target": {"code": "en", "name": "English"},
        },
    })


def setup(app: web.Application) -> None:
    routes = [
        ("POST", "/translate", translate), ("POST", "/detect", detect), ("GET", "/languages", languages),
        ("GET", "/frontend/settings", frontend_settings), ("POST", "/translate_file", libre_files.translate_file),
        ("GET", "/download_file/{session}/{name}", libre_files.download),
    ]
    for method, path, handler in routes:
        resource = app.router.add_resource(path, name=PREFIX + path.strip("/").split("/")[0].replace("_", "-"))
        resource.add_route(method, handler)
        resource.add_route("OPTIONS", preflight)
    accept_form_bodies(app, "/translate", "/detect", "/translate_file")
    leave_auth_to_routes(app, *(path for _, path, _ in routes))
    # Errors in this API's shape, the guard's refusals (origin, host, auth failures) included.
    app.setdefault(ERROR_SHAPES, {}).update({path.split("{")[0]: error_response for _, path, _ in routes})
    app.on_response_prepare.append(add_cors)
    libre_files.setup(app)
