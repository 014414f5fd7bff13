"""Translations per principal and time window, through the `limits` library (memory now, Redis later)."""

from __future__ import annotations

import time

from limits import parse_many, storage, strategies

from . import errors
from .errors import HmtError


class RateLimiter:
    def __init__(self, rate: str, storage_uri: str = "memory://") -> None:
        self.rate = rate
        self._items = parse_many(rate)
        self._limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_uri))

    def hit(self, key: str) -> None:
        """Count one translation for key, or raise `rate_limited` (nothing is counted then)."""
        for item in self._items:
            if not self._limiter.test(item, key):
                reset = self._limiter.get_window_stats(item, key).reset_time
                raise HmtError(errors.RATE_LIMITED, f"over the limit of {item} translations; try again later",
                               retry_after=max(1.0, reset - time.time()))
        for item in self._items:
            self._limiter.hit(item, key)
