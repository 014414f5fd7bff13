"""The model's output for one segment, as it streams, turned back into document text: `<target>` unwrapped,
`<sN>` placeholders back to the markup they stand for, spaces around it trimmed (the kept parts hold the layout)."""

from __future__ import annotations

import html
import re

from .parts import Segment

_TAG = re.compile(r"</?(?:s\d+|target|source)>")
_MAYBE_TAG = re.compile(r"<(?:/?(?:s\d*|t(?:a(?:r(?:g(?:e(?:t)?)?)?)?)?|s(?:o(?:u(?:r(?:c(?:e)?)?)?)?)?)?)?$")


class Restorer:
    """feed() each delta of the model's output and get document text back; finish() at the end.

    Markup the model dropped is not lost: a span it never wrote comes at the end with its original text, and a span
    it opened and never closed is closed. With `escape` (HTML documents) the model's own text is escaped, so that
    only the document's markup is markup."""

    def __init__(self, segment: Segment, *, escape: bool = False) -> None:
        self.segment = segment
        self.escape = escape
        self._pending = ""  # output held back: a tag not yet complete, or spaces that may be trailing
        self._started = False
        self._opened: list[int] = []
        self._closed: set[int] = set()

    def feed(self, delta: str) -> str:
        text = self._pending + delta
        self._pending = ""
        if not self.segment.formatted:  # no placeholders asked for: only the outer spaces to trim (per token)
            if not self._started:
                text = text.lstrip()
                self._started = bool(text)
            body = text.rstrip()
            self._pending = text[len(body):]
            return html.escape(body, quote=False) if self.escape else body
        out: list[str] = []
        position = 0
        for match in _TAG.finditer(text):
            prose = self._prose(text[position:match.start()])
            out.append(prose.rstrip() if match.group().startswith(("</target", "</source")) else prose)
            out.append(self._tag(match.group()))
            position = match.end()
        rest = text[position:]
        held = _MAYBE_TAG.search(rest) if self.segment.formatted or "<" in rest else None
        if held is not None:
            self._pending = rest[held.start():]
            rest = rest[:held.start()]
        prose = self._prose(rest)
        stripped = prose.rstrip()
        if len(stripped) < len(prose):  # trailing spaces wait: the segment's own trailing space is kept apart
            self._pending = prose[len(stripped):] + self._pending
            prose = stripped
        out.append(prose)
        return "".join(out)

    def finish(self) -> str:
        leftover = self._prose(self._pending).rstrip() if not _MAYBE_TAG.fullmatch(self._pending) else ""
        self._pending = ""
        out = [leftover]
        spans = self.segment.spans
        for number in reversed(self._opened):
            if number not in self._closed:
                out.append(spans[number - 1].close)
        for number in range(1, len(spans) + 1):
            if number not in self._opened:
                # Never written by the model: the markup with the document's own text inside, so nothing is lost.
                inner = re.search(f"<s{number}>(.*?)</s{number}>", self.segment.text, re.DOTALL)
                text = re.sub(r"<(/?)s(\d+)>", "", inner.group(1)) if inner else ""
                out.append(spans[number - 1].open + text + spans[number - 1].close)
        return "".join(out)

    def _prose(self, text: str) -> str:
        if not self._started:
            text = text.lstrip()
            if not text:
                return ""
            self._started = True
        return html.escape(text, quote=False) if self.escape else text

    def _tag(self, tag: str) -> str:
        if tag.startswith(("<target", "</target", "<source", "</source")):
            return ""
        number = int(tag.strip("</s>"))
        if not 1 <= number <= len(self.segment.spans):
            return ""
        span = self.segment.spans[number - 1]
        self._started = True
        if tag.startswith("</"):
            if number in self._opened and number not in self._closed:
                self._closed.add(number)
                return span.close
            return ""
        if number in self._opened:
            return ""
        self._opened.append(number)
        return span.open
