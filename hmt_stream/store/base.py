"""The SessionStore protocol: what the translator and the transports ask of any store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..session import TranslationSession


class SessionStore(Protocol):
    """Where sessions are found by id: this process's memory, or shared through Redis."""

    @property
    def available(self) -> bool:
        """False while new sessions cannot be stored (Redis down): they are refused with store_unavailable."""

    def add(self, session: TranslationSession) -> None: ...

    def get(self, session_id: str) -> TranslationSession | None:
        """A session this process holds (generating it, or following it for a reader)."""

    async def fetch(self, session_id: str) -> TranslationSession | None:
        """get(), or a session another replica generates, followed from the shared store."""

    async def written(self, session: TranslationSession) -> None:
        """Wait until every replica can find session (before its id is handed out)."""

    def __len__(self) -> int: ...

    def all(self) -> list[TranslationSession]: ...
