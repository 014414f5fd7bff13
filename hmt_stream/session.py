"""TranslationSession: an append-only log of events that many readers replay and follow; and their store."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

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
        # Readers see the first `_visible` events: all of them, or with a shared store only those it holds
        # durably (a reader never sees what another replica could not give it after this one's death).
        self._visible = 0
        self._held = False
        self._appended: Callable[[Event], None] | None = None
        self._elsewhere = False

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

    @property
    def _ended(self) -> bool:
        """Readers have been shown the terminal event."""
        return self.finished and self._visible >= len(self.log)

    def snapshot(self) -> dict[str, Any]:
        return {"session": self.id, "state": self.state, "text": self.text, "seq": self.last_seq}

    async def events(self, after: int = 0) -> AsyncIterator[Event]:
        """Replay the log after seq `after`, then follow it live until the terminal event."""
        position = max(0, after)
        self.readers += 1
        self._notify()
        try:
            while True:
                while position < self._visible:
                    event = self.log[position]
                    position += 1
                    yield event
                if self._ended:
                    return
                await self._changed.wait()
        finally:
            self.readers -= 1
            self._notify()

    async def next_batch(self, after: int, timeout: float) -> list[Event]:
        """The events after seq `after`, waiting up to `timeout` seconds for the first (long-poll)."""
        position = max(0, after)
        if position >= self._visible and not self._ended and timeout > 0:
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
        return self.log[position:self._visible]

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

    @property
    def visible(self) -> int:
        """The last seq readers may see."""
        return self._visible

    def hold_back(self, on_append: Callable[[Event], None], *, stored: int = 0) -> None:
        """Hand every event after seq `stored` to on_append (a shared store's writer), and show readers only the
        events published() since: a shared store publishes each once it holds it."""
        self._held = True
        self._visible = stored
        self._appended = on_append
        for event in self.log[stored:]:
            on_append(event)

    def published(self, seq: int) -> None:
        """Readers may see the events up to seq."""
        if seq > self._visible:
            self._visible = min(seq, len(self.log))
            self._wake()

    def read_elsewhere(self, reading: bool) -> None:
        """Readers on other replicas (a shared store) count as one more: the session is not abandoned."""
        if reading != self._elsewhere:
            self._elsewhere = reading
            self.readers += 1 if reading else -1
            self._notify()

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
        if self._appended is not None:
            self._appended(event)
        if not self._held:
            self._visible = len(self.log)
            self._wake()
        if event.terminal:
            self._notify()
        return event

    def _wake(self) -> None:
        # Wake every reader waiting on this log, then arm a fresh event for the next append.
        self._changed.set()
        self._changed = asyncio.Event()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener(self)


# The stores moved to hmt_stream/store/; imported here too, where they always were.
from .store.base import SessionStore  # noqa: E402
from .store.memory import MemorySessionStore  # noqa: E402

__all__ = ["CANCELLED", "DONE", "FAILED", "QUEUED", "RUNNING", "Event", "MemorySessionStore", "SessionClosed",
           "SessionStore", "TranslationSession"]
