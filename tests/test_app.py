"""The whole server as a process: SIGTERM with translations in flight."""

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .nginx import free_port

ROOT = Path(__file__).resolve().parent.parent
# Greedy decoding on the demo model: these prompts run to max_new_tokens (seconds of generation).
LONG_TEXT = "Hello there, how are you?"


async def start(tmp_path: Path, **env: str) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hmt_stream", "serve", "--model", "demo", "--port", str(port), cwd=ROOT,
        env={**os.environ, "HMT_MODEL_DEMO_DIR": str(tmp_path / "demo"), "HMT_GENERATION_TEMPERATURE": "0",
             "HMT_CACHE_ENABLED": "false", **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(f"{url}/api/health") as response:
                    if (await response.json())["ready"]:
                        return process, url
            except aiohttp.ClientError:
                assert process.returncode is None
                await asyncio.sleep(0.2)
    raise AssertionError("the server did not come up")


async def sse_events(http: aiohttp.ClientSession, url: str, started: asyncio.Event) -> list[dict[str, Any]]:
    """Read a whole SSE stream; every frame must be complete (a half-written one would fail to parse)."""
    events = []
    async with http.get(url, headers={"Accept": "text/event-stream"}) as response:
        raw = b""
        async for chunk in response.content.iter_any():
            raw += chunk
            while b"\r\n\r\n" in raw:
                frame, raw = raw.split(b"\r\n\r\n", 1)
                data = [line[6:] for line in frame.decode().split("\r\n") if line.startswith("data: ")]
                if data:
                    events.append(json.loads(data[0]))
                    started.set()
        assert raw == b""
    return events


async def ws_messages(ws: aiohttp.ClientWebSocketResponse) -> list[str]:
    types = []
    while (message := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
        kind = json.loads(message.data)["type"]
        if kind != "ping":  # the server's app-level heartbeat
            types.append(kind)
    return types


@pytest.mark.parametrize("grace,expected", [("0.5", "cancelled"), ("60", "done")])
async def test_sigterm_lets_translations_finish_within_the_grace_time(tmp_path: Path, grace: str,
                                                                      expected: str) -> None:
    tokens = "6000" if expected == "cancelled" else "800"
    process, url = await start(tmp_path, HMT_LIMITS_SHUTDOWN_GRACE_S=grace, HMT_GENERATION_MAX_NEW_TOKENS=tokens)
    try:
        async with aiohttp.ClientSession() as http:
            body = {"text": LONG_TEXT, "source": "en", "target": "fr"}
            sse_session = await (await http.post(f"{url}/api/sessions", json=body)).json()
            started = asyncio.Event()
            reader = asyncio.create_task(sse_events(http, url + sse_session["events_url"], started))
            ws = await http.ws_connect(f"{url}/ws")
            assert json.loads((await ws.receive()).data)["type"] == "hello"
            await ws.send_json({"type": "translate", **body, "text": "Please stop me in the middle"})
            # Read the socket all along, as a browser does: a client that stops reading stops answering the
            # server's pings too, and is rightly dropped.
            ws_reader = asyncio.create_task(ws_messages(ws))
            await asyncio.wait_for(started.wait(), 30)
            process.send_signal(signal.SIGTERM)

            events = await asyncio.wait_for(reader, 120)
            assert events[-1]["type"] == expected
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            ws_types = await asyncio.wait_for(ws_reader, 120)
            assert ws_types[-1] in ("done", "cancelled") and ws.close_code == 1001
            if expected == "done":
                assert ws_types[-1] == "done"
            with pytest.raises(aiohttp.ClientConnectionError):
                await http.get(f"{url}/api/health")
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = (await process.stdout.read()).decode() if process.stdout else ""
    assert "Traceback" not in output, output
