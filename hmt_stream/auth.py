"""Who is calling: API keys and HS256 JWTs, and the short-lived token that browsers carry in a cookie or query."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import jwt

from . import errors
from .config import AuthSettings
from .errors import HmtError


@dataclass(frozen=True)
class Principal:
    """The caller, by an id that is safe to log and to key limits and ownership on (never the secret itself)."""

    id: str
    authenticated: bool


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Authenticator:
    def __init__(self, settings: AuthSettings) -> None:
        self.enabled = settings.enabled
        self.token_ttl_s = settings.token_ttl_s
        # Keys are kept only as digests: a lookup by digest compares no secret byte by byte.
        self._keys = {_digest(key): f"key:{_digest(key)[:12]}" for key in settings.api_keys}
        self._secret = settings.jwt_secret or secrets.token_urlsafe(32)

    def identify(self, credential: str | None, remote: str) -> Principal:
        """The principal behind a credential; the client's address when auth is off."""
        if not self.enabled:
            return Principal(f"ip:{remote}", authenticated=False)
        if not credential:
            raise HmtError(errors.UNAUTHORIZED, "an API key or token is required: send `Authorization: Bearer "
                                                "<key>`, or get a browser token from POST /api/token")
        key = self._keys.get(_digest(credential))
        if key is not None:
            return Principal(key, authenticated=True)
        try:
            claims = jwt.decode(credential, self._secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
        except jwt.PyJWTError:
            raise HmtError(errors.UNAUTHORIZED, "the API key or token is not valid (or has expired)") from None
        return Principal(str(claims["sub"]), authenticated=True)

    def issue(self, principal: Principal) -> str:
        """A short-lived token for the same principal, for clients that cannot send headers (EventSource, WS)."""
        now = int(time.time())
        return jwt.encode({"sub": principal.id, "iat": now, "exp": now + int(self.token_ttl_s)}, self._secret,
                          algorithm="HS256")
