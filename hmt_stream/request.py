"""TranslationRequest: what a client asks for, checked field by field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import errors
from .errors import HmtError
from .languages import AUTO, LANGUAGES


@dataclass(frozen=True)
class TranslationRequest:
    text: str
    source: str
    target: str

    @classmethod
    def parse(cls, payload: Any, *, max_chars: int) -> TranslationRequest:
        """Validate a decoded JSON body (or WS message) into a request, or raise HmtError with a stable code."""
        if not isinstance(payload, Mapping):
            raise HmtError(errors.BAD_REQUEST, "expected a JSON object with text, source and target")
        text = payload.get("text")
        if not isinstance(text, str):
            raise HmtError(errors.BAD_REQUEST, "'text' must be a string")
        if not text.strip():
            raise HmtError(errors.BAD_REQUEST, "'text' is empty")
        if not _is_utf8(text):
            raise HmtError(errors.BAD_REQUEST, "'text' contains lone UTF-16 surrogates, which are not characters")
        if len(text) > max_chars:
            raise HmtError(errors.TOO_LONG, f"'text' has {len(text)} characters; the limit is {max_chars}")
        source = payload.get("source", AUTO)
        target = payload.get("target")
        for name, value in (("source", source), ("target", target)):
            if not isinstance(value, str):
                raise HmtError(errors.BAD_REQUEST, f"'{name}' must be a language code string")
        if source != AUTO and source not in LANGUAGES:
            raise HmtError(errors.UNSUPPORTED_LANGUAGE, f"unsupported source language {source!r}")
        if target not in LANGUAGES:
            raise HmtError(errors.UNSUPPORTED_LANGUAGE, f"unsupported target language {target!r}")
        return cls(text=text.strip(), source=source, target=target)


def _is_utf8(text: str) -> bool:
    """JSON may escape lone surrogates (\\ud800) that no UTF-8 text, and no tokenizer, can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
