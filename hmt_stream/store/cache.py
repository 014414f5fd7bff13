"""The phrase cache's shared tier: entries every replica sees, in Redis, behind each replica's own LRU."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Hashable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..cache import Entry

log = logging.getLogger(__name__)


def redis_key(key: Hashable) -> str:
    # A cache key is a tuple of strings, numbers and frozen dataclasses (options, a chat prompt): its repr is the
    # same in every process. It holds the scope (whose entry it is), so a hash of it keeps scopes apart here too.
    return "hmt:cache:" + hashlib.sha256(repr(key).encode()).hexdigest()


class RedisCacheTier:
    def __init__(self, redis: Redis, ttl_s: float) -> None:
        self.redis = redis
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._writes: set[asyncio.Task[None]] = set()

    async def fetch(self, keys: list[Hashable]) -> dict[Hashable, Entry]:
        """The entries Redis holds for keys; none when it cannot answer (a miss costs a generation, not an error)."""
        try:
            values = await self.redis.mget([redis_key(key) for key in keys])
        except (RedisError, OSError) as exc:
            log.debug("shared cache unavailable: %s", exc)
            return {}
        return {key: Entry(*json.loads(value)) for key, value in zip(keys, values, strict=True) if value is not None}

    def put(self, key: Hashable, entry: Entry) -> None:
        task = asyncio.ensure_future(self._write(key, entry))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, key: Hashable, entry: Entry) -> None:
        try:
            await self.redis.set(redis_key(key), json.dumps(list(entry), ensure_ascii=False), px=self.ttl_ms)
        except (RedisError, OSError) as exc:
            log.debug("shared cache unavailable: %s", exc)
