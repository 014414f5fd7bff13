"""Translations per principal and time window, through the `limits` library (memory now, Redis later)."""

from __future__ import annotations

import time

from limits import parse_many, storage, strategies

from . import errors
from .errors import HmtError


class RateLimiter:
    def __init__(self, rate: str, storage_uri: str = "memory://", *, chars_per_minute: int = 0) -> None:
        self.rate = rate
        self._items = parse_many(rate)
        # Characters are counted too, so that one long document cannot do what many short requests may not.
        self._chars = parse_many(f"{chars_per_minute}/minute") if chars_per_minute > 0 else []
        self._limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_uri))

    def hit(self, key: str, chars: int = 0) -> None:
        """Count one translation of `chars` characters for key, or raise `rate_limited` (nothing is counted then)."""
        checks = [(item, key, 1, "translations") for item in self._items]
        for item in self._chars:
            if chars > item.amount:
                raise HmtError(errors.TOO_LONG, f"the text has {chars} characters; this server translates at most "
                                                f"{item.amount} a minute for one caller (limits.chars_per_minute)")
        if chars > 0:
            checks += [(item, f"{key}#chars", chars, "characters") for item in self._chars]
        for item, name, cost, unit in checks:
            if not self._limiter.test(item, name, cost=cost):
                reset = self._limiter.get_window_stats(item, name).reset_time
                raise HmtError(errors.RATE_LIMITED, f"over the limit of {item} {unit}; try again later",
                               retry_after=max(1.0, reset - time.time()))
        for item, name, cost, _ in checks:
            self._limiter.hit(item, name, cost=cost)
