"""The phrase cache: finished translations kept by cachetools' TTL + LRU policy."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Hashable
from typing import NamedTuple, Protocol

from cachetools import TTLCache

_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")


def normalise(text: str) -> str:
    """The cache's view of a text: NFC, trimmed, runs of spaces collapsed (line breaks are kept)."""
    return _HORIZONTAL_SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


class Entry(NamedTuple):
    """A finished text, and how it ended (a hit reports the same finish_reason as the generation did)."""

    text: str
    finish_reason: str = "stop"


class Tier(Protocol):
    """Entries shared with other replicas (Redis), behind this process's LRU."""

    async def fetch(self, keys: list[Hashable]) -> dict[Hashable, Entry]: ...

    def put(self, key: Hashable, entry: Entry) -> None: ...


class PhraseCache:
    def __init__(self, max_entries: int, ttl_s: float, *, enabled: bool = True, shared: bool = False,
                 tier: Tier | None = None) -> None:
        self.enabled = enabled
        self.shared = shared
        self.tier = tier
        self._entries: TTLCache[Hashable, Entry] = TTLCache(maxsize=max_entries, ttl=ttl_s)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model: str, source: str, target: str, text: str, options: Hashable, scope: str | None = None) -> Hashable:
        """scope: whose entry this is (None: everyone's). A hit is seen by whoever shares the scope."""
        return (model, source, target, normalise(text), options, scope)

    def scope(self, owner: str | None) -> str | None:
        """Entries belong to their owner (an API key or token subject) unless the cache is shared."""
        return None if self.shared else owner

    def get(self, key: Hashable) -> str | None:
        entry = self.lookup(key)
        return None if entry is None else entry.text

    def lookup(self, key: Hashable) -> Entry | None:
        if not self.enabled:
            return None
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def peek(self, key: Hashable) -> Entry | None:
        """The entry, without counting a hit or a miss (a dry run)."""
        return self._entries.get(key) if self.enabled else None

    def put(self, key: Hashable, text: str, *, finish_reason: str = "stop") -> None:
        if self.enabled:
            self._entries[key] = entry = Entry(text, finish_reason)
            if self.tier is not None:
                self.tier.put(key, entry)

    async def fill(self, keys: list[Hashable]) -> None:
        """Copy what the shared tier holds for keys, and this process lacks, into the LRU (before lookups)."""
        if self.tier is None or not self.enabled:
            return
        missing = [key for key in keys if key not in self._entries]
        if missing:
            self._entries.update(await self.tier.fetch(missing))

    def __len__(self) -> int:
        return len(self._entries)
