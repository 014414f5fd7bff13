"""The CPU suite: what the server costs per token, how many streams it holds, cache hits, time to first output.

Every figure comes from the real server (bench/server.py: hmt-stream's app as `serve` runs it) in a subprocess,
loaded from this process over 127.0.0.1. Tokens come from the ScriptedEngine (not a model) at 20 tokens/s per
stream, each stamped with its production time, except for the time to first output, which uses the demo model.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psutil

from hmt_stream.engine.scripted import Script

from .clients import TRANSPORTS, Stream, WebSocketClient, http_session, payload, poll, rest, run_stream, sse
from .harness import Server, load
from .stats import summary

RATE = 20.0  # tokens per second per stream, about what Hunyuan-MT-7B streams to one reader on a GPU
TARGETS = {
    "cpu_us_per_token_added": 50.0,
    "latency_p99_ms": 1.0,
    "streams_held": 1000,
    "gap_p99_limit_ms": 100.0,
    "idle_ws_bytes": 20 * 1024,
    "cache_hit_p99_ms": 2.0,
}


@dataclass
class Plan:
    """How big each benchmark is; --quick shrinks everything for a try-out."""

    quick: bool = False
    cost_streams: int = 100
    cost_window_s: float = 8.0
    steps: Sequence[int] = (250, 375, 500, 750, 1000, 1250, 1500, 2000, 3000)
    step_window_s: float = 4.0
    idle_connections: int = 1000
    cache_requests: int = 300
    ttft_requests: int = 20
    quiet_budget_s: float = 45.0  # most time spent, in all, waiting for other processes to quieten down
    waited_s: float = 0.0
    busy_retry_pct: float = 40.0  # a measurement during which others used more than this is taken again, once
    budget_s: float = 540.0  # no retries once the whole run has taken this long (make bench: under 10 minutes)
    began: float = field(default_factory=time.monotonic)
    retries: int = 0
    log: Callable[[str], object] = field(default=lambda line: print(line, file=sys.stderr, flush=True))

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if not quick:
            return cls()
        return cls(quick=True, cost_streams=50, cost_window_s=3.0, steps=(100, 300), step_window_s=2.0,
                   idle_connections=200, cache_requests=50, ttft_requests=5, quiet_budget_s=10.0, budget_s=120.0)

    def may_retry(self, figures: dict[str, Any]) -> bool:
        """Whether a measurement that other processes disturbed should be taken again (time allowing)."""
        disturbed = (figures.get("others_cpu_pct") or 0.0) > self.busy_retry_pct
        return disturbed and time.monotonic() - self.began < self.budget_s


async def quiet(plan: Plan, *, below_pct: float = 25.0, longest_s: float = 15.0) -> float:
    """Wait (within the plan's budget) until the machine's CPU use over one second is below `below_pct` % of
    its capacity: other people's work on a shared machine would show in every figure. Returns the last reading."""
    psutil.cpu_percent(interval=None)
    began = time.monotonic()
    while True:
        await asyncio.sleep(1.0)
        busy = float(psutil.cpu_percent(interval=None))
        waited = time.monotonic() - began
        if busy < below_pct or waited >= longest_s or plan.waited_s + waited >= plan.quiet_budget_s:
            plan.waited_s += waited
            return busy


def _script(window_s: float, lead_s: float) -> Script:
    """Stamped tokens at RATE, enough of them to last through the lead-in and the window, and a second more."""
    return Script(tokens=int(RATE * (lead_s + window_s + 1.0)), rate=RATE, stamp=True, text="x")


def _run_id() -> str:
    return uuid.uuid4().hex[:8]


async def warm(server: Server, http: aiohttp.ClientSession) -> None:
    """A few sessions over every transport first, so that no figure pays for a first call."""
    text = f"warm {_run_id()} {{i}} " + Script(tokens=5).directive()
    for mode in TRANSPORTS:
        await asyncio.gather(*(run_stream(mode, http, server.base, text.replace("{i}", f"{mode}{i}"), Stream())
                               for i in range(10)))


# -- (a) server cost per token --------------------------------------------------------------------------------------

async def cost(plan: Plan) -> dict[str, Any]:
    """`cost_streams` streams at RATE, read directly in the server and through each transport, one after the
    other on the same server; CPU and latency over a steady-state window once every stream is running. Then the
    GC-tuned run (serve's default): direct and WebSocket again on a server with its garbage collector tuned."""
    lead = 1.5
    script = _script(plan.cost_window_s, lead)
    modes: dict[str, Any] = {}
    for gc, suffix, names in (("default", "", ("direct", *TRANSPORTS)), ("tuned", "+gc", ("direct", "websocket"))):
        async with Server(gc=gc) as server, http_session() as http:
            await warm(server, http)
            for mode in names:
                name = mode + suffix
                busy = await quiet(plan)
                plan.log(f"  cost: {name}, {plan.cost_streams} streams (machine {busy:.0f} % busy before)")
                for attempt in (1, 2):
                    text = f"cost {mode} {_run_id()} {{i}} " + script.directive()
                    figures = await load(server, http, mode, streams=plan.cost_streams, text=text, rate=RATE,
                                         stagger_s=1.0, begin_s=lead, end_s=lead + plan.cost_window_s)
                    figures["machine_busy_before_pct"] = busy
                    if name not in modes or figures["others_cpu_pct"] < modes[name]["others_cpu_pct"]:
                        modes[name] = figures
                    if attempt == 2 or not plan.may_retry(figures):
                        break
                    plan.retries += 1
                    busy = await quiet(plan)
                    plan.log(f"  cost: {name} again, others used {figures['others_cpu_pct']:.0f} % of the machine")
        base = modes["direct" + suffix]["server_cpu_us_per_token"]
        for mode in names:
            row = modes[mode + suffix]
            spent = row["server_cpu_us_per_token"]
            row["streams_per_core"] = one_core_streams(spent)
            if mode != "direct":
                row["cpu_us_per_token_added"] = (round(spent - base, 2)
                                                 if spent is not None and base is not None else None)
    return {"streams": plan.cost_streams, "rate": RATE, "window_s": plan.cost_window_s, "modes": modes}


# -- (b) concurrency and idle WebSockets ------------------------------------------------------------------------------

def one_core_streams(us_per_token: float | None) -> int | None:
    """Streams at RATE that one core could serve at this much server CPU per token: the server is one event
    loop, so one core is its ceiling. An estimate from CPU time, which other processes disturb far less than
    they disturb latencies."""
    return int(1e6 / (us_per_token * RATE)) if us_per_token else None


def holds(step: dict[str, Any]) -> bool:
    """A step is held when the p99 gap stays within the limit, nothing failed and (almost) every token came."""
    gap = step["gap_ms"].get("p99")
    return (gap is not None and gap <= TARGETS["gap_p99_limit_ms"] and step["errors"] == 0
            and step["tokens_per_s"] >= 0.9 * step["expected_tokens_per_s"])


# What-if runs beside the product's own: the transport, and the server's --gc mode (see bench/server.py).
WHAT_IF = {"websocket+gc": ("websocket", "tuned")}


async def concurrency(plan: Plan) -> dict[str, Any]:
    """Per transport, on a fresh server: more and more streams at RATE until the p99 gap between tokens
    exceeds the limit (or a stream fails, or tokens fall behind). Then the GC-tuned run the same way."""
    out: dict[str, Any] = {}
    runs = {transport: (transport, "default") for transport in TRANSPORTS} | WHAT_IF
    for name, (transport, gc) in runs.items():
        out[name] = await _climb(plan, name, transport, gc)
    return out


async def _climb(plan: Plan, name: str, transport: str, gc: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    async with Server(gc=gc) as server, http_session() as http:
        await warm(server, http)
        for n in plan.steps:
            busy = await quiet(plan)
            stagger = min(2.0, max(0.5, n / 1000))
            lead = stagger + 1.0
            script = _script(plan.step_window_s, lead)
            plan.log(f"  concurrency: {name}, {n} streams (machine {busy:.0f} % busy before)")
            for attempt in (1, 2):
                text = f"streams {transport} {_run_id()} {{i}} " + script.directive()
                step = await load(server, http, transport, streams=n, text=text, rate=RATE, stagger_s=stagger,
                                  begin_s=lead, end_s=lead + plan.step_window_s)
                step["machine_busy_before_pct"] = busy
                step["held"] = holds(step)
                step["attempt"] = attempt
                # A step that failed while others loaded the machine is taken again once, on a quieter one.
                if step["held"] or attempt == 2 or not plan.may_retry(step):
                    break
                plan.retries += 1
                await asyncio.sleep(1.0)
                busy = await quiet(plan)
                plan.log(f"  concurrency: {name}, {n} streams again, others used "
                         f"{step['others_cpu_pct']:.0f} % of the machine")
            steps.append(step)
            if not step["held"]:
                break
            await asyncio.sleep(1.0)  # let the sockets of this step close
    held = [step["streams"] for step in steps if step["held"]]
    last = steps[-1]
    # The estimate comes from the largest step measured: per-token costs shrink a little as load grows.
    return {
        "transport": transport,
        "gc": gc,
        "holds": max(held) if held else 0,
        "streams_per_core": one_core_streams(last["server_cpu_us_per_token"]),
        "streams_per_core_at": last["streams"],
        "first_failing": None if last["held"] else last["streams"],
        "client_bound": (not last["held"]) and last["client_cpu_pct"] >= 85.0,
        "steps": steps,
    }


async def idle_websockets(plan: Plan) -> dict[str, Any]:
    """Server RSS before and after `idle_connections` WebSockets that said hello and then nothing."""
    n = plan.idle_connections
    async with Server() as server, http_session() as http:
        warmers = [WebSocketClient(http, server.base) for _ in range(50)]
        await asyncio.gather(*(client.connect() for client in warmers))
        await asyncio.gather(*(client.close() for client in warmers))
        await quiet(plan)
        await asyncio.sleep(1.0)
        before = server.rss()
        clients = [WebSocketClient(http, server.base) for _ in range(n)]
        for i in range(0, n, 100):
            await asyncio.gather(*(client.connect() for client in clients[i:i + 100]))
        await asyncio.sleep(2.0)
        after = server.rss()
        await asyncio.gather(*(client.close() for client in clients))
    return {"connections": n, "rss_before": before, "rss_after": after,
            "bytes_per_connection": round((after - before) / n)}


# -- (c) cache hits --------------------------------------------------------------------------------------------------

async def _one(mode: str, server: Server, http: aiohttp.ClientSession, ws: WebSocketClient, text: str) -> Stream:
    stream = Stream()
    if mode == "direct":
        async with http.post(f"{server.base}/bench/direct", json={"streams": 1, "text": text}) as response:
            return Stream.from_record((await response.json())["streams"][0])
    if mode == "websocket":
        await ws.translate(text, stream)
    elif mode == "sse":
        await sse(http, server.base, text, stream)
    elif mode == "poll":
        await poll(http, server.base, text, stream)
    elif mode == "rest":
        await rest(http, server.base, text, stream)
    return stream


async def cache(plan: Plan) -> dict[str, Any]:
    """The same text again and again, one request at a time: from sending the request to the terminal event (the
    WebSocket is open already, as a page keeps it; SSE and poll are a POST and then a GET)."""
    text = f"cache hit {_run_id()} " + Script(tokens=20, text="mot ").directive()
    out: dict[str, Any] = {}
    async with Server() as server, http_session() as http:
        await warm(server, http)
        async with http.post(f"{server.base}/api/translate", json=payload(text)) as response:
            assert response.status == 200, await response.text()
        ws = WebSocketClient(http, server.base)
        await ws.connect()
        for mode in ("direct", *TRANSPORTS, "rest"):
            busy = await quiet(plan)
            plan.log(f"  cache: {mode}, {plan.cache_requests} hits (machine {busy:.0f} % busy before)")
            times: list[int] = []
            misses = 0
            for _ in range(plan.cache_requests):
                stream = await _one(mode, server, http, ws, text)
                if stream.end is None or stream.terminal != "done":
                    raise RuntimeError(f"cache {mode}: no done event ({stream.error})")
                times.append(stream.end - stream.start)
                misses += mode != "direct" and not stream.cached
            out[mode] = {**summary(times, 1e-6), "misses": misses, "machine_busy_before_pct": busy}
        await ws.close()
    return out


# -- (d) time to first output with the demo model ---------------------------------------------------------------------

async def ttft(plan: Plan) -> dict[str, Any]:
    """The demo model (real TransformersEngine, CPU), one request at a time, cache off: from the request to the
    first delta in the client, split at the moments the engine was asked to generate and gave its first delta."""
    settings = {"cache.enabled": False, "generation.max_new_tokens": 24}
    out: dict[str, Any] = {}
    async with Server("demo", settings) as server, http_session() as http:
        for i in range(3):  # warm: the first generations pay for lazy initialisation
            async with http.post(f"{server.base}/api/translate",
                                 json=payload(f"warm {i} Good morning, how are you?")) as response:
                await response.read()
        ws = WebSocketClient(http, server.base)
        await ws.connect()
        for mode in ("direct", *TRANSPORTS):
            busy = await quiet(plan)
            plan.log(f"  time to first output: {mode}, {plan.ttft_requests} requests (machine {busy:.0f} % busy)")
            runs: dict[str, Stream] = {}
            for _ in range(plan.ttft_requests):
                marker = uuid.uuid4().hex
                runs[marker] = await _one(mode, server, http, ws,
                                          f"req-{marker} Good morning, how are you today? The weather is fine.")
            async with http.get(f"{server.base}/bench/engine-times") as response:
                engine_times = await response.json()
            client, engine, before, after, tokens = [], [], [], [], []
            for marker, stream in runs.items():
                times = engine_times.get(marker)
                if stream.first is None or not times or len(times) < 2:
                    continue  # the random model ended before any text (it happens): nothing to time
                called, first = times[0], times[1]
                tokens.append(times[2] if len(times) > 2 else 0)
                client.append(stream.first - stream.start)
                engine.append(first - called)
                before.append(called - stream.start)
                after.append(stream.first - first)
            out[mode] = {"request_to_first_delta_ms": summary(client, 1e-6),
                         "engine_first_delta_ms": summary(engine, 1e-6),
                         "request_to_engine_ms": summary(before, 1e-6),
                         "engine_to_client_ms": summary(after, 1e-6),
                         "tokens_before_first_delta": summary(tokens),
                         "without_text": len(runs) - len(client), "machine_busy_before_pct": busy}
        await ws.close()
    return out
