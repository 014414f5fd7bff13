"""Documents: plain text, markdown and HTML cut into segments for the model, with everything else kept as written.

Pure functions (no aiohttp, no torch): `split` a document into parts, a `Restorer` per segment turns the model's
output back into document text, `detect` names the language of a text."""

from __future__ import annotations

from . import html, markdown
from .parts import Part, Segment, Span, segments_of, source_of
from .restore import Restorer
from .segment import Measure, estimate_tokens, paragraphs, split_blocks

FORMATS = ("text", "markdown", "html")

__all__ = ["FORMATS", "Measure", "Part", "Restorer", "Segment", "Span", "estimate_tokens", "segments_of", "source_of",
           "split"]


def split(text: str, format: str = "text", *, language: str = "en", max_tokens: int = 256,
          measure: Measure = estimate_tokens) -> list[Part]:
    """The document as parts: kept strings and segments of at most max_tokens (by measure) where sentences allow.
    `source_of(split(text, …)) == text` always holds."""
    if format == "markdown":
        blocks = markdown.blocks(text)
    elif format == "html":
        blocks = html.blocks(text)
    elif format == "text":
        blocks = paragraphs(text)
    else:
        raise ValueError(f"unknown format {format!r} (known: {', '.join(FORMATS)})")
    return split_blocks(blocks, language, max_tokens, measure)
