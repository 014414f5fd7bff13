"""The whole server: SIGTERM with translations in flight (a real process), draining, the page's folder."""

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from limits.errors import ConfigurationError

from hmt_stream.app import WEB_DIRS, build_translator, create_app
from hmt_stream.engine.scripted import Script, ScriptedEngine
from hmt_stream.engine.transformers import LocalEngine

from .conftest import MakeClient, make_settings
from .nginx import free_port
from .transports.conftest import LONG, create, translator_of

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


async def sse_events(http: aiohttp.ClientSession, url: str, events: list[dict[str, Any]],
                     started: asyncio.Event) -> list[dict[str, Any]]:
    """Read a whole SSE stream into events; every frame must be complete (a half-written one would fail to parse)."""
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


async def refused(url: str) -> bool:
    """Whether a new connection to the server is refused (its listening socket is closed)."""
    parts = urlsplit(url)
    try:
        _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    except (ConnectionRefusedError, ConnectionResetError):  # reset: the listener closed while we connected
        return True
    writer.close()
    return False


@pytest.mark.parametrize("grace,expected", [("0.5", "cancelled"), ("600", "done")])
async def test_sigterm_lets_translations_finish_within_the_grace_time(tmp_path: Path, grace: str,
                                                                      expected: str) -> None:
    tokens = "6000" if expected == "cancelled" else "600"
    # Heartbeats every 2 s, so that aiohttp's WebSocket pings fall inside the drain (see the test below).
    process, url = await start(tmp_path, HMT_LIMITS_SHUTDOWN_GRACE_S=grace, HMT_GENERATION_MAX_NEW_TOKENS=tokens,
                               HMT_TRANSPORTS_HEARTBEAT_S="2")
    try:
        async with aiohttp.ClientSession() as http:
            body = {"text": LONG_TEXT, "source": "en", "target": "fr"}
            sse_session = await (await http.post(f"{url}/api/sessions", json=body)).json()
            started = asyncio.Event()
            events: list[dict[str, Any]] = []
            reader = asyncio.create_task(sse_events(http, url + sse_session["events_url"], events, started))
            ws = await http.ws_connect(f"{url}/ws")
            assert json.loads((await ws.receive()).data)["type"] == "hello"
            await ws.send_json({"type": "translate", **body, "text": "Please stop me in the middle"})
            # Read the socket all along, as a browser does: a client that stops reading stops answering the
            # server's pings too, and is rightly dropped.
            ws_reader = asyncio.create_task(ws_messages(ws))
            await asyncio.wait_for(started.wait(), 30)
            process.send_signal(signal.SIGTERM)

            # New connections are refused at once, while the translations still stream.
            for _ in range(200):
                if await refused(url):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the server still accepts connections after SIGTERM")
            seen_when_refused = len(events)

            await asyncio.wait_for(reader, 120)
            assert events[-1]["type"] == expected
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            assert len(events) > seen_when_refused, "the SSE stream had ended before the server stopped listening"
            ws_types = await asyncio.wait_for(ws_reader, 120)
            assert ws_types[-1] == expected and ws.close_code == 1001, (ws_types[-3:], ws.close_code)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = (await process.stdout.read()).decode() if process.stdout else ""
    assert "Traceback" not in output, output


# -- in process: draining, the page's folder, the rate limiter's storage ----------------------------------------

BODY = {"text": "Hello there, how are you?", "source": "en", "target": "fr"}


