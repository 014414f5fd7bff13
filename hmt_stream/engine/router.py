"""The inference servers behind the remote engine: their state, least-outstanding routing, health checks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Endpoint:
    """One OpenAI-compatible server, by the base URL of its API (e.g. http://gpu-1:8000/v1), and its counters."""

    url: str
    healthy: bool = True  # until a request or a health check says otherwise
    outstanding: int = 0
    requests: int = 0
    failures: int = 0  # requests that failed on it (and went on elsewhere, or failed)
    failovers: int = 0  # of those, the ones that died mid-stream and were continued elsewhere
    tokens: int = 0
    last_error: str = ""
    changed_at: float = field(default_factory=time.monotonic)
    probe: int = 0  # which of `probes` answered last: asked first next time

    @property
    def probes(self) -> tuple[str, str]:
        """vLLM, SGLang and llama.cpp answer GET /health at their root; any OpenAI server answers /v1/models."""
        root = self.url.removesuffix("/v1")
        return root + "/health", self.url + "/models"

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "state": "healthy" if self.healthy else "down", "outstanding": self.outstanding,
                "requests": self.requests, "failures": self.failures, "failovers": self.failovers,
                "tokens": self.tokens, "last_error": self.last_error,
                "since_s": round(time.monotonic() - self.changed_at, 1)}


class Router:
    """Least outstanding requests first, over the healthy servers with room (ties: the less used one)."""

    def __init__(self, urls: Sequence[str], max_concurrent: int) -> None:
        self.endpoints = [Endpoint(url.rstrip("/")) for url in urls]
        self.max_concurrent = max_concurrent
        self._freed: asyncio.Event | None = None

    async def acquire(self, exclude: Collection[Endpoint], timeout_s: float) -> Endpoint | None:
        """A healthy server not in exclude, its slot taken; None when there is none, or when every one stays
        full for timeout_s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            candidates = [e for e in self.endpoints if e.healthy and e not in exclude]
            if not candidates:
                return None
            free = [e for e in candidates if e.outstanding < self.max_concurrent]
            if free:
                endpoint = min(free, key=lambda e: (e.outstanding, e.requests))
                endpoint.outstanding += 1
                endpoint.requests += 1
                return endpoint
            if self._freed is None:
                self._freed = asyncio.Event()
            try:
                await asyncio.wait_for(self._freed.wait(), deadline - loop.time())
            except TimeoutError:
                return None

    def release(self, endpoint: Endpoint) -> None:
        endpoint.outstanding -= 1
        self._wake()

    def _wake(self) -> None:
        if self._freed is not None:
            self._freed.set()
            self._freed = None

    def mark(self, endpoint: Endpoint, healthy: bool, reason: str = "") -> None:
        if not healthy:
            endpoint.last_error = reason
        if endpoint.healthy == healthy:
            return
        endpoint.healthy = healthy
        endpoint.changed_at = time.monotonic()
        if healthy:
            log.info("inference server %s is back", endpoint.url)
            self._wake()  # requests waiting for room may go on on it
        else:
            log.warning("inference server %s is down: %s", endpoint.url, reason)

    @property
    def healthy(self) -> int:
        return sum(endpoint.healthy for endpoint in self.endpoints)

    async def check(self, http: aiohttp.ClientSession, timeout_s: float) -> None:
        """Probe every server at once and mark each healthy or down."""
        reasons = await asyncio.gather(*(probe(http, endpoint, timeout_s) for endpoint in self.endpoints))
        for endpoint, reason in zip(self.endpoints, reasons, strict=True):
            self.mark(endpoint, reason is None, reason or "")

    async def watch(self, http: aiohttp.ClientSession, interval_s: float, timeout_s: float) -> None:
        """Check every interval_s seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            await self.check(http, timeout_s)


def describe_failure(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def probe(http: aiohttp.ClientSession, endpoint: Endpoint, timeout_s: float) -> str | None:
    """None when the server answers a health probe with 200, else why not. A 404 means that probe is not there:
    the next one is tried."""
    order = (endpoint.probe, 1 - endpoint.probe)
    reason = "no health route answered"
    for index in order:
        url = endpoint.probes[index]
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"GET {url}: {describe_failure(exc)}"
        if response.status == 200:
            endpoint.probe = index
            return None
        reason = f"GET {url}: HTTP {response.status}"
        if response.status != 404:
            return reason
    return reason
