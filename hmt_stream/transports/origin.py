"""Cross-site protection: the Host a browser named (against DNS rebinding) and the Origin of what changes state.

The origin rule. A request from a browser (it has an `Origin`) that opens a WebSocket or sends POST, PUT, PATCH
or DELETE passes when its origin is proven:
  1. the browser says `Sec-Fetch-Site: same-origin` (it computes that from the URL it used; no page can set it), or
  2. the Origin is in `auth.allowed_origins`, or that list holds "*", or
  3. the Origin's host and port are the request's host: `Host`, or what a trusted proxy forwarded
     (`X-Forwarded-Host`, `Forwarded: host=`).
Otherwise it is refused with `forbidden_origin` and advice, except with auth off for an HTTP request that a page
of another site could only send after a CORS preflight (a JSON body, or a method other than POST), which this
server never grants, and that the browser did not mark as cross-site: that is this server's own page behind a
proxy that rewrote Host (nginx's default). A WebSocket upgrade has no preflight, so it never gets that exception.
Form bodies are what any site's page may send without asking; routes of form-speaking APIs opt in to them with
`accept_form_bodies`, and then get the same exception for them."""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import urlsplit

from aiohttp import web

from .. import errors
from ..errors import HmtError
from ..keys import SETTINGS
from .forwarded import forwarded_host

STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# The body types of CORS "simple requests": a page on any site may send them without a preflight.
SIMPLE_TYPES = (*FORM_TYPES, "text/plain")
FORM_ROUTES = web.AppKey("form_routes", set[str])

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def accept_form_bodies(app: web.Application, *paths: str) -> None:
    """Let these routes take form bodies from browsers the way JSON routes take JSON (see the module's rule)."""
    app.setdefault(FORM_ROUTES, set()).update(paths)


# Both are pure and cost microseconds per call (urlsplit, ipaddress): each request asks them for its Host.
@functools.lru_cache(maxsize=1024)
def _split_host(host: str) -> tuple[str, int | None]:
    """`name:port`, `[v6]:port`, a bare name or a bare IPv6 address, as (lower-case name, port or None)."""
    if host.count(":") > 1 and not host.startswith("["):
        return host.lower(), None
    try:
        parts = urlsplit(f"//{host}")
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return host.lower(), None


@functools.lru_cache(maxsize=1024)
def _is_loopback(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_host(request: web.Request) -> None:
    """On a loopback-bound server, answer only to local host names and server.allowed_hosts: a page whose name
    was re-pointed at 127.0.0.1 (DNS rebinding) still sends its own name as Host, and is refused."""
    server = request.app[SETTINGS].server
    if not _is_loopback(_split_host(server.host)[0]) or "*" in server.allowed_hosts:
        return
    allowed = {name.lower() for name in server.allowed_hosts} | {server.host.lower()}
    for host in (request.headers.get("Host"), forwarded_host(request)):
        if not host:
            continue
        name = _split_host(host)[0]
        if not _is_loopback(name) and name not in allowed:
            raise HmtError(errors.FORBIDDEN_HOST,
                           f"this server listens on {server.host} and answers only to local host names, not to "
                           f"{name!r} (a guard against DNS rebinding); if {name!r} is your server's name, add it "
                           f"to server.allowed_hosts")


def _same_host(origin: str, host: str | None) -> bool:
    if not host:
        return False
    parts = urlsplit(origin)
    default = _DEFAULT_PORTS.get(parts.scheme)
    try:
        origin_port = parts.port or default
    except ValueError:
        return False
    name, port = _split_host(host)
    return (parts.hostname or "").lower() == name and origin_port == (port or default)


def _proven(request: web.Request, origin: str) -> bool:
    if request.headers.get("Sec-Fetch-Site") == "same-origin":
        return True
    allowed = request.app[SETTINGS].auth.allowed_origins
    if "*" in allowed or origin in allowed:
        return True
    return _same_host(origin, request.headers.get("Host")) or _same_host(origin, forwarded_host(request))


def _needs_preflight(request: web.Request) -> bool:
    """Could a page on another site only send this after a CORS preflight?"""
    if request.method != "POST":
        return True
    media = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media in FORM_TYPES:
        return request.path in request.app.get(FORM_ROUTES, set())  # the route speaks forms: treated like JSON
    return bool(media) and media not in SIMPLE_TYPES


def is_websocket_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def check_origin(request: web.Request, *, auth_enabled: bool) -> None:
    """Refuse cross-site WebSocket upgrades and state changes (the module's rule)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return  # not a browser (curl, programs): nothing to hijack
    upgrade = is_websocket_upgrade(request)
    if (request.method not in STATE_CHANGING and not upgrade) or _proven(request, origin):
        return
    unmarked = request.headers.get("Sec-Fetch-Site") is None
    if not auth_enabled and not upgrade and unmarked and _needs_preflight(request):
        return
    host = forwarded_host(request) or request.headers.get("Host", "?")
    what = "WebSocket upgrades" if upgrade else f"{request.method} requests"
    hint = ("; this API takes its body as Content-Type: application/json" if not auth_enabled and not upgrade
            else "")
    raise HmtError(errors.FORBIDDEN_ORIGIN,
                   f"{what} from origin {origin!r} are not allowed: the server was reached as host {host!r}{hint}. "
                   f"If this page is the server's own behind a reverse proxy, have the proxy pass the host on "
                   f"(nginx: `proxy_set_header Host $http_host;`, or X-Forwarded-Host from an address in "
                   f"server.trusted_proxies). If it is another site you trust, add it: "
                   f"auth.allowed_origins = [\"{origin}\"].")
