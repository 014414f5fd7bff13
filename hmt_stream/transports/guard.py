"""Who may call and from where: the Host and Origin checks, the principal behind each request, browser tokens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from .. import errors
from ..auth import BODY, COOKIE, HEADER, QUERY, Authenticator, Principal
from ..errors import HmtError
from ..keys import AUTHENTICATOR
from ..ratelimit import RateLimiter
from .forwarded import client_ip, is_https
from .origin import check_host, check_origin

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TOKEN_COOKIE = "hmt_token"
TOKEN_QUERY = "access_token"
PRINCIPAL = web.RequestKey("principal", Principal)
AUTH_FAILURES = web.AppKey("auth_failures", RateLimiter)
OWN_AUTH_ROUTES = web.AppKey("own_auth_routes", set[str])

# Paths anyone may read: the page, its files, and what the page needs before it has a token.
PUBLIC = ("/", "/api/health", "/api/languages", "/api/negotiate", "/metrics")


def credential(request: web.Request) -> tuple[str | None, str]:
    """The credential and where it came from: the Bearer header for programs; query or cookie for browsers,
    whose EventSource and WebSocket send no headers."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip(), HEADER
    if TOKEN_QUERY in request.query:
        return request.query[TOKEN_QUERY], QUERY
    return request.cookies.get(TOKEN_COOKIE), COOKIE


def leave_auth_to_routes(app: web.Application, *routes: str) -> None:
    """These routes (path patterns, as registered) authenticate their callers themselves, with authenticate(),
    once they have read a key that their API's contract puts in the body; one that never calls it is public.
    Until then the principal is the client's address."""
    app.setdefault(OWN_AUTH_ROUTES, set()).update(routes)


def _leaves_auth_to_route(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in request.app.get(OWN_AUTH_ROUTES, set())


def principal_of(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal


def owner_of(request: web.Request) -> str | None:
    """Sessions belong to a principal only when auth is on; otherwise anyone with the id may read one."""
    principal = principal_of(request)
    return principal.id if principal.authenticated else None


def _authenticate(request: web.Request, authenticator: Authenticator, address: str,
                  found: tuple[str | None, str]) -> Principal:
    """The caller's principal; wrong credentials count against the address, which is refused once over
    auth.failure_rate (before its credential is even looked at)."""
    failures = request.app[AUTH_FAILURES]
    failures.check(address)
    secret, source = found
    try:
        return authenticator.identify(secret, address, source)
    except HmtError:
        if secret:
            failures.count(address)
        raise


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    authenticator: Authenticator = request.app[AUTHENTICATOR]
    check_host(request)
    check_origin(request, auth_enabled=authenticator.enabled)
    public = request.path in PUBLIC or request.path.startswith("/static/")
    address = client_ip(request)
    if public or not authenticator.enabled or _leaves_auth_to_route(request):
        request[PRINCIPAL] = Principal(f"ip:{address}", authenticated=False)
    else:
        request[PRINCIPAL] = _authenticate(request, authenticator, address, credential(request))
    return await handler(request)


def authenticate(request: web.Request, body_key: str | None) -> Principal:
    """For a route that leaves auth to itself: the caller by the key its body carried, else by the usual
    credential (the Bearer header, a browser token)."""
    authenticator: Authenticator = request.app[AUTHENTICATOR]
    if authenticator.enabled:
        found = (body_key, BODY) if body_key else credential(request)
        request[PRINCIPAL] = _authenticate(request, authenticator, client_ip(request), found)
    return principal_of(request)


async def issue_token(request: web.Request) -> web.Response:
    """POST /api/token: trade the caller's key (or renew its token) for a short-lived token, also set as an
    HttpOnly cookie; Secure when the client's connection is TLS, here or at a trusted proxy."""
    authenticator: Authenticator = request.app[AUTHENTICATOR]
    principal = principal_of(request)
    if not principal.authenticated:
        raise HmtError(errors.BAD_REQUEST, "auth is switched off; no token is needed")
    token, lifetime = authenticator.issue(principal)
    response = web.json_response({"token": token, "expires_in": lifetime})
    response.set_cookie(TOKEN_COOKIE, token, max_age=lifetime, httponly=True, samesite="Strict", path="/",
                        secure=is_https(request))
    return response
