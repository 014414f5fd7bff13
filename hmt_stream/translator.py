"""The translation service: turns a request into a running session (cache, then scheduler, then engine)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any, Protocol

from . import errors
from .cache import PhraseCache
from .engine import ChatPrompt, Engine, GenerationOptions
from .errors import HmtError
from .prompts import build_prompt
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


class Translator:
    def __init__(self, engine: Engine, *, options: GenerationOptions, scheduler: Scheduler, cache: PhraseCache,
                 store: SessionStore, max_chars: int, max_input_tokens: int,
                 disconnect_grace_s: float = 20.0, limiter: RateLimiter | None = None,
                 refusals: RateLimiter | None = None, observer: Observer | None = None) -> None:
        self.engine = engine
        self.options = options
        self.scheduler = scheduler
        self.cache = cache
        self.store = store
        self.max_chars = max_chars
        self.max_input_tokens = max_input_tokens
        self.disconnect_grace_s = disconnect_grace_s
        self.limiter = limiter
        self.refusals = refusals  # refused requests per principal: a client that keeps sending them is cut off
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

    def submit(self, request: TranslationRequest, *, principal: str = "anonymous",
               owner: str | None = None) -> TranslationSession:
        """Start a session for request; raises HmtError (shutting_down, too_long, rate_limited, overloaded)
        before any session exists. Requests that are refused do not count against the caller's rate: only a
        translation served (or answered from the cache) does. The cheap checks come before the tokenizer."""
        if not self.accepting:
            raise HmtError(errors.SHUTTING_DOWN, "the server is shutting down", retry_after=5)
        for limiter in (self.limiter, self.refusals):
            if limiter is not None:
                limiter.check(principal)
        key = self.cache.key(self.engine.model_id, request.source, request.target, request.text, self.options,
                             self.cache.scope(owner))
        cached = self.cache.get(key)
        if cached is not None:
            self._count(principal)
            session = TranslationSession(request, owner=owner)
            self.store.add(session)
            session.append("delta", text=cached)
            session.append("done", text=cached, cached=True, tokens=0, ttft_ms=0.0, elapsed_ms=0.0)
            return session
        prompt = ChatPrompt.user(build_prompt(request.text, request.source, request.target))
        tokens = self.engine.prompt_tokens(prompt)
        if tokens > self.max_input_tokens:
            if self.refusals is not None:
                self.refusals.count(principal)
            raise HmtError(errors.TOO_LONG,
                           f"the text is {tokens} tokens with the prompt; the limit is {self.max_input_tokens}")
        session = TranslationSession(request, owner=owner)
        ticket = self.scheduler.admit(lambda position: session.append("queued", position=position), owner=principal)
        self._count(principal)
        self.store.add(session)
        task = asyncio.create_task(self._run(session, prompt, ticket, key), name=f"session-{session.id}")
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._settle(done, session, ticket))
        session.set_canceller(lambda: self._cancel(session, ticket, task))
        session.on_change(self._watch_readers)
        self._watch_readers(session)
        return session

    def _count(self, principal: str) -> None:
        if self.limiter is not None:
            self.limiter.count(principal)

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

    async def translate(self, request: TranslationRequest, *, principal: str = "anonymous",
                        owner: str | None = None) -> TranslationSession:
        """Submit and wait for the terminal event (the one-shot API)."""
        session = self.submit(request, principal=principal, owner=owner)
        async for _ in session.events(after=session.last_seq):
            pass
        return session

    async def _run(self, session: TranslationSession, prompt: ChatPrompt, ticket: Ticket, key: Any) -> None:
        try:
            await ticket.wait()
        except asyncio.CancelledError:
            if not session.finished:
                session.append("cancelled")
            return
        try:
            await self._generate(session, prompt, key)
        finally:
            ticket.release()

    async def _generate(self, session: TranslationSession, prompt: ChatPrompt, key: Any) -> None:
        session.append("started")
        generation = self.engine.generate(prompt, self.options)
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
        except Exception:
            # The exception's text may hold paths, memory figures or other users' input: it goes to the log only.
            error_id = secrets.token_hex(4)
            log.exception("generation failed for session %s (error id %s)", session.id, error_id)
            session.append("error", code=errors.MODEL_ERROR.code,
                           message=f"the model failed on this translation (error id {error_id}, in the server log)")
            self.observer.finished("failed", generation.tokens)
            return
        text = session.text
        session.append("done", text=text, cached=False, tokens=generation.tokens, ttft_ms=ttft or 0.0,
                       elapsed_ms=_ms(session.created))
        self.observer.finished("done", generation.tokens)
        self.cache.put(key, text)

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
