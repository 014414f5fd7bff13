"""What a document becomes: text kept verbatim, and segments for the model (with their inline markup as spans)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# HY-MT1.5's formatted-translation template marks formatted text with numbered tags: <s1>…</s1>.
PLACEHOLDER = re.compile(r"<(/?)s(\d+)>")


@dataclass(frozen=True)
class Text:
    """Prose to translate."""

    text: str


@dataclass(frozen=True)
class Open:
    """Inline markup that opens a span whose inner text is translated (`<b>`, `[` of a link)."""

    text: str


@dataclass(frozen=True)
class Close:
    """The markup that closes the innermost open span (`</b>`, `](https://…)`)."""

    text: str


@dataclass(frozen=True)
class Atom:
    """Inline markup kept whole inside a sentence: code, a URL, an image, a lone tag."""

    text: str


Inline = Text | Open | Close | Atom
Run = tuple[Inline, ...]  # the inline content of one block, between two kept stretches


@dataclass(frozen=True)
class Span:
    """One placeholder's markup: `<sN>` stands for open, `</sN>` for close (empty for an atom)."""

    open: str
    close: str


@dataclass(frozen=True)
class Segment:
    """A piece of the document the model translates. `text` holds `<sN>` placeholders for `spans[N-1]`."""

    text: str
    spans: tuple[Span, ...] = ()

    @property
    def formatted(self) -> bool:
        return bool(self.spans)

    @property
    def source(self) -> str:
        """The document's own text for this segment (placeholders back to their markup)."""
        return PLACEHOLDER.sub(self._markup, self.text)

    @property
    def plain(self) -> str:
        """The prose alone, placeholders dropped (for detection, glossary matching and context)."""
        return PLACEHOLDER.sub("", self.text)

    def _markup(self, match: re.Match[str]) -> str:
        span = self.spans[int(match.group(2)) - 1]
        return span.close if match.group(1) else span.open


Part = str | Segment  # a str is kept verbatim and never sent to the model


def source_of(parts: list[Part]) -> str:
    """The document the parts came from (every split keeps this equal to its input)."""
    return "".join(part if isinstance(part, str) else part.source for part in parts)


def segments_of(parts: list[Part]) -> list[Segment]:
    return [part for part in parts if isinstance(part, Segment)]
