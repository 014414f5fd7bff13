"""The rate limiter's memory storage: counts as limits' own does, without starting a thread per request."""

import threading
import time
from typing import Any

import pytest

from hmt_stream.errors import HmtError
from hmt_stream.ratelimit import RateLimiter, SweptMemoryStorage


def test_a_request_starts_no_thread_and_expired_entries_are_still_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = RateLimiter("3/second", "memory://")
    started: list[threading.Thread] = []
    start = threading.Thread.start

    def counting(thread: threading.Thread) -> None:
        started.append(thread)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting)
    monkeypatch.setattr(SweptMemoryStorage, "SWEEP_S", 0.0)  # every call sweeps
    for _ in range(3):
        limiter.check("client")
        limiter.count("client")
        time.sleep(0.02)  # longer than limits' own 10 ms timer, which would start a thread on the next call
    with pytest.raises(HmtError) as refused:
        limiter.check("client")
    assert refused.value.code == "rate_limited"
    assert started == []
    storage: Any = limiter._limiter.storage
    time.sleep(1.05)
    limiter.check("client")  # a second later the window is free again
    limiter.count("client")  # and counting sweeps the old entries away
    assert [len(entries) for entries in storage.events.values()] == [1]
