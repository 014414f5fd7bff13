"""Readers of sessions another replica generates: blocking reads of many streams over a few connections.

Each connection runs one XREAD BLOCK over its share of the followed logs and its own control stream; following a
new log writes a wake-up to that control stream, so the read starts again with the new log in it. Control streams
also carry the cancels other replicas send to this one. Entries land in a local TranslationSession (a follower
copy) by seq, so its readers get exactly-once by seq as on the replica that generates it."""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..session import SessionClosed, TranslationSession
from . import keys
from .codec import event_from_json

log = logging.getLogger(__name__)

BLOCK_MS = 2000
MAX_ENTRIES = 1000  # per stream and read


def apply(session: TranslationSession, entries: Any) -> None:
    """Append stream entries to a follower copy: the next seq only (a repeat is skipped)."""
    for _, fields in entries:
        seq, kind, data = event_from_json(fields[b"e"])
        if seq == session.last_seq + 1 and not session.finished:
            try:
                session.append(kind, **data)
            except SessionClosed:
                return


class Follower:
    def __init__(self, url: str, *, replica: str, wake: Redis, connections: int = 2,
                 on_cancel: Callable[[str], None]) -> None:
        self.url = url
        self.replica = replica
        self.count = connections
        self.on_cancel = on_cancel
        self._wake = wake
        self._shards: list[dict[str, TranslationSession]] = [{} for _ in range(connections)]
        self._clients: list[Redis] = []

    @property
    def followed(self) -> int:
        return sum(len(shard) for shard in self._shards)

    def follow(self, session: TranslationSession) -> None:
        """Feed session from its stream after its last seq until its terminal event."""
        index = zlib.crc32(session.id.encode()) % self.count
        self._shards[index][keys.log(session.id)] = session
        task = asyncio.ensure_future(self._poke(index))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def _poke(self, index: int) -> None:
        try:
            await self._wake.xadd(keys.control(self.replica, index), {"wake": "1"}, maxlen=100, approximate=True)
        except (RedisError, OSError):
            pass  # the reader retries on its own once Redis is back

    async def run(self) -> None:
        await asyncio.gather(*(self._read(index) for index in range(self.count)))

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()

    async def _read(self, index: int) -> None:
        client = Redis.from_url(self.url, single_connection_client=True, socket_timeout=BLOCK_MS / 1000 + 5,
                                socket_connect_timeout=2, client_name=f"hmt-{self.replica}-reader{index}")
        self._clients.append(client)
        control = keys.control(self.replica, index)
        shard = self._shards[index]
        after: str | bytes | None = None
        while True:
            try:
                if after is None:  # from now on: older control entries were for this replica's previous life
                    after = await client.xadd(control, {"wake": "1"}, maxlen=100, approximate=True)
                streams: dict[Any, Any] = {control: after}
                streams.update({key: f"{session.last_seq}-0" for key, session in shard.items()})
                answer: Any = await client.xread(streams, count=MAX_ENTRIES, block=BLOCK_MS)
            except (RedisError, OSError) as exc:
                log.debug("follower %d: %s", index, exc)
                await asyncio.sleep(0.5)
                continue
            for name, entries in answer:
                key = name.decode()
                if key == control:
                    after = entries[-1][0]
                    for _, fields in entries:
                        if b"cancel" in fields:
                            self.on_cancel(fields[b"cancel"].decode())
                    continue
                session = shard.get(key)
                if session is not None:
                    apply(session, entries)
                    if session.finished:
                        del shard[key]
