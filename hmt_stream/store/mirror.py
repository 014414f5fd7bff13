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
from redis.exceptions import RedisError, ResponseError

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
        pipe = self.redis.pipeline(transaction=False)
        touched: dict[str, TranslationSession] = {}
        for session, event in batch:
            if session.id in self.dropped:
                continue
            touched[session.id] = session
            if event is None:
                self._meta(pipe, session)
                continue
            pipe.xadd(keys.log(session.id), {"e": event.json}, id=f"{event.seq}-0")
            if event.type == "started" or event.terminal:
                pipe.hset(keys.meta(session.id), "state", TERMINAL_EVENTS.get(event.type, "running"))
            if event.terminal:
                pipe.zrem(keys.LEASES, session.id)
        for session in touched.values():
            ttl = self.retention_ms if session.finished else RUNNING_TTL_MS
            pipe.pexpire(keys.meta(session.id), ttl)
            pipe.pexpire(keys.log(session.id), ttl)
        for result in await pipe.execute(raise_on_error=False):
            # Written already by an attempt whose answer was lost: the stream's ids make the repeat harmless.
            if isinstance(result, ResponseError) and "equal or smaller" in str(result):
                continue
            if isinstance(result, Exception):
                raise result

    def _meta(self, pipe: Any, session: TranslationSession) -> None:
        fields = {"request": request_json(session.request), "owner": session.owner or "", "replica": self.replica,
                  "state": session.state, "created": str(int(time.time() * 1000))}
        args: list[Any] = [session.id, self.lease_ms]
        for name, value in fields.items():
            args += [name, value]
        if session.finished and session.visible >= len(session.log):
            pipe.hset(keys.meta(session.id), mapping=fields)  # nothing to lease: it has ended
        else:
            pipe.eval(keys.REGISTER, 2, keys.meta(session.id), keys.LEASES, *args)

    def _publish(self, batch: list[tuple[TranslationSession, Event | None]]) -> None:
        last: dict[str, tuple[TranslationSession, int]] = {}
        for session, event in batch:
            if event is not None:
                last[session.id] = (session, event.seq)
            elif session.id in self._written:
                self._written.pop(session.id).set_result(None)
        for session, seq in last.values():
            session.published(seq)
