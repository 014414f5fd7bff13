"""Markdown → blocks: markdown-it-py finds the prose (paragraphs, headings, table cells) by its source map;
everything else (code, HTML blocks, front matter, markers, blank lines) is kept byte for byte."""

from __future__ import annotations

import re
from functools import lru_cache

from markdown_it import MarkdownIt

from .parts import Atom, Close, Inline, Open, Run, Text
from .segment import lines

# What a line of a paragraph starts with: indentation, blockquote markers, a list marker, a task box.
_CONTAINER = re.compile(r"^[ \t]*(?:>[ \t]?)*[ \t]*(?:(?:[-+*]|\d{1,9}[.)])(?:[ \t]+|$))?(?:\[[ xX]\][ \t]+)?")
_ATX = re.compile(r"^[ \t]*(?:>[ \t]?)*[ \t]*(?:(?:[-+*]|\d{1,9}[.)])[ \t]+)?#{1,6}(?:[ \t]+|$)")
_ATX_CLOSE = re.compile(r"[ \t]+#+[ \t]*$|[ \t]+$")
_FRONT_MATTER = re.compile(r"\A(?:---|\+\+\+)[ \t]*\r?\n.*?^(?:---|\+\+\+|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL | re.M)
_CELL = re.compile(r"((?:\\.|`[^`]*`|[^|\\`])+)")

# Inline markup that stays as it is: code spans, autolinks, raw tags, images, bare URLs; a link's text is translated
# between its `[` and its `](destination)`.
_INLINE = re.compile(
    r"(?P<code>(?P<ticks>`+).+?(?P=ticks))"
    r"|(?P<autolink><(?:https?|ftp|mailto):[^>\s]*>)"
    r"|(?P<tag></?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>|<!--.*?-->)"
    r"|(?P<image>!\[[^\]\n]*\](?:\([^)\s]*(?:\s+\"[^\"]*\")?\)|\[[^\]\n]*\]))"
    r"|(?P<link>\[(?P<label>[^\]\n]+)\](?P<target>\([^)\s]*(?:\s+\"[^\"]*\")?\)|\[[^\]\n]*\]))"
    r"|(?P<url>(?:https?|ftp)://[^\s<>()\[\]]*[^\s<>()\[\].,;:!?'\"])",
    re.DOTALL,
)


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table").disable("inline")  # block structure only: inline is ours


def inline(text: str) -> list[Inline]:
    """One line's prose with its inline markup marked as atoms and spans."""
    items: list[Inline] = []
    position = 0
    for match in _INLINE.finditer(text):
        if match.start() > position:
            items.append(Text(text[position:match.start()]))
        if match.group("link"):
            items.append(Open("["))
            items.extend(inline(match.group("label")))
            items.append(Close("]" + match.group("target")))
        else:
            items.append(Atom(match.group()))
        position = match.end()
    if position < len(text):
        items.append(Text(text[position:]))
    return items


def _table_row(line: str) -> list[str | Run]:
    blocks: list[str | Run] = []
    position = 0
    for match in _CELL.finditer(line):
        cell = match.group()
        lead = len(cell) - len(cell.lstrip())
        body = cell.strip()
        if not body:
            continue
        blocks.append(line[position:match.start() + lead])
        blocks.append(tuple(inline(body)))
        position = match.start() + lead + len(body)
    blocks.append(line[position:])
    return blocks


def _prose_lines(source: str) -> dict[int, str]:
    """Line number → how the line is prose: "paragraph", "heading" or "table"."""
    kinds: dict[int, str] = {}
    block = "paragraph"
    for token in _parser().parse(source):
        if token.type == "heading_open":
            block = "heading"
        elif token.type in ("tr_open", "table_open"):
            block = "table"
        elif token.type == "paragraph_open":
            block = "paragraph"
        elif token.type == "inline" and token.map:
            for line in range(*token.map):
                kinds.setdefault(line, block)
    return kinds


def blocks(text: str) -> list[str | Run]:
    """The document as kept stretches and prose runs; a line break inside a paragraph, with nothing to keep at the
    start of the next line, stays inside the run (the sentence goes on)."""
    front = _FRONT_MATTER.match(text)
    head = front.group() if front else ""
    body = text[len(head):]
    kinds = _prose_lines(body)
    out: list[str | Run] = [head]
    run: list[Inline] = []

    def end_run() -> None:
        if run:
            out.append(tuple(run))
            run.clear()

    for number, line in enumerate(lines(body)):
        kind = kinds.get(number)
        content = line.rstrip("\r\n")
        ending = line[len(content):]
        if kind is None or not content.strip():
            end_run()
            out.append(line)
            continue
        if kind == "table":
            end_run()
            out.extend([*_table_row(content), ending])
            continue
        marker = (_ATX if kind == "heading" else _CONTAINER).match(content)
        prefix = marker.group() if marker else ""
        if prefix.strip() or (prefix and not run):
            end_run()
            out.append(prefix)
        elif prefix:
            run.append(Text(prefix))
        rest = content[len(prefix):]
        closing = _ATX_CLOSE.search(rest) if kind == "heading" else None
        tail = closing.group() if closing else ""
        run.extend(inline(rest[:len(rest) - len(tail)]))
        if tail or kind == "heading":
            end_run()
            out.append(tail)
        if ending and kinds.get(number + 1) == kind == "paragraph":
            run.append(Text(ending))
        else:
            end_run()
            out.append(ending)
    end_run()
    return out
