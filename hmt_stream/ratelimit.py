"""Events per principal and time window, through the `limits` library (memory now, Redis later)."""

from __future__ import annotations

import time

from limits import parse_many, storage, strategies

from . import errors
from .errors import HmtError


class RateLimiter:
    def __init__(self, rate: str, storage_uri: str = "memory://", *, what: str = "translations",
                 advice: str = "try again later") -> None:
        self.rate = rate
        self.what = what  # also keeps the counters of limiters that share a storage apart
        self.advice = advice
        self._items = parse_many(rate)
        self._limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_uri))

    def check(self, key: str) -> None:
        """Raise `rate_limited` if key is over the limit; counts nothing."""
        for item in self._items:
            if not self._limiter.test(item, self.what, key):
                reset = self._limiter.get_window_stats(item, self.what, key).reset_time
                raise HmtError(errors.RATE_LIMITED, f"over the limit of {item} {self.what}; {self.advice}",
                               retry_after=max(1.0, reset - time.time()))

    def count(self, key: str) -> None:
        """Count one event for key (after check() passed, or for events that are not refused)."""
        for item in self._items:
            self._limiter.hit(item, self.what, key)

    def hit(self, key: str) -> None:
        """Count one event for key, or raise `rate_limited` (nothing is counted then)."""
        self.check(key)
        self.count(key)
