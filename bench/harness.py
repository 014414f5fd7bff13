"""Running the server under test in a subprocess, loading it, and measuring over a steady-state window."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import psutil
from aiohttp import web

from .clients import Stream, run_stream
from .stats import summary

ROOT = Path(__file__).resolve().parent.parent


async def serve_until_stdin_closes(runner: web.AppRunner) -> None:
    """The child's side of Server: listen on a free loopback port, say `READY <port>`, serve until the parent
    closes our stdin."""
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"READY {runner.addresses[0][1]}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


class Server:
    """`python -m bench.server` in a subprocess on 127.0.0.1; stopped by closing its stdin."""

    def __init__(self, engine: str = "scripted", settings: dict[str, Any] | None = None, *,
                 gc: str = "default") -> None:
        self.args = [sys.executable, "-m", "bench.server", "--engine", engine, "--gc", gc]
        for key, value in (settings or {}).items():
            self.args += ["--set", f"{key}={_json(value)}"]
        self.log = tempfile.NamedTemporaryFile(prefix="hmt-bench-server-", suffix=".log", delete=False)
        self.popen: subprocess.Popen[bytes] | None = None
        self.process: psutil.Process | None = None
        self.base = ""

    @classmethod
    def proxy(cls, upstream: str) -> Server:
        """`python -m bench.proxy` (a bare aiohttp proxy) in front of upstream, run and stopped the same way."""
        server = cls()
        server.args = [sys.executable, "-m", "bench.proxy", "--upstream", upstream]
        return server

    async def __aenter__(self) -> Server:
        # A session of its own: where the kernel shares CPU between sessions (autogroup), the server then gets
        # its own share instead of splitting one with the load generator, as it would on a machine of its own.
        self.popen = subprocess.Popen(self.args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self.log, start_new_session=True)
        assert self.popen.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.popen.stdout.readline), 120)
        if not line.startswith(b"READY "):
            self.stop()
            raise RuntimeError(f"the bench server did not start: {line!r}\n{self.log_tail()}")
        self.base = f"http://127.0.0.1:{int(line.split()[1])}"
        self.process = psutil.Process(self.popen.pid)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.stop)

    def stop(self) -> None:
        if self.popen is None:
            return
        if self.popen.stdin is not None:
            self.popen.stdin.close()
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self.log.close()
        os.unlink(self.log.name)
        self.popen = None

    def log_tail(self, lines: int = 20) -> str:
        self.log.flush()
        return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])

    def cpu(self) -> float:
        """CPU seconds (user + system, every thread) the server has used so far."""
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds the server has used so far."""
        assert self.process is not None
        times = self.process.cpu_times()
        return float(times.user), float(times.system)

    def rss(self) -> int:
        assert self.process is not None
        return int(self.process.memory_info().rss)


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


@dataclass
class Snapshot:
    ns: int
    server_cpu: float
    client_cpu: float
    machine_cpu: float  # CPU seconds of the whole machine (every process), to show what others used
    server_system: float = 0.0  # the kernel's part of server_cpu (sockets: on loopback, both ends of TCP)

    @classmethod
    def take(cls, server: Server) -> Snapshot:
        machine = psutil.cpu_times()
        busy = machine.user + machine.system + machine.nice + getattr(machine, "irq", 0) + getattr(
            machine, "softirq", 0)
        user, system = server.cpu_split()
        return cls(time.monotonic_ns(), user + system, time.process_time(), busy, system)


async def gc_pauses(server: Server, http: aiohttp.ClientSession) -> dict[str, Any]:
    """The server's garbage collections since the last call."""
    async with http.get(f"{server.base}/bench/gc") as response:
        result: dict[str, Any] = await response.json()
        return result


async def window(server: Server, http: aiohttp.ClientSession, begin_s: float,
                 end_s: float) -> tuple[Snapshot, Snapshot, dict[str, Any]]:
    """Snapshots at begin_s and end_s seconds from now, and the garbage collections in between."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.sleep(begin_s)
    first = Snapshot.take(server)
    await gc_pauses(server, http)
    await asyncio.sleep(max(0.0, start + end_s - loop.time()))
    last = Snapshot.take(server)
    return first, last, await gc_pauses(server, http)


def window_figures(streams: Sequence[Stream], a: Snapshot, b: Snapshot, *, rate: float) -> dict[str, Any]:
    """Latency (production → arrival) and gaps between arrivals of the tokens that arrived in [a, b], and the CPU
    each process spent meanwhile."""
    latencies: list[int] = []
    gaps: list[int] = []
    tokens = 0
    for stream in streams:
        previous: int | None = None
        for recv, stamp in zip(stream.recv, stream.stamps, strict=True):
            if a.ns <= recv < b.ns:
                tokens += 1
                latencies.append(recv - stamp)
                if previous is not None:
                    gaps.append(recv - previous)
            previous = recv
    seconds = (b.ns - a.ns) / 1e9
    server_cpu = b.server_cpu - a.server_cpu
    client_cpu = b.client_cpu - a.client_cpu
    machine_cpu = b.machine_cpu - a.machine_cpu
    active = sum(1 for stream in streams if stream.recv and stream.recv[0] < b.ns and stream.recv[-1] >= a.ns)
    return {
        "window_s": round(seconds, 2),
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        "expected_tokens_per_s": round(len(streams) * rate, 1),
        "active_streams": active,
        "server_cpu_us_per_token": round(server_cpu / tokens * 1e6, 2) if tokens else None,
        "server_cpu_pct": round(server_cpu / seconds * 100, 1),
        "server_system_share": round((b.server_system - a.server_system) / server_cpu, 2) if server_cpu else None,
        "client_cpu_pct": round(client_cpu / seconds * 100, 1),
        "others_cpu_pct": round(max(0.0, machine_cpu - server_cpu - client_cpu) / seconds * 100, 1),
        "latency_ms": summary(latencies, 1e-6),
        "gap_ms": summary(gaps, 1e-6),
    }


async def load(server: Server, http: aiohttp.ClientSession, mode: str, *, streams: int, text: str, rate: float,
               stagger_s: float, begin_s: float, end_s: float) -> dict[str, Any]:
    """Run `streams` sessions (mode 'direct' or a transport), stream i starting i * stagger_s / streams seconds
    in; measure over [begin_s, end_s] seconds from the start."""
    measuring = asyncio.create_task(window(server, http, begin_s, end_s))
    if mode == "direct":
        async with http.post(f"{server.base}/bench/direct",
                             json={"streams": streams, "text": text, "stagger_s": stagger_s}) as response:
            records = (await response.json())["streams"]
        seen = [Stream.from_record(record) for record in records]
    else:
        seen = [Stream() for _ in range(streams)]
        await asyncio.gather(*(run_stream(mode, http, server.base, text.replace("{i}", str(i)), stream,
                                          delay=i * stagger_s / streams) for i, stream in enumerate(seen)))
    a, b, collections = await measuring
    figures = window_figures(seen, a, b, rate=rate)
    figures["gc"] = collections
    errors = [stream.error for stream in seen if stream.error]
    figures["streams"] = streams
    figures["errors"] = len(errors)
    if errors:
        figures["first_error"] = errors[0]
    figures["unfinished"] = sum(1 for stream in seen if stream.terminal != "done" and not stream.error)
    return figures
