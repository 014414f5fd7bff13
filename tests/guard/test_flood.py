"""The whole server as a process with a small file limit, under a flood of idle and slow connections: it keeps
answering real requests, closes the idle and the slow, and logs it once, without tracebacks or credentials."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ..nginx import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FILES = 256
KEY = "flood-test-key-0123456789"
SECRET_TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.c2lnbmF0dXJl"


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILES, FILES))


class Server:
    def __init__(self, process: asyncio.subprocess.Process, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "HMT_MODEL_DEMO_DIR": str(tmp_path / "demo"), "HMT_LIMITS_HEADER_TIMEOUT_S": "2",
           "HMT_LIMITS_BODY_TIMEOUT_S": "1", "HMT_AUTH_ENABLED": "true", "HMT_AUTH_API_KEYS": KEY,
           "HMT_GENERATION_MAX_NEW_TOKENS": "8"}
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hmt_stream", "serve", "--model", "demo", "--port", str(port), cwd=ROOT, env=env,
            stdout=out, stderr=asyncio.subprocess.STDOUT, preexec_fn=_limit_files)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                try:
                    async with http.get(f"{url}/api/health") as response:
                        if (await response.json())["ready"]:
                            break
                except aiohttp.ClientError:
                    assert process.returncode is None, log.read_text()
                    await asyncio.sleep(0.2)
        yield Server(process, url, log)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        async with asyncio.timeout(within):
            while await reader.read(1024):
                pass
        return True
    except (TimeoutError, ConnectionError):
        return False


async def test_idle_and_slow_connections_starve_no_one(server: Server) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(300)]  # more than the file limit
    async with aiohttp.ClientSession() as http:
        answer = await http.post(f"{server.url}/api/translate", headers={"Authorization": f"Bearer {KEY}"},
                                 json={"text": "Still here?", "source": "en", "target": "fr"})
        assert answer.status == 200, await answer.text()
        metrics = await (await http.get(f"{server.url}/metrics")).text()
    evicted = [line for line in metrics.splitlines()
               if line.startswith('hmt_refusals_total{reason="connection_limit_evicted"}')]
    assert evicted and float(evicted[0].split()[-1]) > 0, "the cap made no room: idle connections were not closed"
    # Every idle connection is closed: to make room, or at limits.header_timeout_s at the latest.
    closed = await asyncio.gather(*(closed_by_server(reader, 30) for reader, _ in idle))
    assert all(closed)
    for _, writer in idle:
        writer.close()

    # A request head that trickles in a byte at a time is cut off at the header timeout too.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    started = time.monotonic()
    while not reader.at_eof() and time.monotonic() - started < 30:
        try:
            writer.write(b"a")
            await writer.drain()
        except ConnectionError:
            break
        await closed_by_server(reader, 0.3)
    assert reader.at_eof() or writer.is_closing()
    writer.close()

    # Malformed requests that carry credentials: aiohttp logs the raw request line and headers.
    for raw in (f"GET /api/health?access_token={SECRET_TOKEN}\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
                f"GET /api/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\x7f\r\n\r\n",
                f"GET /api/health HTTP/1.1\r\nHost: x\r\nCookie: hmt_token={SECRET_TOKEN}\x7f\r\n\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw.encode("latin-1"))
        assert (await asyncio.wait_for(reader.read(12), 10)).startswith(b"HTTP/1.")
        writer.close()

    server.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(server.process.wait(), 60) == 0
    log = server.log.read_text()
    assert "Too many open files" not in log and "out of system resource" not in log
    reports = [line for line in log.splitlines() if "connection limit of" in line]
    assert len(reports) == 1, reports  # once per minute, not once per connection
    assert KEY not in log and SECRET_TOKEN not in log
    assert "[redacted]" in log  # the malformed requests were logged, without their credentials
