"""Who may call and from where: the principal behind each request, and the Origin check against hijacking."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from .. import errors
from ..auth import Authenticator, Principal
from ..errors import HmtError
from ..keys import AUTHENTICATOR, SETTINGS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TOKEN_COOKIE = "hmt_token"
TOKEN_QUERY = "access_token"
PRINCIPAL = web.RequestKey("principal", Principal)

# Paths anyone may read: the page, its files, and what the page needs before it has a token.
PUBLIC = ("/", "/api/health", "/api/languages", "/api/negotiate", "/metrics")

STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")


def credential(request: web.Request) -> str | None:
    """Bearer header for programs; query or cookie for browsers, whose EventSource and WebSocket send no headers."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.query.get(TOKEN_QUERY) or request.cookies.get(TOKEN_COOKIE)


def check_origin(request: web.Request) -> None:
    """Refuse cross-site WebSocket upgrades and state changes unless the Origin is ours or allow-listed."""
    origin = request.headers.get("Origin")
    if origin is None:
        return  # not a browser (curl, programs): nothing to hijack
    is_upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
    if request.method not in STATE_CHANGING and not is_upgrade:
        return
    allowed = request.app[SETTINGS].auth.allowed_origins
    if "*" in allowed or origin in allowed:
        return
    hosts = {request.headers.get("Host"), request.headers.get("X-Forwarded-Host")}
    if urlsplit(origin).netloc in hosts - {None}:
        return
    raise HmtError(errors.FORBIDDEN_ORIGIN, f"requests from origin {origin!r} are not allowed")


def principal_of(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal


def owner_of(request: web.Request) -> str | None:
    """Sessions belong to a principal only when auth is on; otherwise anyone with the id may read one."""
    principal = principal_of(request)
    return principal.id if principal.authenticated else None


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    check_origin(request)
    authenticator: Authenticator = request.app[AUTHENTICATOR]
    public = request.path in PUBLIC or request.path.startswith("/static/")
    remote = request.remote or "unknown"
    if public or not authenticator.enabled:
        request[PRINCIPAL] = Principal(f"ip:{remote}", authenticated=False)
    else:
        request[PRINCIPAL] = authenticator.identify(credential(request), remote)
    return await handler(request)


async def issue_token(request: web.Request) -> web.Response:
    """POST /api/token: trade the caller's key for a short-lived token, also set as an HttpOnly cookie."""
    authenticator: Authenticator = request.app[AUTHENTICATOR]
    principal = principal_of(request)
    if not principal.authenticated:
        raise HmtError(errors.BAD_REQUEST, "auth is switched off; no token is needed")
    token = authenticator.issue(principal)
    response = web.json_response({"token": token, "expires_in": authenticator.token_ttl_s})
    response.set_cookie(TOKEN_COOKIE, token, max_age=int(authenticator.token_ttl_s), httponly=True,
                        samesite="Strict", path="/", secure=request.secure)
    return response
