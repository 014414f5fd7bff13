"""What a trusted reverse proxy tells about the client: its address, and the host and scheme it asked for.

Only a peer listed in `server.trusted_proxies` is believed; anyone else could write these headers themselves.
Of several values, the last is taken: the one the nearest proxy (the trusted one) wrote."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from aiohttp import web

from ..keys import SETTINGS

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in trusted)


def _in(address: str | None, networks: tuple[Network, ...]) -> bool:
    if not address or not networks:
        return False
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _trusted(request: web.Request) -> tuple[Network, ...]:
    return _networks(request.app[SETTINGS].server.trusted_proxies)


def from_trusted_proxy(request: web.Request) -> bool:
    return _in(request.remote, _trusted(request))


def _last(request: web.Request, forwarded_key: str, header: str) -> str | None:
    for element in reversed(request.forwarded):
        value = element.get(forwarded_key)
        if value:
            return value
    values = [item.strip() for item in request.headers.get(header, "").split(",") if item.strip()]
    return values[-1] if values else None


def client_ip(request: web.Request) -> str:
    """The client's address: the peer's, or behind trusted proxies the nearest address none of them holds."""
    peer = request.remote or "unknown"
    networks = _trusted(request)
    if not _in(peer, networks):
        return peer
    chain = [element["for"] for element in request.forwarded if element.get("for")]
    if not chain:
        chain = [item.strip() for item in request.headers.get("X-Forwarded-For", "").split(",") if item.strip()]
    for address in reversed(chain):
        if not _in(address, networks):
            return address.strip("[]")
    return peer


def forwarded_host(request: web.Request) -> str | None:
    """The host the client asked a trusted proxy for (Forwarded: host=, or X-Forwarded-Host)."""
    if not from_trusted_proxy(request):
        return None
    return _last(request, "host", "X-Forwarded-Host")


def is_https(request: web.Request) -> bool:
    """The client's connection is TLS: ours, or a trusted proxy's (Forwarded: proto=, or X-Forwarded-Proto)."""
    if request.secure:
        return True
    if not from_trusted_proxy(request):
        return False
    return (_last(request, "proto", "X-Forwarded-Proto") or "").lower() == "https"
