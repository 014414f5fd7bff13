"""The translation service: turns a request into a running session (limits, plan and cache, then scheduler, then
engine)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import errors
from .cache import PhraseCache
from .chat import ChatRequest, Request
from .engine import Engine, GenerationOptions
from .errors import HmtError
from .languages import AUTO
from .plan import Plan, Planner
from .prompts import HUNYUAN_MT, Profile
from .ratelimit import RateLimiter
from .request import TranslationRequest
from .resume import Resumed
from .runner import DocumentRun, Observer
from .scheduler import Lane, Scheduler, Ticket
from .session import SessionStore, TranslationSession

log = logging.getLogger(__name__)

__all__ = ["NullObserver", "Observer", "Translator"]

# Longer texts are planned in a worker thread (a 100,000-character document takes a second or so of CPU).
INLINE_PLAN_CHARS = 4000


class NullObserver:
    def first_token(self, seconds: float) -> None: ...

    def token_gap(self, seconds: float) -> None: ...

    def finished(self, state: str, tokens: int, error: str = "") -> None: ...


class Translator:
    def __init__(self, engine: Engine, *, options: GenerationOptions, scheduler: Scheduler, cache: PhraseCache,
                 store: SessionStore, max_chars: int, max_input_tokens: int,
                 disconnect_grace_s: float = 20.0, limiter: RateLimiter | None = None,
                 refusals: RateLimiter | None = None, observer: Observer | None = None,
                 profile: Profile = HUNYUAN_MT, segment_tokens: int = 256) -> None:
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
        self.planner = Planner(engine, profile, cache, segment_tokens=segment_tokens,
                               max_input_tokens=max_input_tokens)

    def parse(self, payload: Any) -> TranslationRequest:
        return TranslationRequest.parse(payload, max_chars=self.max_chars)

    def find(self, session_id: str, owner: str | None = None) -> TranslationSession | None:
        """The session with this id, if it exists and belongs to owner (when sessions have owners)."""
        session = self.store.get(session_id)
        if session is None or (session.owner is not None and session.owner != owner):
            return None
        return session

    async def locate(self, session_id: str, owner: str | None = None) -> TranslationSession | None:
        """find(), also among the sessions other replicas generate (a shared store)."""
        session = await self.store.fetch(session_id)
        if session is None or (session.owner is not None and session.owner != owner):
            return None
        return session

    async def start(self, request: Request, *, principal: str = "anonymous",
                    owner: str | None = None) -> TranslationSession:
        """submit(), with the planning of a long document or prompt or of an unknown source language
        (segmentation, detection, whose models load on first use, token counts) in a worker thread, after the
        cheap checks; rate limits and cache entries in a shared store are awaited here."""
        await self._admit(request, principal)
        if request.chars > INLINE_PLAN_CHARS or (isinstance(request, TranslationRequest) and request.source == AUTO):
            plan = await self._planned(principal, request, owner)
        else:
            with self._counting_refusals(principal):
                plan = self.planner.plan(request, self.options, owner=owner)
        await self.cache.fill([job.key for job in plan.jobs])
        session = self.submit(request, principal=principal, owner=owner, plan=plan, checked=True)
        await self.store.written(session)
        return session

    def submit(self, request: Request, *, principal: str = "anonymous", owner: str | None = None,
               plan: Plan | None = None, checked: bool = False) -> TranslationSession:
        """Start a session for request; raises HmtError (shutting_down, rate_limited, too_long, overloaded)
        before any session exists. In order: the cheap checks (shutting down, the caller's rate in translations
        and characters, its refusal budget), the plan (the tokenizer; input refused there counts against the
        refusal budget), the cache, the scheduler (the line and the caller's fair share), and only then is the
        translation counted against the rate: refusals never are. A document is one translation of its length,
        however many segments it has. Rate limits kept in a shared store are checked by start() only."""
        if not checked:
            self._check(request, principal)
        if plan is None:
            with self._counting_refusals(principal):
                plan = self.planner.plan(request, self.options, owner=owner)
        plan = self.planner.look_up(plan)
        session = TranslationSession(request, owner=owner)
        if not plan.pending:
            self._count(principal, request)
            self.store.add(session)
            self._document(session, plan).replay()
            return session
        lane = self.scheduler.lane(lambda position: session.append("queued", position=position), owner=principal)
        self._count(principal, request)
        self._run(session, plan, lane, lane.admit())
        return session

    async def adopt(self, session: TranslationSession) -> None:
        """Go on with a session whose replica died, as its log stands: the segments written are done, the one
        being written continues from its text, the rest run; a session that had not started waits in line."""
        resumed = Resumed.from_log(session.log)
        try:
            plan = await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.planner.plan(session.request, self.options, owner=session.owner))
            plan = resumed.plan(self.planner.look_up(plan))
            lane = self.scheduler.lane(lambda position: session.append("queued", position=position),
                                       owner=session.owner)
        except HmtError as error:  # this replica's limits are not the dead one's
            session.append("error", code=error.code, message=error.message)
            return
        if not plan.pending:
            lane.close()
            self._document(session, plan, resumed).replay()
            return
        self._run(session, plan, lane, lane.admit(), resumed)

    def _run(self, session: TranslationSession, plan: Plan, lane: Lane, ticket: Ticket,
             resumed: Resumed | None = None) -> None:
        if self.store.get(session.id) is not session:  # an adopted session is in the store already
            self.store.add(session)
        task = asyncio.create_task(self._document(session, plan, resumed).run(lane, ticket),
                                   name=f"session-{session.id}")
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._settle(done, session, lane))
        session.set_canceller(lambda: self._cancel(session, lane, task))
        session.on_change(self._watch_readers)
        self._watch_readers(session)

    async def preview(self, request: TranslationRequest, *, principal: str = "anonymous",
                      owner: str | None = None) -> Plan:
        """The plan of request as a dry run (POST /api/prompts): planned in a worker thread after the cheap
        checks, the cache only peeked (in owner's scope). Counts nothing against the rate: nothing is generated."""
        await self._admit(request, principal)
        plan = await self._planned(principal, request, owner)
        return self.planner.look_up(plan, dry_run=True)

    def plan(self, request: Request, *, dry_run: bool = False, owner: str | None = None) -> Plan:
        """The segments, their prompts and what the cache holds (raises too_long); nothing is generated."""
        return self.planner.look_up(self.planner.plan(request, self.options, owner=owner), dry_run=dry_run)

    def _check(self, request: Request, principal: str) -> None:
        """The cheap checks, before any tokenizer work; they count nothing (a translation's length was checked
        when it was parsed, a chat's is here)."""
        if not self.accepting:
            raise HmtError(errors.SHUTTING_DOWN, "the server is shutting down", retry_after=5)
        if isinstance(request, ChatRequest) and request.chars > self.max_chars:
            raise HmtError(errors.TOO_LONG, f"the messages have {request.chars} characters; the limit is "
                                            f"{self.max_chars} (generation.max_chars)")
        if not self.store.available:
            raise HmtError(errors.STORE_UNAVAILABLE, "the session store is unavailable; try again shortly",
                           retry_after=2)
        if self.limiter is not None and not self.limiter.shared:
            self.limiter.check(principal, chars=request.chars)
        if self.refusals is not None and not self.refusals.shared:
            self.refusals.check(principal)

    async def _admit(self, request: Request, principal: str) -> None:
        """The cheap checks, rate limits kept in a shared store among them (awaited: a Redis call never blocks
        the event loop)."""
        self._check(request, principal)
        for limiter, chars in ((self.limiter, request.chars), (self.refusals, 0)):
            if limiter is not None and limiter.shared:
                await limiter.acheck(principal, chars=chars)

    async def _planned(self, principal: str, request: Request, owner: str | None) -> Plan:
        loop = asyncio.get_running_loop()
        with self._counting_refusals(principal):
            return await loop.run_in_executor(None, lambda: self.planner.plan(request, self.options, owner=owner))

    @contextmanager
    def _counting_refusals(self, principal: str) -> Iterator[None]:
        """Input the planner refuses (too_long) counts against principal's refusal budget."""
        try:
            yield
        except HmtError:
            if self.refusals is not None:
                self.refusals.count(principal)
            raise

    def _document(self, session: TranslationSession, plan: Plan, resumed: Resumed | None = None) -> DocumentRun:
        return DocumentRun(session, plan, engine=self.engine, cache=self.cache, observer=self.observer,
                           resumed=resumed)

    def _count(self, principal: str, request: Request) -> None:
        if self.limiter is not None:
            self.limiter.count(principal, chars=request.chars)

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
    def _cancel(session: TranslationSession, lane: Lane, task: asyncio.Task[None]) -> None:
        if not lane.served:
            # Still in line: leave it now, so the sessions behind move up at once.
            lane.close()
            session.append("cancelled")
        task.cancel()

    def _settle(self, task: asyncio.Task[None], session: TranslationSession, lane: Lane) -> None:
        # A task cancelled before its first step never runs its own clean-up: free the slot and end the log here.
        self._tasks.discard(task)
        lane.close()
        if not session.finished:
            session.append("cancelled")

    async def translate(self, request: Request, *, principal: str = "anonymous",
                        owner: str | None = None) -> TranslationSession:
        """Submit and wait for the terminal event (the one-shot API)."""
        session = await self.start(request, principal=principal, owner=owner)
        async for _ in session.events(after=session.last_seq):
            pass
        return session

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
