"""Token ids to text deltas that never split a character: no partial UTF-8, no lone combining mark."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import regex

REPLACEMENT = "\ufffd"
_GRAPHEME = regex.compile(r"\X")


class IncrementalDecoder:
    """Decodes a growing list of token ids the way vLLM does (a window of prefix and new ids), then holds back
    the last grapheme cluster until the next one starts, since a later token may still extend it (a combining
    mark, a skin tone, a zero-width joiner)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0
        self._pending = ""

    def _decode(self, ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=True))

    def push(self, ids: Sequence[int]) -> str:
        self._ids.extend(ids)
        before = self._decode(self._ids[self._prefix:self._read])
        after = self._decode(self._ids[self._prefix:])
        # A trailing U+FFFD is an incomplete UTF-8 sequence: wait for the bytes that complete it.
        if after.endswith(REPLACEMENT) or len(after) <= len(before):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        # What is left of U+FFFD inside is bytes that can never form a character (only a random model makes them).
        self._pending += after[len(before):].replace(REPLACEMENT, "")
        clusters = _GRAPHEME.findall(self._pending)
        if len(clusters) < 2:
            return ""
        keep = len(clusters[-1])
        out, self._pending = self._pending[:-keep], self._pending[-keep:]
        return out

    def flush(self) -> str:
        tail = self._decode(self._ids[self._prefix:])[len(self._decode(self._ids[self._prefix:self._read])):]
        out = self._pending + tail.replace(REPLACEMENT, "")
        self._pending = ""
        self._prefix = self._read = len(self._ids)
        return out
