"""RedisSessionStore: sessions shared by replicas through Redis (a stream per log, a hash per session's meta).

A session generated here stays a local TranslationSession, mirrored to Redis (mirror.py); a session another
replica generates is followed from its stream (follow.py) into a local copy. Every second this replica renews the
lease of each session it generates, tells the replicas generating the sessions it reads that someone still reads
them, and takes over sessions whose lease has expired (their replica died): see leases in keys.py."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from .. import errors
from ..errors import HmtError
from ..session import TranslationSession
from . import keys
from .codec import request_from_json
from .follow import Follower, apply
from .memory import MemorySessionStore
from .mirror import Mirror

log = logging.getLogger(__name__)

TICK_S = 1.0
READ_RECENTLY_MS = 3000  # a reader elsewhere that wrote read_at this recently keeps a session from being orphaned
CLAIM_AT_ONCE = 16

Adopter = Callable[[TranslationSession], Awaitable[None]]


class RedisSessionStore:
    def __init__(self, url: str, *, retention_s: float, lease_s: float, replica: str | None = None) -> None:
        self.url = url
        self.replica = replica or secrets.token_hex(4)
        self.lease_ms = int(lease_s * 1000)
        pool = BlockingConnectionPool.from_url(url, max_connections=16, timeout=5, socket_timeout=5,
                                               socket_connect_timeout=2, client_name=f"hmt-{self.replica}")
        self.redis = Redis.from_pool(pool)  # closed with it
        self._local = MemorySessionStore(retention_s)  # generated here
        self._copies = MemorySessionStore(retention_s)  # followed for readers here
        self._healthy = True
        self.mirror = Mirror(self.redis, replica=self.replica, retention_s=retention_s, lease_ms=self.lease_ms,
                             on_health=self._health)
        self.follower = Follower(url, replica=self.replica, wake=self.redis, on_cancel=self._cancel_here)
        self._renew = self.redis.register_script(keys.RENEW)
        self._claim = self.redis.register_script(keys.CLAIM)
        self._read_here: set[str] = set()  # copies read since the last tick
        self._tasks: set[asyncio.Task[None]] = set()
        self.adopter: Adopter | None = None
        self._claim_after = 0.0
        self.adopted = 0

    # -- SessionStore ----------------------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._healthy and not self.mirror.failing

    def add(self, session: TranslationSession) -> None:
        self._local.add(session)
        self.mirror.add(session)

    def get(self, session_id: str) -> TranslationSession | None:
        return self._local.get(session_id) or self._copies.get(session_id)

    async def written(self, session: TranslationSession) -> None:
        await self.mirror.written(session, timeout=5.0)

    async def fetch(self, session_id: str) -> TranslationSession | None:
        found = self.get(session_id)
        if found is not None:
            return found
        try:
            meta: Any = await self.redis.hgetall(keys.meta(session_id))
            if not meta or b"request" not in meta:
                if await self._restarted_lately():
                    raise HmtError(errors.STORE_UNAVAILABLE, "the session store has just restarted and its "
                                   "sessions are being written back; try again shortly", retry_after=1)
                return None
            entries: Any = await self.redis.xrange(keys.log(session_id))
        except (RedisError, OSError) as exc:
            raise HmtError(errors.STORE_UNAVAILABLE, "the session store is unavailable; try again shortly",
                           retry_after=2) from exc
        found = self.get(session_id)  # fetched meanwhile by another reader
        if found is not None:
            return found
        copy = TranslationSession(request_from_json(meta[b"request"]), session_id=session_id,
                                  owner=meta.get(b"owner", b"").decode() or None)
        apply(copy, entries)
        copy.set_canceller(lambda: self._spawn(self._send_cancel(session_id)))
        copy.on_change(self._reading)
        self._copies.add(copy)
        if not copy.finished:
            self.follower.follow(copy)
        return copy

    async def _restarted_lately(self) -> bool:
        """Redis restarted so lately that the replicas may not have written their sessions back yet."""
        info: Any = await self.redis.info("server")
        return int(info.get("uptime_in_seconds", 1 << 30)) < self.lease_ms / 1000 + 2 * TICK_S

    def __len__(self) -> int:
        return len(self._local)

    def all(self) -> list[TranslationSession]:
        return self._local.all()

    # -- life ------------------------------------------------------------------------------------------------

    async def start(self, adopter: Adopter | None = None) -> None:
        self.adopter = adopter
        for run in (self.mirror.run(), self.follower.run(), self._tick()):
            self._spawn(run)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.follower.close()
        await self.redis.aclose()
        self._local.close()
        self._copies.close()

    async def flush(self, timeout: float) -> None:
        """Wait (up to timeout) until Redis holds every event written here (shutdown)."""
        deadline = time.monotonic() + timeout
        while self.mirror.backlog and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("shared store task failed", exc_info=task.exception())

    def _health(self, healthy: bool) -> None:
        self._healthy = healthy

    # -- cancel ------------------------------------------------------------------------------------------------

    async def _send_cancel(self, session_id: str) -> None:
        """Ask the replica generating session_id to cancel it; the flag also reaches a replica adopting it."""
        try:
            await self.redis.hset(keys.meta(session_id), "cancel", "1")
            replica: Any = await self.redis.hget(keys.meta(session_id), "replica")
            if replica is not None:
                await self.redis.xadd(keys.control(replica.decode(), 0), {"cancel": session_id}, maxlen=1000,
                                      approximate=True)
        except (RedisError, OSError) as exc:
            log.warning("could not send the cancel of session %s: %s", session_id, exc)

    def _cancel_here(self, session_id: str) -> None:
        session = self._local.get(session_id)
        if session is not None:
            session.cancel()

    def _reading(self, session: TranslationSession) -> None:
        self._read_here.add(session.id)

    # -- every second: leases, readers, adoption ---------------------------------------------------------------

    async def _tick(self) -> None:
        first = True
        while True:
            try:
                await self._beat(first)
                first = False
                if not self._healthy:
                    log.info("Redis is back")
                    # Nobody could renew a lease meanwhile: give every replica time to renew its own before any
                    # expired lease is taken for a dead replica's.
                    self._claim_after = time.monotonic() + self.lease_ms / 1000
                self._healthy = True
            except (RedisError, OSError) as exc:
                if self._healthy:
                    log.warning("Redis is unavailable: %s", exc)
                self._healthy = False
            await asyncio.sleep(TICK_S)

    async def _beat(self, first: bool) -> None:
        was = await self.redis.set(keys.marker(self.replica), "1", ex=3600, get=True)
        if was is None and not first:
            log.warning("Redis lost its data (restarted without persistence?): writing this replica's sessions "
                        "again")
            self.mirror.resync(self._local.all())
        await self._renew_leases()
        await self._mark_read()
        if self.adopter is not None and time.monotonic() >= self._claim_after:
            taken = await self._claim(keys=[keys.LEASES], args=[self.replica, self.lease_ms, CLAIM_AT_ONCE])
            for session_id in taken:
                self._spawn(self._adopt(session_id.decode()))

    async def _renew_leases(self) -> None:
        running = [s for s in self._local.all() if not s.finished and s.id not in self.mirror.dropped]
        if not running:
            return
        answers = await self._renew(keys=[keys.LEASES], args=[self.replica, self.lease_ms,
                                                             *(s.id for s in running)])
        now = time.time() * 1000
        for session, answer in zip(running, answers, strict=True):
            if answer == -2:
                log.warning("session %s was taken over by another replica (this one missed its lease)", session.id)
                self.mirror.dropped.add(session.id)
                session.cancel()
            elif answer >= 0:
                session.read_elsewhere(now - answer < READ_RECENTLY_MS)

    async def _mark_read(self) -> None:
        read = {s.id for s in self._copies.all() if s.readers and not s.finished} | self._read_here
        self._read_here = set()
        if read:
            pipe = self.redis.pipeline(transaction=False)
            now = str(int(time.time() * 1000))
            for session_id in read:
                pipe.hset(keys.meta(session_id), "read_at", now)
            await pipe.execute()

    async def _adopt(self, session_id: str) -> None:
        """Go on with a session whose replica died: its log as Redis holds it, then the adopter (the translator)."""
        meta: Any = await self.redis.hgetall(keys.meta(session_id))
        entries: Any = await self.redis.xrange(keys.log(session_id))
        if b"request" not in meta:
            return
        session = TranslationSession(request_from_json(meta[b"request"]), session_id=session_id,
                                     owner=meta.get(b"owner", b"").decode() or None)
        apply(session, entries)
        if session.finished:
            await self.redis.zrem(keys.LEASES, session_id)
            return
        log.info("adopting session %s at seq %d (its replica stopped renewing its lease)", session_id,
                 session.last_seq)
        self.adopted += 1
        self._local.add(session)
        self.mirror.add(session, stored=session.last_seq)
        assert self.adopter is not None
        await self.adopter(session)
        if meta.get(b"cancel"):
            session.cancel()
