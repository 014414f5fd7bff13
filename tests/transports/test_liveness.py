"""Idle sockets close, slow readers are dropped without stalling anyone, and their sessions survive for resume.

The slow-reader tests use the ScriptedEngine (not a model) for fault injection: megabytes of tokens at once.
"""

import asyncio
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from hmt_stream.app import create_app
from hmt_stream.engine.scripted import Script, ScriptedEngine
from hmt_stream.transports.websocket import CONNECTIONS

from ..conftest import make_settings
from .conftest import LONG, MakeClient, create, translator_of
from .readers import read_poll

ScriptedClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def scripted_client(aiohttp_client: Any, demo_dir: Path) -> ScriptedClient:
    async def make(script: Script, **overrides: Any) -> TestClient[Any, Any]:
        settings = make_settings(demo_dir, cache__enabled=False, generation__max_new_tokens=100000, **overrides)
        client: TestClient[Any, Any] = await aiohttp_client(create_app(settings, engine=ScriptedEngine(script)))
        return client
    return make


async def test_an_idle_websocket_is_closed_but_not_while_it_follows_a_session(make_client: MakeClient) -> None:
    # The real engine: a greedy translation on the demo model that runs far longer than we wait here.
    client = await make_client(**{**LONG, "generation__max_new_tokens": 3000}, limits__ws_idle_timeout_s=1.0)
    async with client.ws_connect("/ws") as ws:
        assert json.loads((await ws.receive()).data)["type"] == "hello"
        await ws.send_json({"type": "translate", "text": "Hello there, how are you?", "target": "fr", "ref": "r"})
        session_id = json.loads((await ws.receive()).data)["session"]
        # Twice the idle limit with nothing sent by the client: the socket stays, it follows a running session.
        deadline = asyncio.get_running_loop().time() + 2.0
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            with contextlib.suppress(TimeoutError):
                message = await asyncio.wait_for(ws.receive(), left)
                assert message.type == aiohttp.WSMsgType.TEXT, message
        session = translator_of(client).store.get(session_id)
        assert session is not None and session.state == "running"  # (else the wait proved nothing)
        await ws.send_json({"type": "cancel", "session": session_id})
        while json.loads((await asyncio.wait_for(ws.receive(), 30)).data)["type"] != "cancelled":
            pass
        # Now idle for real: closed as going away.
        closing = await asyncio.wait_for(ws.receive(), 10)
        while closing.type == aiohttp.WSMsgType.TEXT:
            assert json.loads(closing.data)["type"] in ("ping", "delta"), closing
            closing = await asyncio.wait_for(ws.receive(), 10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1001


async def wait_readers(client: TestClient[Any, Any], session_id: str, count: int, timeout: float = 30) -> None:
    session = translator_of(client).store.get(session_id)
    assert session is not None
    deadline = asyncio.get_running_loop().time() + timeout
    while session.readers != count:
        assert asyncio.get_running_loop().time() < deadline, f"readers stayed at {session.readers}"
        await asyncio.sleep(0.05)


# About 8 MB of deltas, as fast as the loop can emit them: more than the kernel's socket buffers can hold.
BIG = Script(tokens=8000, text="x" * 1000 + " ")


async def test_a_stalled_sse_reader_is_dropped_and_its_session_survives(scripted_client: ScriptedClient) -> None:
    client = await scripted_client(BIG, limits__slow_reader_timeout_s=0.5)
    session_id = await create(client, "big")
    # A reader that sends its request and then never reads a byte (a tiny receive window fills at once).
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", client.port))
    stalled.sendall(f"GET /api/sessions/{session_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Accept: text/event-stream\r\n\r\n".encode())
    try:
        await wait_readers(client, session_id, 1)
        # Meanwhile a healthy reader gets everything, from the start, while the stalled one is stuck.
        events = await asyncio.wait_for(read_poll(client, session_id, 0, None), 60)
        await wait_readers(client, session_id, 0)  # the stalled reader was dropped
        session = translator_of(client).store.get(session_id)
        assert session is not None and session.state == "done"
        assert events == [e.as_dict() for e in session.log]
        # What the stalled reader can still read is cut short: the server aborted it, not finished it.
        stalled.setblocking(False)
        received = await asyncio.wait_for(_drain(stalled), 30)
        assert b"event: done" not in received
        print(f"stalled SSE reader got {len(received)} bytes before the drop")
    finally:
        stalled.close()


async def _drain(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    chunks = []
    try:
        while chunk := await loop.sock_recv(sock, 1 << 16):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


async def test_a_websocket_that_stops_reading_is_dropped_and_the_session_resumes(
        scripted_client: ScriptedClient) -> None:
    client = await scripted_client(BIG, limits__slow_reader_timeout_s=0.5)
    ws = await client.ws_connect("/ws")
    assert json.loads((await ws.receive()).data)["type"] == "hello"
    await ws.send_json({"type": "translate", "text": "big", "target": "fr", "ref": "slow"})
    while (first := json.loads((await ws.receive()).data))["type"] == "ping":
        pass  # a loaded machine may take a heartbeat's time to start the session
    session_id = first["session"]
    # Stop reading: aiohttp's client stops taking data once its queue is full, and the server's writes stall.
    await wait_readers(client, session_id, 0)
    session = translator_of(client).store.get(session_id)
    assert session is not None
    events = await asyncio.wait_for(read_poll(client, session_id, 0, None), 60)
    assert session.state == "done" and events == [e.as_dict() for e in session.log]
    # Dropped means its connection was cut (so its handler ended), not only that nothing more is written to it.
    assert client.app is not None
    connections = client.app[CONNECTIONS]
    for _ in range(600):
        if not connections:
            break
        await asyncio.sleep(0.05)
    assert not connections
    # The stalled socket holds only part of the session, then the end of the connection.
    got = 1
    while (message := await asyncio.wait_for(ws.receive(), 30)).type == aiohttp.WSMsgType.TEXT:
        got += 1
        assert json.loads(message.data)["type"] != "done"
    print(f"stalled WebSocket got {got} of {session.last_seq} events before the drop")
    assert got < session.last_seq


async def test_a_client_that_answers_no_protocol_ping_is_dropped(make_client: MakeClient) -> None:
    # A peer that vanished without a FIN (a dead network path) answers no WebSocket ping: aiohttp's heartbeat
    # closes it after half a heartbeat. (The app-level pings only show the page that the server is alive.)
    client = await make_client(transports__heartbeat_s=1.0)
    ws = await client.ws_connect("/ws", autoping=False)
    async with asyncio.timeout(30):  # the app-level pings alone would keep this loop going for ever
        while (message := await ws.receive()).type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.PING):
            pass  # read everything, answer nothing
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING), message
    await ws.close()
