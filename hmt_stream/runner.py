"""A session's segments generated concurrently through the scheduler, their text written to the log strictly in
document order (a later segment's output waits until every earlier one is out). A chat request runs here too, as
a plan of one job whose text goes to the log as it comes."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any, Protocol

from . import errors
from .cache import PhraseCache
from .documents import Restorer
from .engine import Engine
from .engine.stops import finish_reason, with_stops
from .errors import HmtError
from .plan import Job, Plan
from .resume import Resumed
from .scheduler import Lane, Ticket
from .session import TranslationSession

log = logging.getLogger(__name__)


class Observer(Protocol):
    """What the translator reports as it works (metrics listen; the core knows no metrics library)."""

    def first_token(self, seconds: float) -> None: ...

    def token_gap(self, seconds: float) -> None: ...

    def finished(self, state: str, tokens: int, error: str = "") -> None: ...


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 1)


class Verbatim:
    """A chat request's output: the model's text as it is (a Restorer would trim it and look for placeholders)."""

    def feed(self, delta: str) -> str:
        return delta

    def finish(self) -> str:
        return ""


class DocumentRun:
    def __init__(self, session: TranslationSession, plan: Plan, *, engine: Engine, cache: PhraseCache,
                 observer: Observer, resumed: Resumed | None = None) -> None:
        self.session = session
        self.plan = plan
        self.engine = engine
        self.options = plan.options
        self.cache = cache
        self.observer = observer
        count = len(plan.jobs)
        self._buffers: list[list[str]] = [[] for _ in range(count)]
        self._complete = [False] * count
        self._reasons = ["stop"] * count  # each segment's finish_reason
        for job in plan.jobs:
            if job.cached is not None:
                self._buffers[job.index].append(self._restore(job, [job.cached.text]))
                self._complete[job.index] = True
                self._reasons[job.index] = job.cached.finish_reason
        self._kept = list(plan.kept)
        self._cursor = -1  # the segment whose output goes to the log as it comes; -1 before `started`
        self._tokens = 0
        self._ttft: float | None = None
        self._last = 0.0
        self._prefix = [""] * count  # a segment's raw text written by a replica that died (adoption)
        if resumed is not None and resumed.started:
            self._go_on(resumed)

    def _go_on(self, resumed: Resumed) -> None:
        """An adopted session's log holds the segments before the cursor and the start of the one at it."""
        self._cursor = resumed.cursor
        for index in range(min(resumed.cursor, len(self._complete))):
            self._complete[index], self._buffers[index], self._kept[index] = True, [], ""
        if resumed.kept_written(self.plan):
            self._kept[min(resumed.cursor, len(self._kept) - 1)] = ""
        if resumed.cursor < len(self._prefix):
            self._prefix[resumed.cursor] = resumed.raw(self.plan)
        self._advance()  # the document's text before that segment, if the log lacks it

    # -- the whole session -------------------------------------------------------------------------------------

    def replay(self) -> None:
        """Every segment was in the cache: the log is its text and `done`, as for any cache hit."""
        self._cursor = 0
        self._advance()
        self._done()

    async def run(self, lane: Lane, first: Ticket) -> None:
        """Generate every segment the cache lacks, a slot at a time; ends the log with its terminal event."""
        tasks: list[asyncio.Task[None]] = []
        try:
            async with asyncio.TaskGroup() as group:
                for number, job in enumerate(self.plan.pending):
                    ticket = first if number == 0 else lane.admit()
                    await ticket.wait()
                    if self._cursor < 0:
                        self._start()
                    tasks.append(group.create_task(self._segment(job, ticket)))
        except asyncio.CancelledError:
            if not self.session.finished:
                self.session.append("cancelled")
            self.observer.finished("cancelled", self._tokens)
            return
        except BaseExceptionGroup as failure:
            exc = failure.exceptions[0]
            if isinstance(exc, HmtError):  # the engine's own verdict, e.g. engine_unavailable
                log.warning("generation failed for session %s: %s: %s", self.session.id, exc.code, exc.message)
                self.session.append("error", code=exc.code, message=exc.message)
                code = exc.code
            else:
                # The exception's text may hold paths, memory figures or other users' input: it goes to the log only.
                error_id = secrets.token_hex(4)
                log.error("generation failed for session %s (error id %s)", self.session.id, error_id, exc_info=exc)
                self.session.append("error", code=errors.MODEL_ERROR.code,
                                    message=f"the model failed on this translation (error id {error_id}, in the "
                                            f"server log)")
                code = errors.MODEL_ERROR.code
            self.observer.finished("failed", self._tokens, code)
            return
        finally:
            lane.close()
        self._done()
        self.observer.finished("done", self._tokens)

    def _start(self) -> None:
        data: dict[str, Any] = {"segments": len(self.plan.jobs), "segments_cached": self.plan.cached}
        data.update(self._detected())
        self.session.append("started", **data)
        self._cursor = 0
        self._advance()

    def _detected(self) -> dict[str, Any]:
        detection = self.plan.detection
        return {} if detection is None else {"source": detection.language, "confidence": detection.confidence}

    def _done(self) -> None:
        cached = bool(self.plan.jobs) and not self.plan.pending  # text with nothing to translate is not a hit
        self.session.append("done", text=self.session.text, cached=cached, tokens=self._tokens,
                            ttft_ms=self._ttft or 0.0, elapsed_ms=_ms(self.session.created) if self.plan.pending
                            else 0.0, segments=len(self.plan.jobs), segments_cached=self.plan.cached,
                            finish_reason="length" if "length" in self._reasons else "stop",
                            prompt_tokens=self.plan.prompt_tokens, **self._detected())

    # -- one segment -------------------------------------------------------------------------------------------

    async def _segment(self, job: Job, ticket: Ticket) -> None:
        restorer = self._restorer(job)
        prefix = self._prefix[job.index]
        restorer.feed(prefix)  # already in the log (adoption): the restorer only needs to have seen it
        raw: list[str] = [prefix]
        generation = with_stops(self.engine.generate(job.chat, self.options), self.options)
        try:
            async for text in generation:
                self._observe()
                raw.append(text)
                self._write(job.index, restorer.feed(text))
        except asyncio.CancelledError:
            generation.cancel()
            await generation.wait_closed()
            raise
        finally:
            self._tokens += generation.tokens
            ticket.release()
        self._write(job.index, restorer.finish())
        self._complete[job.index] = True
        self._reasons[job.index] = reason = finish_reason(generation, self.options)
        self.cache.put(job.key, "".join(raw), finish_reason=reason)
        self._advance()

    def _restorer(self, job: Job) -> Restorer | Verbatim:
        return Verbatim() if self.plan.verbatim else Restorer(job.segment, escape=self.plan.escape)

    def _restore(self, job: Job, raw: list[str]) -> str:
        restorer = self._restorer(job)
        return "".join(restorer.feed(text) for text in raw) + restorer.finish()

    def _observe(self) -> None:
        now = time.monotonic()
        if self._ttft is None:
            self._ttft = _ms(self.session.created)
            self.observer.first_token(now - self.session.created)
        else:
            self.observer.token_gap(now - self._last)
        self._last = now

    # -- document order ----------------------------------------------------------------------------------------

    def _write(self, index: int, text: str) -> None:
        if not text:
            return
        if index == self._cursor:
            self.session.append("delta", text=text, segment=index)
        else:
            self._buffers[index].append(text)

    def _advance(self) -> None:
        """Move the cursor past every finished segment, writing what waited; then the text after the last one."""
        jobs = self.plan.jobs
        while 0 <= self._cursor < len(jobs):
            index = self._cursor
            for text in (self._kept[index], *self._buffers[index]):
                if text:
                    self.session.append("delta", text=text, segment=index)
            self._kept[index] = ""
            self._buffers[index] = []
            if not self._complete[index]:
                return
            if self.plan.pending and len(jobs) > 1:
                self.session.append("progress", segment=index, done=index + 1, segments=len(jobs),
                                    cached=jobs[index].cached is not None)
            self._cursor += 1
        if self._cursor == len(jobs) and self._kept[-1]:
            self.session.append("delta", text=self._kept[-1], segment=max(0, len(jobs) - 1))
            self._kept[-1] = ""
