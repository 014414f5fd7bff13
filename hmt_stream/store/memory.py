"""MemorySessionStore: the sessions of this process, each evicted some time after its terminal event."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..session import TranslationSession


class MemorySessionStore:
    """Sessions of this process; a finished one is evicted `retention_s` after its terminal event."""

    available = True

    def __init__(self, retention_s: float) -> None:
        self.retention_s = retention_s
        self._sessions: dict[str, TranslationSession] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def add(self, session: TranslationSession) -> None:
        self._sessions[session.id] = session
        session.on_change(self._changed)
        self._changed(session)

    def get(self, session_id: str) -> TranslationSession | None:
        return self._sessions.get(session_id)

    async def fetch(self, session_id: str) -> TranslationSession | None:
        return self._sessions.get(session_id)

    async def written(self, session: TranslationSession) -> None:
        pass

    def all(self) -> list[TranslationSession]:
        return list(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)

    def _changed(self, session: TranslationSession) -> None:
        if session.finished and session.id not in self._timers and session.id in self._sessions:
            loop = asyncio.get_running_loop()
            self._timers[session.id] = loop.call_later(self.retention_s, self._evict, session.id)

    def _evict(self, session_id: str) -> None:
        self._timers.pop(session_id, None)
        self._sessions.pop(session_id, None)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._sessions.clear()
