"""One error family: a stable code, an HTTP status and a WebSocket close code for each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorKind:
    code: str
    http_status: int
    ws_close: int  # used only where the error ends the whole socket, not one session on it


BAD_REQUEST = ErrorKind("bad_request", 400, 1003)
UNSUPPORTED_LANGUAGE = ErrorKind("unsupported_language", 400, 1003)
TOO_LONG = ErrorKind("too_long", 400, 1009)
UNAUTHORIZED = ErrorKind("unauthorized", 401, 1008)
FORBIDDEN_ORIGIN = ErrorKind("forbidden_origin", 403, 1008)
FORBIDDEN_HOST = ErrorKind("forbidden_host", 403, 1008)
NOT_FOUND = ErrorKind("not_found", 404, 1008)
REQUEST_TIMEOUT = ErrorKind("request_timeout", 408, 1008)
TOO_LARGE = ErrorKind("too_large", 413, 1009)
RATE_LIMITED = ErrorKind("rate_limited", 429, 1008)
TOO_MANY_STREAMS = ErrorKind("too_many_streams", 429, 1008)
OVERLOADED = ErrorKind("overloaded", 503, 1013)
MODEL_ERROR = ErrorKind("model_error", 500, 1011)
ENGINE_UNAVAILABLE = ErrorKind("engine_unavailable", 503, 1011)
SHUTTING_DOWN = ErrorKind("shutting_down", 503, 1001)
STORE_UNAVAILABLE = ErrorKind("store_unavailable", 503, 1011)

KINDS = {kind.code: kind for kind in (BAD_REQUEST, UNSUPPORTED_LANGUAGE, TOO_LONG, UNAUTHORIZED, FORBIDDEN_ORIGIN,
                                      FORBIDDEN_HOST, NOT_FOUND, REQUEST_TIMEOUT, TOO_LARGE, RATE_LIMITED,
                                      TOO_MANY_STREAMS, OVERLOADED, MODEL_ERROR, ENGINE_UNAVAILABLE, SHUTTING_DOWN,
                                      STORE_UNAVAILABLE)}


class HmtError(Exception):
    """An error a client is told about, by its stable code."""

    def __init__(self, kind: ErrorKind, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after

    @property
    def code(self) -> str:
        return self.kind.code

    def as_dict(self) -> dict[str, str]:
        return {"code": self.kind.code, "message": self.message}


class ConfigError(Exception):
    """A setting is unknown or has a bad value; the message names the key."""


class ModelLoadError(Exception):
    """The configured model could not be loaded; the message says why and what to do."""
