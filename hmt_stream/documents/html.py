"""HTML → blocks with the standard library's parser: text is prose, tags and attributes are kept as written;
`<script> <style> <code> <pre>` (and a few more) are kept whole; inline tags inside a sentence become spans."""

from __future__ import annotations

from html.parser import HTMLParser

from .parts import Atom, Close, Inline, Open, Run, Text

# Elements whose content is never translated.
VERBATIM = frozenset({"script", "style", "code", "pre", "textarea", "kbd", "samp", "var", "svg", "math",
                      "template", "noscript", "iframe", "object"})
# Elements that sit inside a sentence: their tags travel with it (HY-MT1.5's formatted translation).
INLINE = frozenset({"a", "abbr", "b", "bdi", "bdo", "cite", "data", "dfn", "em", "font", "i", "ins", "del", "mark",
                    "q", "s", "small", "span", "strong", "sub", "sup", "time", "u", "label", "big", "tt", "img",
                    "wbr"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
                   "wbr"})


class _Scanner(HTMLParser):
    """Records every token with its start offset, so each keeps its exact source text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=False)
        self.text = text
        self._line_starts = [0]
        for index, char in enumerate(text):
            if char == "\n":
                self._line_starts.append(index + 1)
        self.tokens: list[tuple[int, str, str]] = []  # (offset, kind, tag name)

    def _at(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.tokens.append((self._at(), "void" if tag in _VOID else "start", tag))

    def handle_startendtag(self, tag: str, attrs: object) -> None:
        self.tokens.append((self._at(), "void", tag))

    def handle_endtag(self, tag: str) -> None:
        self.tokens.append((self._at(), "end", tag))

    def handle_data(self, data: str) -> None:
        self.tokens.append((self._at(), "text", ""))

    def handle_entityref(self, name: str) -> None:
        self.tokens.append((self._at(), "text", ""))

    def handle_charref(self, name: str) -> None:
        self.tokens.append((self._at(), "text", ""))

    def handle_comment(self, data: str) -> None:
        self.tokens.append((self._at(), "other", ""))

    def handle_decl(self, decl: str) -> None:
        self.tokens.append((self._at(), "other", ""))

    def handle_pi(self, data: str) -> None:
        self.tokens.append((self._at(), "other", ""))

    def unknown_decl(self, data: str) -> None:
        self.tokens.append((self._at(), "other", ""))


def blocks(text: str) -> list[str | Run]:
    scanner = _Scanner(text)
    scanner.feed(text)
    scanner.close()
    offsets = [offset for offset, _, _ in scanner.tokens] + [len(text)]
    out: list[str | Run] = [text[:offsets[0]]]
    run: list[Inline] = []
    verbatim: list[str] = []  # the open VERBATIM elements, innermost last
    inline_start = -1  # where a VERBATIM element inside a sentence began (it becomes one atom)

    def end_run() -> None:
        if run:
            out.append(tuple(run))
            run.clear()

    for index, (offset, kind, tag) in enumerate(scanner.tokens):
        source = text[offset:offsets[index + 1]]
        if verbatim:
            if kind == "end" and tag in verbatim:
                while verbatim and verbatim.pop() != tag:
                    pass
            elif kind == "start" and tag in VERBATIM:
                verbatim.append(tag)
            if not verbatim and inline_start >= 0:
                run.append(Atom(text[inline_start:offsets[index + 1]]))
                inline_start = -1
            elif inline_start < 0:
                out.append(source)
            continue
        if kind == "start" and tag in VERBATIM:
            verbatim.append(tag)
            if tag in ("code", "kbd", "samp", "var") and run:
                inline_start = offset
            else:
                end_run()
                out.append(source)
        elif kind == "text":
            run.append(Text(source))
        elif tag in INLINE and kind == "start":
            run.append(Open(source))
        elif tag in INLINE and kind == "end":
            run.append(Close(source))
        elif tag in INLINE and kind == "void":
            run.append(Atom(source))
        else:
            end_run()
            out.append(source)
    if inline_start >= 0:  # an unclosed inline <code> runs to the end: keep it as it is
        end_run()
        out.append(text[inline_start:])
    end_run()
    return out
