"""Structured access logs: one JSON line per request, without secrets and without the text translated."""

from __future__ import annotations

import json
import logging
import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from .metrics import transport_of

# Only these query parameters are logged; anything else (an access_token, say) never reaches the log.
_LOGGED_QUERY = ("after", "timeout")

log = logging.getLogger("hmt_stream.access")


class AccessLogger(AbstractAccessLogger):
    """Writes to the `hmt_stream.access` logger, whatever logger the server hands it."""

    @property
    def enabled(self) -> bool:
        return log.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        from .transports.guard import PRINCIPAL

        principal = request.get(PRINCIPAL)
        record = {
            "remote": request.remote,
            "method": request.method,
            "path": request.path,
            "query": {key: request.query[key] for key in _LOGGED_QUERY if key in request.query},
            "status": response.status,
            "ms": round(time * 1000, 1),
            "bytes": response.body_length,
            "transport": transport_of(request),  # type: ignore[arg-type]
            "principal": principal.id if principal is not None else None,
        }
        log.info(json.dumps(record, separators=(",", ":")))


# A credential in any log line: a token in a query string or cookie, or a Bearer header (aiohttp's own log of a
# malformed request quotes the raw request line and headers).
_SECRET = re.compile(r"(?i)(access_token=|hmt_token=|bearer\s+)[^\s&;\"',\\]+")


class RedactSecrets(logging.Filter):
    """Replaces credentials in a record's message and traceback with `[redacted]`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = _SECRET.sub(r"\1[redacted]", message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _SECRET.sub(r"\1[redacted]", record.exc_text)
        return True


def redact_secrets() -> None:
    """Filter every handler of the root logger, which every logger (aiohttp's and asyncio's too) ends up at."""
    redact = RedactSecrets()
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
