"""TranslationRequest: what a client asks for, checked field by field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .errors import HmtError
from .languages import AUTO, LANGUAGES

FORMATS = ("text", "markdown", "html")
MAX_GLOSSARY = 200
MAX_TERM_CHARS = 200
MAX_CONTEXT_CHARS = 2000


@dataclass(frozen=True)
class TranslationRequest:
    text: str
    source: str
    target: str
    format: str = "text"
    glossary: tuple[tuple[str, str], ...] = field(default=())
    context: str = ""

    @property
    def chars(self) -> int:
        """What the character rate counts."""
        return len(self.text)

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
        format = payload.get("format", "text")
        if format not in FORMATS:
            raise HmtError(errors.BAD_REQUEST, f"'format' must be one of {', '.join(FORMATS)}")
        context = payload.get("context", "")
        if not isinstance(context, str) or not _is_utf8(context):
            raise HmtError(errors.BAD_REQUEST, "'context' must be a string")
        if len(context) > MAX_CONTEXT_CHARS:
            raise HmtError(errors.TOO_LONG, f"'context' has {len(context)} characters; the limit is "
                                            f"{MAX_CONTEXT_CHARS}")
        # Plain text is trimmed as it always was; a document keeps its first and last line breaks.
        return cls(text=text.strip() if format == "text" else text, source=source, target=target, format=format,
                   glossary=_glossary(payload.get("glossary", [])), context=context.strip())


def _glossary(value: Any) -> tuple[tuple[str, str], ...]:
    """[{"source": term, "target": term}, …] as pairs."""
    if not isinstance(value, list) or len(value) > MAX_GLOSSARY:
        raise HmtError(errors.BAD_REQUEST, f"'glossary' must be a list of at most {MAX_GLOSSARY} "
                                           '{"source": term, "target": term} objects')
    pairs = []
    for entry in value:
        terms = (entry.get("source"), entry.get("target")) if isinstance(entry, Mapping) else (None, None)
        if not all(isinstance(term, str) and term.strip() and len(term) <= MAX_TERM_CHARS and _is_utf8(term)
                   for term in terms):
            raise HmtError(errors.BAD_REQUEST, "each glossary entry needs a 'source' and a 'target' term "
                                               f"(non-empty strings of at most {MAX_TERM_CHARS} characters)")
        pairs.append((terms[0].strip(), terms[1].strip()))  # type: ignore[union-attr]
    return tuple(pairs)


def _is_utf8(text: str) -> bool:
    """JSON may escape lone surrogates (\\ud800) that no UTF-8 text, and no tokenizer, can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
