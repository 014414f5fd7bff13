"""Who is calling: API keys, browser tokens minted from a key, and HS256 JWTs from an identity provider."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

import jwt

from . import errors
from .config import AuthSettings
from .errors import HmtError

# Where a credential came from. API keys are long-lived secrets: only the Authorization header may carry them
# (query strings end up in logs and histories, cookies in places a key should not be), and the body of the routes
# of an API whose own contract puts the key there (LibreTranslate's `api_key`), which nothing logs.
HEADER, QUERY, COOKIE, BODY = "header", "query", "cookie", "body"

# The `kid` of a browser token names the API key whose secret signs it.
_TOKEN_KID = "hmt-key:"
_TOKEN_CONTEXT = b"hmt-stream browser token v1"


@dataclass(frozen=True)
class Principal:
    """The caller, by an id that is safe to log and to key limits and ownership on (never the secret itself).

    Ids live in separate namespaces: `key:<digest>` for API keys (and the tokens minted from them), `jwt:<sub>` for
    an identity provider's subjects, `ip:<address>` when auth is off."""

    id: str
    authenticated: bool
    kind: str = "ip"  # ip, key, token or jwt
    expires: float | None = None  # when the credential stops working (epoch seconds)
    signin_end: float | None = None  # a token's absolute end: renewals never reach past it


@dataclass(frozen=True)
class _Key:
    principal: str
    signing: bytes  # what signs the browser tokens minted from this key


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _unauthorized(message: str = "the API key or token is not valid (or has expired)") -> HmtError:
    return HmtError(errors.UNAUTHORIZED, message)


class Authenticator:
    def __init__(self, settings: AuthSettings) -> None:
        self.enabled = settings.enabled
        self.token_ttl_s = settings.token_ttl_s
        self.signin_ttl_s = settings.signin_ttl_s
        # Keys are kept only as digests: a lookup by digest compares no secret byte by byte. Each key signs its own
        # browser tokens, so a token dies with its key (also across restarts) and nothing else can forge one.
        self._keys: dict[str, _Key] = {}
        for key in settings.api_keys:
            digest = _digest(key)
            self._keys[digest] = _Key(f"key:{digest[:12]}",
                                      hmac.new(key.encode(), _TOKEN_CONTEXT, hashlib.sha256).digest())
        self._by_kid = {key.principal.removeprefix("key:"): key for key in self._keys.values()}
        self._jwt_secret = settings.jwt_secret
        self._audience = settings.jwt_audience or None
        self._issuer = settings.jwt_issuer or None

    def identify(self, credential: str | None, remote: str, source: str = HEADER) -> Principal:
        """The principal behind a credential; the client's address when auth is off."""
        if not self.enabled:
            return Principal(f"ip:{remote}", authenticated=False)
        if not credential:
            raise _unauthorized("an API key or token is required: send `Authorization: Bearer <key>`, or get a "
                                "browser token from POST /api/token")
        key = self._keys.get(_digest(credential))
        if key is not None:
            if source not in (HEADER, BODY):
                raise _unauthorized("API keys are accepted only in the Authorization header; browsers trade "
                                    "theirs for a short-lived token at POST /api/token")
            return Principal(key.principal, authenticated=True, kind="key")
        try:
            header = jwt.get_unverified_header(credential)
        except jwt.PyJWTError:
            raise _unauthorized() from None
        kid = header.get("kid")
        if isinstance(kid, str) and kid.startswith(_TOKEN_KID):
            return self._browser_token(credential, kid.removeprefix(_TOKEN_KID))
        return self._jwt(credential)

    def _browser_token(self, token: str, kid: str) -> Principal:
        key = self._by_kid.get(kid)
        if key is None:
            raise _unauthorized("the token's API key is no longer accepted: sign in with a current key")
        claims = self._decode(token, key.signing, require=["exp", "sub", "end"])
        if claims["sub"] != key.principal:
            raise _unauthorized()
        return Principal(key.principal, authenticated=True, kind="token", expires=float(claims["exp"]),
                         signin_end=float(claims["end"]))

    def _jwt(self, token: str) -> Principal:
        if not self._jwt_secret:
            raise _unauthorized()
        claims = self._decode(token, self._jwt_secret.encode(), require=["exp", "sub"], audience=self._audience,
                              issuer=self._issuer)
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject.strip():
            raise _unauthorized("the JWT's subject (sub) is empty")
        return Principal(f"jwt:{subject}", authenticated=True, kind="jwt", expires=float(claims["exp"]))

    @staticmethod
    def _decode(token: str, secret: bytes, *, require: list[str], audience: str | None = None,
                issuer: str | None = None) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, secret, algorithms=["HS256"], audience=audience, issuer=issuer,
                options={"require": require, "verify_aud": audience is not None})
        except jwt.PyJWTError:
            raise _unauthorized() from None
        return claims

    def issue(self, principal: Principal) -> tuple[str, int]:
        """A short-lived browser token for principal and its lifetime in seconds. Only a key mints one; a token
        renews itself up to the absolute end set when its key was presented."""
        now = int(time.time())
        if principal.kind == "key":
            end = now + int(self.signin_ttl_s)
        elif principal.kind == "token" and principal.signin_end is not None:
            end = int(principal.signin_end)
        else:
            raise HmtError(errors.BAD_REQUEST, "a browser token is issued for an API key (or renewed with such a "
                                               "token), not for a JWT")
        expires = min(now + int(self.token_ttl_s), end)
        if expires <= time.time():
            raise _unauthorized("this sign-in has ended: sign in with the API key again")
        kid = principal.id.removeprefix("key:")
        token = jwt.encode({"sub": principal.id, "iat": now, "exp": expires, "end": end},
                           self._by_kid[kid].signing, algorithm="HS256", headers={"kid": _TOKEN_KID + kid})
        return token, expires - now
