"""The ordered writer: a generating replica's events copied to Redis in order, each shown to readers once stored.

Appends are synchronous; this writer takes them from a queue, one pipeline at a time (everything waiting goes in
the next one), so a session's events are written in seq order and none is dropped. While Redis is down the queue
holds them and the writer retries; each event's stream id is its seq, so a write repeated after a failure that
Redis had in fact applied is recognised and skipped. The queue is bounded by the running sessions themselves: new
sessions are refused (store_unavailable) while the writer fails, and a running one adds at most its remaining
tokens. Readers, here too, see an event only once Redis has it: when this replica dies, what it had not flushed
was seen by nobody, and the replica that adopts the session goes on from what the stream holds, without a gap."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from ..session import TERMINAL_EVENTS, Event, TranslationSession
from . import keys
from .codec import request_json

log = logging.getLogger(__name__)

MAX_BATCH = 2000  # operations in one pipeline
RUNNING_TTL_MS = 3_600_000  # a running session's keys outlive any pause; its terminal event sets the retention


class Mirror:
    def __init__(self, redis: Redis, *, replica: str, retention_s: float, lease_ms: int,
                 on_health: Callable[[bool], None]) -> None:
        self.redis = redis
        self.replica = replica
        self.retention_ms = max(1000, int(retention_s * 1000))
        self.lease_ms = lease_ms
        self.on_health = on_health
        self.queue: deque[tuple[TranslationSession, Event | None]] = deque()  # (session, None): its meta
        self.dropped: set[str] = set()  # sessions another replica took over: nothing more of ours is written
        self.failing = False
        self._wake = asyncio.Event()
        self._written: dict[str, asyncio.Future[None]] = {}  # sessions whose meta is not in Redis yet
        self._shas: dict[str, str] = {}  # script -> its SHA1, once Redis has it (EVALSHA: the text is sent once)

    def add(self, session: TranslationSession, *, stored: int = 0) -> None:
        """Write session's meta (unless stored), its events from seq stored+1 on, and each later one."""
        if not stored:
            self._written[session.id] = asyncio.get_running_loop().create_future()
            self._push(session, None)
        session.hold_back(lambda event: self._push(session, event), stored=stored)

    def resync(self, sessions: list[TranslationSession]) -> None:
        """Redis lost its data: write these sessions again, from their first event, before anything queued."""
        items: list[tuple[TranslationSession, Event | None]] = []
        for session in sessions:
            items.append((session, None))
            items += [(session, event) for event in session.log[:session.visible]]
        self.queue.extendleft(reversed(items))
        self._wake.set()

    async def written(self, session: TranslationSession, timeout: float) -> None:
        """Wait until Redis has session's meta (any replica can find it then), for up to timeout."""
        future = self._written.get(session.id)
        if future is not None:
            await asyncio.wait({future}, timeout=timeout)

    @property
    def backlog(self) -> int:
        return len(self.queue)

    def _push(self, session: TranslationSession, event: Event | None) -> None:
        self.queue.append((session, event))
        self._wake.set()

    async def run(self) -> None:
        delay = 0.05
        while True:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
            batch = [self.queue[i] for i in range(min(MAX_BATCH, len(self.queue)))]
            try:
                await self._write(batch)
            except NoScriptError:
                self._shas.clear()  # Redis restarted: load the scripts again
                continue
            except (RedisError, OSError) as exc:
                if not self.failing:
                    log.warning("cannot write to Redis (%s); %d events wait", exc, len(self.queue))
                self.failing = True
                self.on_health(False)
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)
                continue
            delay = 0.05
            if self.failing:
                log.info("writing to Redis again")
                self.failing = False
                self.on_health(True)
            for _ in batch:
                self.queue.popleft()
            self._publish([item for item in batch if item[0].id not in self.dropped])

    async def _write(self, batch: list[tuple[TranslationSession, Event | None]]) -> None:
        if not self._shas:
            for script in (keys.APPEND, keys.REGISTER):
                self._shas[script] = await self.redis.script_load(script)
        pipe = self.redis.pipeline(transaction=False)
        sessions: dict[str, tuple[TranslationSession, list[Event]]] = {}
        for session, event in batch:
            if session.id in self.dropped:
                continue
            if event is None:
                self._meta(pipe, session)
            sessions.setdefault(session.id, (session, []))[1].extend(() if event is None else (event,))
        appended = [(session, events) for session, events in sessions.values() if events]
        for session, events in appended:
            self._append(pipe, session, events)
        results = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, Exception):
                raise result
        lost = [(session, events) for (session, events), result in zip(appended, results[len(results)
                                                                                        - len(appended):],
                                                                       strict=True) if result == -1]
        if lost:  # Redis lost these sessions' earlier events (a restart): write them again from the first one
            pipe = self.redis.pipeline(transaction=False)
            for session, events in lost:
                self._meta(pipe, session)
                self._append(pipe, session, session.log[:events[-1].seq])
            for result in await pipe.execute(raise_on_error=False):
                if isinstance(result, Exception):
                    raise result

    def _append(self, pipe: Any, session: TranslationSession, events: list[Event]) -> None:
        ttl = self.retention_ms if events[-1].terminal else RUNNING_TTL_MS
        state = next((TERMINAL_EVENTS.get(e.type, "running") for e in reversed(events)
                      if e.type == "started" or e.terminal), "")
        pipe.evalsha(self._shas[keys.APPEND], 3, keys.log(session.id), keys.meta(session.id), keys.LEASES,
                     session.id, events[0].seq, ttl, state, *(event.json for event in events))

    def _meta(self, pipe: Any, session: TranslationSession) -> None:
        fields = {"request": request_json(session.request), "owner": session.owner or "", "replica": self.replica,
                  "state": session.state, "created": str(int(time.time() * 1000))}
        args: list[Any] = [session.id, self.lease_ms]
        for name, value in fields.items():
            args += [name, value]
        if session.finished and session.visible >= len(session.log):
            pipe.hset(keys.meta(session.id), mapping=fields)  # nothing to lease: it has ended
        else:
            pipe.evalsha(self._shas[keys.REGISTER], 2, keys.meta(session.id), keys.LEASES, *args)

    def _publish(self, batch: list[tuple[TranslationSession, Event | None]]) -> None:
        last: dict[str, tuple[TranslationSession, int]] = {}
        for session, event in batch:
            if event is not None:
                last[session.id] = (session, event.seq)
            elif session.id in self._written:
                self._written.pop(session.id).set_result(None)
        for session, seq in last.values():
            session.published(seq)
