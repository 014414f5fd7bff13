"""TranslationSession: an append-only log of events that many readers replay and follow; and their store."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from .chat import Request

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
TERMINAL_EVENTS = {"done": DONE, "error": FAILED, "cancelled": CANCELLED}


@dataclass(frozen=True)
class Event:
    session: str
    seq: int
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS

    def as_dict(self) -> dict[str, Any]:
        return {"session": self.session, "seq": self.seq, "type": self.type, **self.data}

    @cached_property
    def json(self) -> str:
        # Encoded once, however many readers send it.
        return json.dumps(self.as_dict(), ensure_ascii=False, separators=(",", ":"))


class SessionClosed(Exception):
    """An event was appended after the terminal one."""


class TranslationSession:
    def __init__(self, request: Request, *, session_id: str | None = None,
                 owner: str | None = None) -> None:
        self.id = session_id or secrets.token_urlsafe(18)
        self.request = request
        self.owner = owner
        self.state = QUEUED
        self.log: list[Event] = []
        self.created = time.monotonic()
        self.finished_at: float | None = None
        self.readers = 0
        self._parts: list[str] = []
        self._changed = asyncio.Event()
        self._canceller: Callable[[], None] | None = None
        self._listeners: list[Callable[[TranslationSession], None]] = []

    # -- what the outside sees -------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The translation so far: the concatenation of every delta."""
        return "".join(self._parts)

    @property
    def last_seq(self) -> int:
        return len(self.log)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def snapshot(self) -> dict[str, Any]:
        return {"session": self.id, "state": self.state, "text": self.text, "seq": self.last_seq}

    async def events(self, after: int = 0) -> AsyncIterator[Event]:
        """Replay the log after seq `after`, then follow it live until the terminal event."""
        position = max(0, after)
        self.readers += 1
        self._notify()
        try:
            while True:
                while position < len(self.log):
                    event = self.log[position]
                    position += 1
                    yield event
                if self.finished:
                    return
                await self._changed.wait()
        finally:
            self.readers -= 1
            self._notify()

    async def next_batch(self, after: int, timeout: float) -> list[Event]:
        """The events after seq `after`, waiting up to `timeout` seconds for the first (long-poll)."""
        position = max(0, after)
        if position >= len(self.log) and not self.finished and timeout > 0:
            self.readers += 1
            self._notify()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except TimeoutError:
                pass
            finally:
                self.readers -= 1
                self._notify()
        elif not self.finished:
            # A poll that finds events waiting is a reader too: without this, a long session read by long-poll
            # (a document streaming for minutes) would look unread and be cancelled after the grace period.
            self._notify()
        return self.log[position:]

    def cancel(self) -> bool:
        """Ask the session to stop; the `cancelled` event follows once generation has really stopped."""
        if self.finished:
            return False
        if self._canceller is None:
            self.append("cancelled")
        else:
            self._canceller()
        return True

    def on_change(self, listener: Callable[[TranslationSession], None]) -> None:
        """Call listener whenever the session finishes or its number of readers changes."""
        self._listeners.append(listener)

    # -- what the translator writes --------------------------------------------------------------------------

    def set_canceller(self, canceller: Callable[[], None] | None) -> None:
        self._canceller = canceller

    def append(self, type: str, **data: Any) -> Event:
        if self.finished:
            raise SessionClosed(f"session {self.id} has ended; cannot append {type!r}")
        event = Event(self.id, len(self.log) + 1, type, data)
        self.log.append(event)
        if type == "started":
            self.state = RUNNING
        elif type == "delta":
            self._parts.append(data["text"])
        elif type in TERMINAL_EVENTS:
            self.state = TERMINAL_EVENTS[type]
            self.finished_at = time.monotonic()
            self._canceller = None
        # Wake every reader waiting on this log, then arm a fresh event for the next append.
        self._changed.set()
        self._changed = asyncio.Event()
        if event.terminal:
            self._notify()
        return event

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener(self)


class SessionStore(Protocol):
    """Where sessions are found by id (in memory now; shared through Redis later)."""

    def add(self, session: TranslationSession) -> None: ...

    def get(self, session_id: str) -> TranslationSession | None: ...

    def __len__(self) -> int: ...

    def all(self) -> list[TranslationSession]: ...


class MemorySessionStore:
    """Sessions of this process; a finished one is evicted `retention_s` after its terminal event."""

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
