"""Runs of inline content → sentences (sentencex) → segments packed up to a token budget; plain text's paragraphs."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable

from sentencex import segment as split_sentences

from .parts import PLACEHOLDER, Close, Open, Part, Run, Segment, Span, Text

Measure = Callable[[str], int]

_EDGE_SPACE = re.compile(r"^(\s*)(.*?)(\s*)$", re.DOTALL)
_LETTER = re.compile(r"[^\W\d_]")
# Thai and Lao write no sentence punctuation: a space ends a sentence (and packing joins short ones again);
# Tibetan ends one with a shad and a space, Khmer with ។.
_EXTRA_BREAK = re.compile(r"(?<=[\u0e00-\u0eff]) +(?=[\u0e00-\u0eff])|(?<=[།༎] )|(?<=[។៕])\s*")
_WORD_BREAK = re.compile(r"(?<=\s)(?=\S)|(?<=[,，、;；:：])")


def estimate_tokens(text: str) -> int:
    """A tokenizer-free guess (a token per 4 characters of alphabetic text, per character elsewhere)."""
    ascii_chars = sum(1 for ch in text if ch < "\u0250")
    return (ascii_chars + 3) // 4 + (len(text) - ascii_chars)


def has_words(text: str) -> bool:
    return _LETTER.search(text) is not None


def sentences(text: str, language: str) -> list[str]:
    """text cut after each sentence (trailing spaces stay with it), so that the pieces join back to text."""
    pieces: list[str] = []
    for sentence in split_sentences(language, text):
        start = 0
        for match in _EXTRA_BREAK.finditer(sentence):
            if match.end() > start and match.end() < len(sentence):
                pieces.append(sentence[start:match.end()])
                start = match.end()
        pieces.append(sentence[start:])
    if "".join(pieces) != text:  # the splitter normalised something: never lose a character
        return [text]
    return [piece for piece in pieces if piece]


def lines(text: str) -> list[str]:
    """text cut after each \n (str.splitlines would also cut at form feeds and other separators)."""
    return [line for line in re.split(r"(?<=\n)", text) if line]


def paragraphs(text: str) -> list[str | Run]:
    """Plain text: every line is a block of its own; line breaks and blank lines are kept."""
    blocks: list[str | Run] = []
    for line in lines(text):
        body = line.rstrip("\r\n")
        blocks.append((Text(body),) if body.strip() else body)
        blocks.append(line[len(body):])
    return blocks


def _placeholders(run: Run) -> tuple[str, list[Span], list[int]]:
    """The run as one string with <sN> placeholders, its spans, and the span depth after each character."""
    out: list[str] = []
    spans: list[Span] = []
    depths: list[int] = []
    stack: list[int] = []
    opens: dict[int, str] = {}

    def emit(text: str) -> None:
        out.append(text)
        depths.extend([len(stack)] * len(text))

    items = list(run)
    # An open never closed in this run (markup that spans blocks) is kept as an atom where it stands.
    closable: set[int] = set()
    pending: list[int] = []
    for index, item in enumerate(items):
        if isinstance(item, Open):
            pending.append(index)
        elif isinstance(item, Close) and pending:
            closable.add(pending.pop())
    for index, item in enumerate(items):
        if isinstance(item, Text):
            for piece in re.split(f"({PLACEHOLDER.pattern})", item.text):
                if PLACEHOLDER.fullmatch(piece):  # the document's own "<s1>" is markup to keep, not ours
                    spans.append(Span(piece, ""))
                    emit(f"<s{len(spans)}></s{len(spans)}>")
                elif piece:
                    emit(piece)
        elif isinstance(item, Open) and index in closable:
            spans.append(Span(item.text, ""))
            stack.append(len(spans))
            opens[len(spans)] = item.text
            emit(f"<s{len(spans)}>")
        elif isinstance(item, Close) and stack:
            number = stack.pop()
            spans[number - 1] = Span(opens[number], item.text)
            emit(f"</s{number}>")
        else:  # an atom, an unclosed open or an unmatched close
            spans.append(Span(item.text, ""))
            emit(f"<s{len(spans)}></s{len(spans)}>")
    return "".join(out), spans, depths


def _boundaries(marked: str, depths: list[int], language: str) -> list[int]:
    """Where sentences start in the placeholder string, never inside a span."""
    plain_to_marked: list[int] = []
    plain: list[str] = []
    position = 0
    for match in PLACEHOLDER.finditer(marked):
        for offset in range(position, match.start()):
            plain_to_marked.append(offset)
            plain.append(marked[offset])
        position = match.end()
    for offset in range(position, len(marked)):
        plain_to_marked.append(offset)
        plain.append(marked[offset])
    cuts: list[int] = []
    at = 0
    for sentence in sentences("".join(plain), language)[:-1]:
        at += len(sentence)
        cut = plain_to_marked[at]
        # Opening tags and atoms just before the next sentence's first letter belong to that sentence; a
        # closing tag there ends the previous one.
        tags = list(PLACEHOLDER.finditer(marked, plain_to_marked[at - 1] + 1, cut))
        while tags:
            tag = tags.pop()
            if tag.group(1):
                opening = tags[-1] if tags else None
                if opening is None or opening.group(1) or opening.group(2) != tag.group(2):
                    break
                tag = tags.pop()  # an atom: <sN></sN>
            cut = tag.start()
        if 0 < cut < len(marked) and depths[cut - 1] == 0:
            cuts.append(cut)
    return sorted(set(cuts))


def _split_long(piece: str, max_tokens: int, measure: Measure) -> list[str]:
    """A sentence over the budget, cut at spaces or commas (characters, for scripts without either)."""
    if measure(piece) <= max_tokens:
        return [piece]
    words = [word for word in _WORD_BREAK.split(piece) if word]
    if len(words) == 1:
        size = max(1, len(piece) // max(2, measure(piece) // max_tokens + 1))
        words = [piece[i:i + size] for i in range(0, len(piece), size)]
    return _pack(words, max_tokens, measure)


def _pack(pieces: Iterable[str], max_tokens: int, measure: Measure) -> list[str]:
    packed: list[str] = []
    current, current_tokens = "", 0
    for piece in pieces:
        tokens = measure(piece)
        if current and current_tokens + tokens > max_tokens:
            packed.append(current)
            current, current_tokens = "", 0
        current += piece
        current_tokens += tokens
    if current:
        packed.append(current)
    return packed


def _balanced(text: str) -> bool:
    depth = 0
    for match in PLACEHOLDER.finditer(text):
        depth += -1 if match.group(1) else 1
        if depth < 0:
            return False
    return depth == 0


def split_run(run: Run, language: str, max_tokens: int, measure: Measure) -> list[Part]:
    """One block's inline content as kept spaces and packed segments (whose sources join back to the run)."""
    marked, spans, depths = _placeholders(run)
    cuts = [0, *_boundaries(marked, depths, language), len(marked)]
    pieces: list[str] = []
    for start, end in itertools.pairwise(cuts):
        sentence = marked[start:end]
        pieces.extend(_split_long(sentence, max_tokens, measure) if _balanced(sentence) else [sentence])
    parts: list[Part] = []
    for chunk in _pack(pieces, max_tokens, measure):
        lead, body, trail = _EDGE_SPACE.match(chunk).groups()  # type: ignore[union-attr]
        if lead:
            parts.append(lead)
        if body:
            parts.append(_segment(body, spans))
        if trail:
            parts.append(trail)
    return parts


def _segment(body: str, spans: list[Span]) -> Part:
    """Renumber the placeholders of this piece from 1; a piece without words is kept, not translated."""
    used: dict[int, int] = {}

    def renumber(match: re.Match[str]) -> str:
        number = used.setdefault(int(match.group(2)), len(used) + 1)
        return f"<{match.group(1)}s{number}>"

    text = PLACEHOLDER.sub(renumber, body)
    segment = Segment(text, tuple(spans[old - 1] for old in used))
    return segment if has_words(segment.plain) else segment.source


def split_blocks(blocks: Iterable[str | Run], language: str, max_tokens: int, measure: Measure) -> list[Part]:
    parts: list[Part] = []
    for block in blocks:
        if isinstance(block, str):
            parts.append(block)
        else:
            parts.extend(split_run(block, language, max_tokens, measure))
    return _merge_kept(parts)


def _merge_kept(parts: list[Part]) -> list[Part]:
    merged: list[Part] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        elif part != "":
            merged.append(part)
    return merged
