"""The translation service: turns a request into a running session (cache, then scheduler, then engine)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from . import errors
from .cache import PhraseCache
from .chat import ChatRequest, Request, chat_cache_key, options_for, prompt_for
from .engine import ChatPrompt, Engine, GenerationOptions
from .engine.stops import finish_reason, with_stops
from .errors import HmtError
from .ratelimit import RateLimiter
from .request import TranslationRequest
from .scheduler import Scheduler, Ticket
from .session import SessionStore, TranslationSession

log = logging.getLogger(__name__)


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 1)


class Observer(Protocol):
    """What the translator reports as it works (metrics listen; the core knows no metrics library)."""

    def first_token(self, seconds: float) -> None: ...

    def token_gap(self, seconds: float) -> None: ...

    def finished(self, state: str, tokens: int) -> None: ...


class NullObserver:
    def first_token(self, seconds: float) -> None: ...

    def token_gap(self, seconds: float) -> None: ...

    def finished(self, state: str, tokens: int) -> None: ...


@dataclass(frozen=True)
class Work:
    """What a session's task generates, worked out when the request was taken."""

    prompt: ChatPrompt
    options: GenerationOptions
    key: Hashable  # in the phrase cache
    prompt_tokens: int


class Translator:
    def __init__(self, engine: Engine, *, options: GenerationOptions, scheduler: Scheduler, cache: PhraseCache,
                 store: SessionStore, max_chars: int, max_input_tokens: int,
                 disconnect_grace_s: float = 20.0, limiter: RateLimiter | None = None,
                 observer: Observer | None = None) -> None:
        self.engine = engine
        self.options = options
        self.scheduler = scheduler
        self.cache = cache
        self.store = store
        self.max_chars = max_chars
        self.max_input_tokens = max_input_tokens
        self.disconnect_grace_s = disconnect_grace_s
        self.limiter = limiter
        self.observer: Observer = observer or NullObserver()
        self.accepting = True
        self._orphan_timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def parse(self, payload: Any) -> TranslationRequest:
        return TranslationRequest.parse(payload, max_chars=self.max_chars)

    def find(self, session_id: str, owner: str | None = None) -> TranslationSession | None:
        """The session with this id, if it exists and belongs to owner (when sessions have owners)."""
        session = self.store.get(session_id)
        if session is None or (session.owner is not None and session.owner != owner):
            return None
        return session

    def submit(self, request: Request, *, principal: str = "anonymous",
               owner: str | None = None) -> TranslationSession:
        """Start a session for request; raises HmtError (shutting_down, too_long, rate_limited, overloaded)
        before any session exists. Input that is refused does not count against the caller's rate."""
        if not self.accepting:
            raise HmtError(errors.SHUTTING_DOWN, "the server is shutting down", retry_after=5)
        options = options_for(request, self.options)
        if isinstance(request, ChatRequest):
            if request.chars > self.max_chars:
                raise HmtError(errors.TOO_LONG, f"the messages have {request.chars} characters; "
                                                f"the limit is {self.max_chars}")
            key = chat_cache_key(self.engine.model_id, request, options)
        else:
            key = self.cache.key(self.engine.model_id, request.source, request.target, request.text, options)
        cached = self.cache.lookup(key)
        if cached is not None:
            self._count(principal)
            session = TranslationSession(request, owner=owner)
            self.store.add(session)
            session.append("delta", text=cached.text)
            session.append("done", text=cached.text, cached=True, tokens=0, ttft_ms=0.0, elapsed_ms=0.0,
                           finish_reason=cached.finish_reason, prompt_tokens=cached.prompt_tokens)
            return session
        prompt = prompt_for(request)
        tokens = self.engine.prompt_tokens(prompt)
        if tokens > self.max_input_tokens:
            raise HmtError(errors.TOO_LONG,
                           f"the text is {tokens} tokens with the prompt; the limit is {self.max_input_tokens}")
        self._count(principal)
        session = TranslationSession(request, owner=owner)
        ticket = self.scheduler.admit(lambda position: session.append("queued", position=position))
        self.store.add(session)
        task = asyncio.create_task(self._run(session, Work(prompt, options, key, tokens), ticket),
                                   name=f"session-{session.id}")
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._settle(done, session, ticket))
        session.set_canceller(lambda: self._cancel(session, ticket, task))
        session.on_change(self._watch_readers)
        self._watch_readers(session)
        return session

    def _count(self, principal: str) -> None:
        if self.limiter is not None:
            self.limiter.hit(principal)

    def _watch_readers(self, session: TranslationSession) -> None:
        """Cancel a session nobody reads any more, once the grace period has passed without a reader."""
        timer = self._orphan_timers.pop(session.id, None)
        if timer is not None:
            timer.cancel()
        if session.readers == 0 and not session.finished:
            self._orphan_timers[session.id] = asyncio.get_running_loop().call_later(
                self.disconnect_grace_s, self._orphaned, session)

    def _orphaned(self, session: TranslationSession) -> None:
        self._orphan_timers.pop(session.id, None)
        if session.readers == 0 and session.cancel():
            log.info("session %s cancelled: no reader for %.0f s", session.id, self.disconnect_grace_s)

    @staticmethod
    def _cancel(session: TranslationSession, ticket: Ticket, task: asyncio.Task[None]) -> None:
        if not ticket.granted.done():
            # Still in line: leave it now, so the sessions behind move up at once.
            ticket.release()
            session.append("cancelled")
        task.cancel()

    def _settle(self, task: asyncio.Task[None], session: TranslationSession, ticket: Ticket) -> None:
        # A task cancelled before its first step never runs its own clean-up: free the slot and end the log here.
        self._tasks.discard(task)
        ticket.release()
        if not session.finished:
            session.append("cancelled")

    async def translate(self, request: Request, *, principal: str = "anonymous",
                        owner: str | None = None) -> TranslationSession:
        """Submit and wait for the terminal event (the one-shot API)."""
        session = self.submit(request, principal=principal, owner=owner)
        async for _ in session.events(after=session.last_seq):
            pass
        return session

    async def _run(self, session: TranslationSession, work: Work, ticket: Ticket) -> None:
        try:
            await ticket.wait()
        except asyncio.CancelledError:
            if not session.finished:
                session.append("cancelled")
            return
        try:
            await self._generate(session, work)
        finally:
            ticket.release()

    async def _generate(self, session: TranslationSession, work: Work) -> None:
        session.append("started")
        generation = with_stops(self.engine.generate(work.prompt, work.options), work.options)
        ttft: float | None = None
        last = time.monotonic()
        try:
            async for text in generation:
                now = time.monotonic()
                if ttft is None:
                    ttft = _ms(session.created)
                    self.observer.first_token(now - session.created)
                else:
                    self.observer.token_gap(now - last)
                last = now
                session.append("delta", text=text)
        except asyncio.CancelledError:
            generation.cancel()
            await generation.wait_closed()
            session.append("cancelled")
            self.observer.finished("cancelled", generation.tokens)
            return
        except HmtError as exc:  # the engine's own verdict, e.g. engine_unavailable
            log.warning("generation failed for session %s: %s: %s", session.id, exc.code, exc.message)
            session.append("error", code=exc.code, message=exc.message)
            self.observer.finished("failed", generation.tokens)
            return
        except Exception as exc:
            log.exception("generation failed for session %s", session.id)
            session.append("error", code=errors.MODEL_ERROR.code, message=f"generation failed: {exc}")
            self.observer.finished("failed", generation.tokens)
            return
        text = session.text
        reason = finish_reason(generation, work.options)
        session.append("done", text=text, cached=False, tokens=generation.tokens, ttft_ms=ttft or 0.0,
                       elapsed_ms=_ms(session.created), finish_reason=reason, prompt_tokens=work.prompt_tokens)
        self.observer.finished("done", generation.tokens)
        self.cache.put(work.key, text, finish_reason=reason, prompt_tokens=work.prompt_tokens)

    async def drain(self, grace_s: float) -> None:
        """Stop taking new translations, let the running and queued ones finish for up to grace_s, then cancel
        the rest; every session ends with its terminal event."""
        self.accepting = False
        if self._tasks:
            log.info("shutting down: waiting up to %.0f s for %d translations", grace_s, len(self._tasks))
            await asyncio.wait(list(self._tasks), timeout=grace_s)
        await self.close()

    async def close(self) -> None:
        """Cancel every session still queued or running and wait for their terminal events."""
        for timer in self._orphan_timers.values():
            timer.cancel()
        self._orphan_timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
