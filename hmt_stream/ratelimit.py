"""Events per principal and time window, through the `limits` library (memory now, Redis later)."""

from __future__ import annotations

import time
from typing import Any

from limits import RateLimitItem, parse_many, storage, strategies
from limits.storage import MemoryStorage

from . import errors
from .errors import HmtError


class RateLimiter:
    def __init__(self, rate: str, storage_uri: str = "memory://", *, what: str = "translations",
                 advice: str = "try again later", chars_per_minute: int = 0) -> None:
        self.rate = rate
        self.what = what  # also keeps the counters of limiters that share a storage apart
        self.advice = advice
        self._items = parse_many(rate)
        # Characters are counted too, so that one long document cannot do what many short requests may not.
        self._chars = parse_many(f"{chars_per_minute}/minute") if chars_per_minute > 0 else []
        self._limiter = strategies.MovingWindowRateLimiter(_storage(storage_uri))

    def _checks(self, key: str, chars: int) -> list[tuple[RateLimitItem, tuple[str, str], int, str]]:
        """(limit, counter, cost, unit) for one event of `chars` characters."""
        checks = [(item, (self.what, key), 1, self.what) for item in self._items]
        if chars > 0:
            checks += [(item, (f"{self.what}#chars", key), chars, "characters") for item in self._chars]
        return checks

    def check(self, key: str, chars: int = 0) -> None:
        """Raise `rate_limited` if one more event of `chars` characters would put key over a limit (or
        `too_long` if it never could pass); counts nothing."""
        for item in self._chars:
            if chars > item.amount:
                raise HmtError(errors.TOO_LONG, f"the text has {chars} characters; this server translates at most "
                                                f"{item.amount} a minute for one caller (limits.chars_per_minute)")
        for item, counter, cost, unit in self._checks(key, chars):
            if not self._limiter.test(item, *counter, cost=cost):
                reset = self._limiter.get_window_stats(item, *counter).reset_time
                raise HmtError(errors.RATE_LIMITED, f"over the limit of {item} {unit}; {self.advice}",
                               retry_after=max(1.0, reset - time.time()))

    def count(self, key: str, chars: int = 0) -> None:
        """Count one event of `chars` characters for key (after check() passed, or for events never refused)."""
        for item, counter, cost, _ in self._checks(key, chars):
            self._limiter.hit(item, *counter, cost=cost)


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
