"""The remote engine's suite: what a gateway hmt-stream adds over reading an inference server's stream directly.

Two processes: the backend is hmt-stream's bench server with the ScriptedEngine (not a model: stamped tokens at
RATE) serving the OpenAI API, the gateway is the bench server with remote.endpoints pointing at it.

- CPU per token: N streams at RATE, read inside the gateway process (a) directly from the backend's
  /v1/chat/completions with a bare aiohttp reader that parses each chunk (`POST /bench/raw-remote`: the baseline,
  what any client of the backend pays), and (b) as sessions through the Translator and the RemoteEngine
  (`POST /bench/direct`). The gateway's CPU per token of (b) minus (a) is what the gateway adds; a transport to
  the reader (measured by the cost suite) comes on top of it, as it would for a local engine.
- Time to first delta: one request at a time, the client's time from request to first content delta through
  the gateway's /v1/chat/completions minus the same straight from the backend's (same wire both ways). Through
  a bare aiohttp proxy too (bench/proxy.py), alternating with the others: the floor, what the extra hop costs any
  Python gateway before it does any work of its own.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp
from aiohttp import web

from hmt_stream.config import Settings
from hmt_stream.engine.scripted import Script, stamps
from hmt_stream.prompts import build_prompt

from . import report
from .clients import Stream, http_session
from .cpu import RATE, Plan, quiet
from .harness import Server, window, window_figures
from .stats import summary

TARGETS = {"cpu_us_per_token_added": 50.0, "ttft_added_p50_ms": 2.0}
BACKEND = web.AppKey("bench_backend_url", str)


# -- in the gateway process -------------------------------------------------------------------------------------------

def add_routes(app: web.Application, settings: Settings) -> None:
    """The baseline reader, in the gateway process (bench/server.py adds it with --engine remote)."""
    app[BACKEND] = settings.remote.endpoints[0]
    app.router.add_post("/bench/raw-remote", raw_remote)


async def raw_remote(request: web.Request) -> web.Response:
    """Read `streams` chat completions straight from the backend (stream i after i * stagger_s / streams s)."""
    body = await request.json()
    url = request.app[BACKEND] + "/chat/completions"
    streams, stagger = int(body["streams"]), float(body.get("stagger_s", 0.0))
    loop = asyncio.get_running_loop()
    began = loop.time()
    records: list[dict[str, Any]] = []

    async def one(http: aiohttp.ClientSession, i: int) -> None:
        await asyncio.sleep(max(0.0, began + i * stagger / streams - loop.time()))
        record: dict[str, Any] = {"start": time.monotonic_ns(), "first": None, "recv": [], "stamps": [],
                                  "terminal": None, "end": None, "error": None}
        records.append(record)
        content = build_prompt(body["text"].replace("{i}", str(i)), "en", "fr")
        chat = {"model": "scripted", "stream": True, "messages": [{"role": "user", "content": content}]}
        async with http.post(url, json=chat) as response:
            pending = b""
            async for block in response.content.iter_any():  # as the RemoteEngine reads: packets, split here
                *lines, pending = (pending + block).split(b"\n")
                now = time.monotonic_ns()
                for line in lines:
                    if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                        continue
                    choices = json.loads(line[6:])["choices"]
                    text = choices[0]["delta"].get("content") if choices else None
                    if text:
                        if record["first"] is None:
                            record["first"] = now
                        for stamp in stamps(text):
                            record["recv"].append(now)
                            record["stamps"].append(stamp)
        record["terminal"], record["end"] = "done", time.monotonic_ns()

    async with http_session() as http:
        await asyncio.gather(*(one(http, i) for i in range(streams)))
    return web.json_response({"streams": records})


# -- in the load generator --------------------------------------------------------------------------------------------

async def _read_in_gateway(gateway: Server, http: aiohttp.ClientSession, route: str, streams: int, text: str,
                           begin_s: float, end_s: float) -> dict[str, Any]:
    measuring = asyncio.create_task(window(gateway, http, begin_s, end_s))
    async with http.post(f"{gateway.base}{route}",
                         json={"streams": streams, "text": text, "stagger_s": 1.0}) as response:
        records = (await response.json())["streams"]
    seen = [Stream.from_record(record) for record in records]
    a, b, collections = await measuring
    figures = window_figures(seen, a, b, rate=RATE)
    figures["gc"] = collections
    figures["unfinished"] = sum(1 for stream in seen if stream.terminal != "done")
    return figures


async def _first_delta_ms(http: aiohttp.ClientSession, base: str, content: str) -> float | None:
    """Request → first content delta of one streamed chat completion, in ms."""
    chat = {"model": "scripted", "stream": True, "messages": [{"role": "user", "content": content}]}
    start = time.perf_counter()
    first = None
    async with http.post(f"{base}/v1/chat/completions", json=chat) as response:
        async for line in response.content:
            if first is None and line.startswith(b"data: {") and b'"content":"' in line \
                    and b'"content":""' not in line:
                first = (time.perf_counter() - start) * 1000
    return first


async def suite(plan: Plan) -> dict[str, Any]:
    streams, window_s, requests = plan.cost_streams, plan.cost_window_s, 10 * plan.ttft_requests
    lead = 1.5
    script = Script(tokens=int(RATE * (lead + window_s + 1.0)), rate=RATE, stamp=True, text="x")
    # Its own time and commit: this suite may be run alone (--only remote) and merged into an older document.
    out: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": report.machine()["commit"],
                           "quick": plan.quick, "streams": streams, "rate": RATE, "window_s": window_s,
                           "targets": TARGETS}
    async with Server() as backend:
        gateway_settings = {"remote.endpoints": [backend.base + "/v1"], "remote.max_concurrent": 20000,
                            "remote.model": "scripted", "model.name": "demo", "cache.enabled": False}
        async with Server("remote", gateway_settings) as gateway, Server.proxy(backend.base) as proxy, \
                http_session() as http:
            modes: dict[str, Any] = {}
            for mode, route in (("raw", "/bench/raw-remote"), ("gateway", "/bench/direct")):
                busy = await quiet(plan)
                plan.log(f"  remote: {mode}, {streams} streams (machine {busy:.0f} % busy before)")
                text = f"remote {mode} {uuid.uuid4().hex[:8]} {{i}} " + script.directive()
                modes[mode] = await _read_in_gateway(gateway, http, route, streams, text, lead, lead + window_s)
                modes[mode]["machine_busy_before_pct"] = busy
            raw, through = modes["raw"]["server_cpu_us_per_token"], modes["gateway"]["server_cpu_us_per_token"]
            out["modes"] = modes
            # 0.0 is a reading (less than one clock tick in a short window), not a missing one.
            out["cpu_us_per_token_added"] = (round(through - raw, 2)
                                             if raw is not None and through is not None else None)

            busy = await quiet(plan)
            plan.log(f"  remote: time to first delta, {requests} requests each way (machine {busy:.0f} % busy)")
            first = Script(tokens=3, text="y").directive()
            times: dict[str, list[float]] = {"backend": [], "proxy": [], "gateway": []}
            servers = (("backend", backend), ("proxy", proxy), ("gateway", gateway))
            for i in range(requests):  # alternating, so that all see the same neighbours
                for name, server in servers if i % 2 else servers[::-1]:
                    ms = await _first_delta_ms(http, server.base, f"ttft {name} {i} {uuid.uuid4().hex} {first}")
                    if ms is not None:
                        times[name].append(ms)
            out["ttft_ms"] = {name: summary(values) for name, values in times.items()}
            out["ttft_machine_busy_before_pct"] = busy
            p50 = {name: out["ttft_ms"][name].get("p50") for name in times}
            for key, through in (("ttft_added_p50_ms", "gateway"), ("ttft_proxy_added_p50_ms", "proxy")):
                out[key] = (round(p50[through] - p50["backend"], 3)
                            if p50["backend"] is not None and p50[through] is not None else None)
    return out
