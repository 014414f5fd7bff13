"""Events per principal and time window, through the `limits` library: in this process's memory, or shared by
replicas in Redis through its asyncio API (`async+redis://`), so that no Redis call blocks the event loop."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from limits import RateLimitItem, parse_many, storage, strategies
from limits.aio import strategies as aio_strategies
from limits.storage import MemoryStorage
from redis.asyncio import BlockingConnectionPool

from . import errors
from .errors import HmtError

log = logging.getLogger(__name__)

POOL = 4  # Redis connections of one shared limiter


class RateLimiter:
    def __init__(self, rate: str, storage_uri: str = "memory://", *, what: str = "translations",
                 advice: str = "try again later", chars_per_minute: int = 0) -> None:
        self.rate = rate
        self.what = what  # also keeps the counters of limiters that share a storage apart
        self.advice = advice
        self._items = parse_many(rate)
        # Characters are counted too, so that one long document cannot do what many short requests may not.
        self._chars = parse_many(f"{chars_per_minute}/minute") if chars_per_minute > 0 else []
        # An async+ URI: counters shared through Redis, checked with acheck() and counted in the background.
        self.shared = storage_uri.startswith("async+")
        self._limiter: Any
        if self.shared:
            # A few connections, waited for when all are busy: limits' default pool opens one per concurrent call.
            pool = BlockingConnectionPool.from_url(storage_uri.removeprefix("async+"), max_connections=POOL,
                                                   timeout=5, client_name="hmt-limits")
            self._limiter = aio_strategies.MovingWindowRateLimiter(
                storage.storage_from_string(storage_uri, implementation="redispy",
                                            connection_pool=pool))  # type: ignore[arg-type]  # passed to redis-py
        else:
            self._limiter = strategies.MovingWindowRateLimiter(_storage(storage_uri))
        self._counting: set[asyncio.Task[None]] = set()

    def _checks(self, key: str, chars: int) -> list[tuple[RateLimitItem, tuple[str, str], int, str]]:
        """(limit, counter, cost, unit) for one event of `chars` characters."""
        checks = [(item, (self.what, key), 1, self.what) for item in self._items]
        if chars > 0:
            checks += [(item, (f"{self.what}#chars", key), chars, "characters") for item in self._chars]
        return checks

    def check(self, key: str, chars: int = 0) -> None:
        """Raise `rate_limited` if one more event of `chars` characters would put key over a limit (or
        `too_long` if it never could pass); counts nothing. A shared limiter is checked by acheck()."""
        self._fits(chars)
        for item, counter, cost, unit in self._checks(key, chars):
            if not self._limiter.test(item, *counter, cost=cost):
                self._refuse(item, unit, self._limiter.get_window_stats(item, *counter).reset_time)

    async def acheck(self, key: str, chars: int = 0) -> None:
        """check() of a shared limiter; raises store_unavailable when Redis cannot answer."""
        self._fits(chars)
        for attempt in (1, 2):  # once more on a fresh connection: Redis may have restarted since the last call
            try:
                for item, counter, cost, unit in self._checks(key, chars):
                    if not await self._limiter.test(item, *counter, cost=cost):
                        self._refuse(item, unit, (await self._limiter.get_window_stats(item, *counter)).reset_time)
                return
            except HmtError:
                raise
            except Exception as exc:  # the storage's own errors: redis-py's, or a connection's
                if attempt == 2:
                    raise HmtError(errors.STORE_UNAVAILABLE, "the rate limits' store is unavailable; try again "
                                   "shortly", retry_after=2) from exc

    def _fits(self, chars: int) -> None:
        for item in self._chars:
            if chars > item.amount:
                raise HmtError(errors.TOO_LONG, f"the text has {chars} characters; this server translates at most "
                                                f"{item.amount} a minute for one caller (limits.chars_per_minute)")

    def _refuse(self, item: RateLimitItem, unit: str, reset: float) -> None:
        raise HmtError(errors.RATE_LIMITED, f"over the limit of {item} {unit}; {self.advice}",
                       retry_after=max(1.0, reset - time.time()))

    def count(self, key: str, chars: int = 0) -> None:
        """Count one event of `chars` characters for key (after check() passed, or for events never refused);
        a shared limiter counts in the background."""
        if self.shared:
            task = asyncio.ensure_future(self._hit(key, chars))
            self._counting.add(task)
            task.add_done_callback(self._counting.discard)
            return
        for item, counter, cost, _ in self._checks(key, chars):
            self._limiter.hit(item, *counter, cost=cost)

    async def _hit(self, key: str, chars: int) -> None:
        try:
            for item, counter, cost, _ in self._checks(key, chars):
                await self._limiter.hit(item, *counter, cost=cost)
        except Exception as exc:  # Redis went away: this one event goes uncounted
            log.warning("could not count a %s event: %s", self.what, exc)


def _storage(uri: str) -> storage.Storage | Any:
    return SweptMemoryStorage(uri) if uri.startswith("memory://") else storage.storage_from_string(uri)


class SweptMemoryStorage(MemoryStorage):
    """limits' memory storage without a thread per request. Whenever its last sweep has ended it starts a 10 ms
    threading.Timer to drop expired entries: on a server that is not flooded, that is nearly every request, and
    Thread.start() waits until the new thread runs (2.5 ms median on a busy machine, bench/remote.py). Expired
    entries only take memory (a moving window skips them when it counts), so they are dropped here instead, on
    the caller's thread, at most once per SWEEP_S."""

    SWEEP_S = 1.0

    def __init__(self, uri: str | None = None) -> None:
        super().__init__(uri)
        self._next_sweep = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:  # replaces the base class's private timer start
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_S
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]
