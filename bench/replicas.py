"""Replicas sharing a Redis store (`store.url`): the CPU per token the Redis store adds over the memory store (the
same WebSocket load on one bench server), Redis connections per replica, and the streams one replica follows for
readers of sessions another replica generates (all on one machine, beside a real redis-server)."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from tests.replicas.redis_server import RedisServer

from .clients import create, http_session
from .cpu import RATE, Plan, _run_id, _script, quiet, warm
from .harness import Server, load

TARGET_RATIO = 2.0  # the Redis store's CPU per token, at most twice the memory store's (WebSocket, in all)


async def suite(plan: Plan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hmt-bench-redis-") as folder:
        redis = RedisServer(Path(folder)).start()
        try:
            out = await _cost(plan, redis)
            out["following"] = await _following(plan, redis)
        finally:
            redis.stop()
    out["target_ratio"] = TARGET_RATIO
    return out


async def _cost(plan: Plan, redis: RedisServer) -> dict[str, Any]:
    lead = 1.5
    script = _script(plan.cost_window_s, lead)
    modes: dict[str, Any] = {}
    for name, settings in (("memory", {}), ("redis", {"store.url": redis.url})):
        async with Server(settings=settings) as server, http_session() as http:
            await warm(server, http)
            busy = await quiet(plan)
            plan.log(f"  replicas: websocket over the {name} store, {plan.cost_streams} streams")
            text = f"replicas {name} {_run_id()} {{i}} " + script.directive()
            figures = await load(server, http, "websocket", streams=plan.cost_streams, text=text, rate=RATE,
                                 stagger_s=1.0, begin_s=lead, end_s=lead + plan.cost_window_s)
            figures["machine_busy_before_pct"] = busy
            if name == "redis":
                figures["redis_connections"] = await connections(redis.url)
            modes[name] = figures
    memory, shared = (modes[m]["server_cpu_us_per_token"] for m in ("memory", "redis"))
    return {"streams": plan.cost_streams, "rate": RATE, "window_s": plan.cost_window_s, "modes": modes,
            "cpu_us_per_token_added": round(shared - memory, 2) if memory and shared else None,
            "cpu_ratio": round(shared / memory, 2) if memory and shared else None}


async def connections(url: str) -> dict[str, int]:
    """Redis clients by name: each replica names its pool `hmt-<id>` and its readers `hmt-<id>-readerN`; the rate
    limits' pools are `hmt-limits` (two per replica: translations and refusals)."""
    client = Redis.from_url(url)
    try:
        listed: Any = await client.client_list()
    finally:
        await client.aclose()
    names = Counter(entry.get("name") or "(unnamed)" for entry in listed)
    names[""] = 0
    return {name: count for name, count in names.items() if name}


async def _following(plan: Plan, redis: RedisServer) -> dict[str, Any]:
    """Sessions generated on replica A, every one read over WebSocket on replica B: B's CPU per token, its
    connections to Redis, the streams it follows."""
    streams = plan.cost_streams
    seconds = plan.cost_window_s + 3.0
    script = _script(seconds, 0.5)
    settings = {"store.url": redis.url}
    async with Server(settings=settings) as a, Server(settings=settings) as b, http_session() as http:
        await warm(a, http)
        await warm(b, http)
        await quiet(plan)
        plan.log(f"  replicas: {streams} sessions generated on one replica, read on another")
        sessions = await asyncio.gather(*(create(http, a.base, f"follow {_run_id()} {i} " + script.directive())
                                          for i in range(streams)))
        cpu_before, began = b.cpu(), time.monotonic()
        tokens, held = await _read_all(http, b.base, sessions)
        spent, elapsed = b.cpu() - cpu_before, time.monotonic() - began
        named = await connections(redis.url)
    return {"streams": streams, "tokens": tokens, "seconds": round(elapsed, 1),
            "reader_cpu_us_per_token": round(spent * 1e6 / tokens, 2) if tokens else None,
            "max_followed": held, "redis_connections": named}


async def _read_all(http: aiohttp.ClientSession, base: str, sessions: list[str]) -> tuple[int, int]:
    """Follow every session over one socket per 16 sessions until each ends; (deltas received, sessions)."""
    tokens = 0

    async def read(group: list[str]) -> None:
        nonlocal tokens
        async with http.ws_connect(f"{base}/ws") as ws:
            await ws.receive_str()  # hello
            for session in group:
                await ws.send_str(json.dumps({"type": "resume", "session": session, "after": 0}))
            left = set(group)
            while left:
                event = json.loads(await ws.receive_str())
                if event.get("type") == "delta":
                    tokens += 1
                elif event.get("type") in ("done", "error", "cancelled"):
                    left.discard(event["session"])

    await asyncio.gather(*(read(sessions[i:i + 16]) for i in range(0, len(sessions), 16)))
    return tokens, len(sessions)


def section(data: dict[str, Any] | None) -> str:
    """docs/benchmarks.md's section on replicas."""
    head = "## 8. Replicas sharing Redis (`bench/replicas.py`)\n\n"
    if not data:
        return head + "Not run yet: `python -m bench --only replicas`.\n"
    if "error" in data:
        return head + f"Failed: `{data['error']}`\n"
    memory, shared = data["modes"]["memory"], data["modes"]["redis"]
    ratio = data.get("cpu_ratio")
    verdict = "met" if ratio is not None and ratio <= data["target_ratio"] else "missed"
    following = data.get("following", {})
    rows = [f"| {name} | {m.get('server_cpu_us_per_token')} | {m.get('gap_ms', {}).get('p99')} | {m.get('errors')} |"
            for name, m in (("memory store", memory), ("Redis store", shared))]
    return (head + f"{data['streams']} WebSocket streams at {data['rate']:.0f} tokens/s each (the scripted engine) on "
            "one bench server, with the memory store and then with a Redis store (a redis-server on the same "
            "machine): the server's CPU per token, everything included (the mirror's writes, the leases).\n\n"
            "| store | server CPU µs/token | gap p99 ms | errors |\n| --- | --- | --- | --- |\n" + "\n".join(rows)
            + f"\n\nThe Redis store costs **{ratio}×** the memory store's CPU per token "
            f"(+{data.get('cpu_us_per_token_added')} µs; target ≤ {data['target_ratio']}×: {verdict}). "
            f"Redis connections of that replica: {shared.get('redis_connections')}.\n\n"
            f"Following: {following.get('streams')} sessions generated on replica A, all read over WebSocket on "
            f"replica B: B spent {following.get('reader_cpu_us_per_token')} µs of CPU per token it relayed, "
            f"following {following.get('max_followed')} streams over its two reader connections; Redis "
            f"connections by client: {following.get('redis_connections')}.\n")