async def test_a_websocket_gets_its_last_events_when_the_drain_outlasts_a_heartbeat(aiohttp_client: Any,
                                                                                     demo_dir: Path) -> None:
    """Once shutdown starts, aiohttp drops what clients send, their pongs too; its heartbeat once closed such
    sockets (1006) mid-drain. Fault injection: a scripted engine (not a model) whose translation takes 3 s on any
    machine, so the drain spans pings (every second here) and the pong deadlines after them."""
    settings = make_settings(demo_dir, transports__heartbeat_s=1.0, limits__shutdown_grace_s=60)
    client = await aiohttp_client(create_app(settings, engine=ScriptedEngine(Script(tokens=12, rate=4))))
    ws = await client.ws_connect("/ws")
    assert json.loads((await ws.receive()).data)["type"] == "hello"
    await ws.send_json({"type": "translate", **BODY})
    while json.loads((await ws.receive()).data)["type"] != "delta":
        pass
    reader = asyncio.create_task(ws_messages(ws))
    await client.server.close()  # what SIGTERM does: stop listening, drain, close the sockets
    types = await asyncio.wait_for(reader, 30)
    assert types[-1] == "done" and ws.close_code == 1001, (types[-3:], ws.close_code)


async def test_while_draining_new_translations_are_refused_on_every_transport(make_client: MakeClient) -> None:
    client = await make_client(**LONG, session__disconnect_grace_s=600)  # nobody reads the running session
    translator = translator_of(client)
    running = translator.store.get(await create(client))
    assert running is not None
    draining = asyncio.create_task(translator.drain(60))
    await asyncio.sleep(0)
    for path in ("/api/sessions", "/api/translate"):
        response = await client.post(path, json=BODY)
        assert response.status == 503 and int(response.headers["Retry-After"]) >= 1, path
        assert (await response.json())["error"]["code"] == "shutting_down", path
    async with client.ws_connect("/ws") as ws:
        assert json.loads((await ws.receive()).data)["type"] == "hello"
        await ws.send_json({"type": "translate", **BODY, "ref": "late"})
        refused = json.loads((await ws.receive()).data)
        assert (refused["type"], refused["code"], refused["ref"]) == ("error", "shutting_down", "late")
    assert not draining.done() and not running.finished  # the drain waits for what was running
    running.cancel()  # (test_sigterm… lets one finish)
    await asyncio.wait_for(draining, 60)
    assert running.state == "cancelled" and len(translator.store) == 1


async def test_a_one_shot_translation_cut_short_by_shutdown_answers_503(make_client: MakeClient) -> None:
    client = await make_client(**LONG)
    translator = translator_of(client)
    answer = asyncio.ensure_future(client.post("/api/translate", json=BODY))
    while not any(session.state == "running" for session in translator.store.all()):
        await asyncio.sleep(0.01)
    await translator.drain(0)  # no grace: cancelled at once
    response = await asyncio.wait_for(answer, 60)
    assert response.status == 503 and (await response.json())["error"]["code"] == "shutting_down"


async def test_server_web_dir_serves_another_page(make_client: MakeClient, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>ours</title>")
    (tmp_path / "ours.css").write_text("body { color: teal }")
    client = await make_client(server__web_dir=str(tmp_path))
    assert await (await client.get("/")).text() == "<!doctype html><title>ours</title>"
    assert await (await client.get("/static/ours.css")).text() == "body { color: teal }"
    assert (await client.get("/static/app.js")).status == 404  # not the page that comes with hmt-stream


async def test_the_page_and_its_files_need_no_credentials_with_auth_on(make_client: MakeClient) -> None:
    client = await make_client(auth__enabled=True, auth__api_keys=("a-key-long-enough-for-any-rule-0123",))
    for path, name in (("/", "index.html"), ("/static/app.js", "app.js"), ("/static/style.css", "style.css")):
        response = await client.get(path)
        assert response.status == 200 and await response.read() == (WEB_DIRS[1] / name).read_bytes(), path
    assert (await client.post("/api/sessions", json=BODY)).status == 401  # while the API asks for a key


def test_the_rate_limiter_keeps_its_counters_in_the_configured_storage(demo_dir: Path,
                                                                       engine: LocalEngine) -> None:
    # No memcached client library here: the limiter fails to build, which shows it was given this storage.
    with pytest.raises(ConfigurationError, match="pymemcache"):
        build_translator(make_settings(demo_dir, limits__storage="memcached://127.0.0.1:1"), engine)
