"""Per-client and per-socket caps, the WebSocket message budget and idle rule, the body deadline, and JSON that
would crash a naive decoder."""

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from .conftest import LONG, MakeClient, create
from .test_guard import AUTH, BODY, KEYS, bearer


async def hello(ws: aiohttp.ClientWebSocketResponse) -> None:
    assert json.loads((await ws.receive()).data)["type"] == "hello"


async def next_answer(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next message that is not the server's heartbeat."""
    while True:
        message = await asyncio.wait_for(ws.receive(), 30)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        data: dict[str, Any] = json.loads(message.data)
        if data["type"] != "ping":
            return data


async def metric(client: TestClient[Any, Any], line: str) -> float:
    for row in (await (await client.get("/metrics")).text()).splitlines():
        if row.startswith(line + " "):
            return float(row.split()[-1])
    return 0.0


async def test_one_client_holds_at_most_its_cap_of_websockets(make_client: MakeClient) -> None:
    client = await make_client(**AUTH, limits__max_websockets_per_client=2)
    first = await client.ws_connect("/ws", headers=bearer(KEYS[0]))
    second = await client.ws_connect("/ws", headers=bearer(KEYS[0]))
    try:
        await client.ws_connect("/ws", headers=bearer(KEYS[0]))
        raise AssertionError("a third socket was accepted")
    except aiohttp.WSServerHandshakeError as refused:
        assert refused.status == 429
    third = await client.get("/ws", headers={**bearer(KEYS[0]), "Connection": "Upgrade", "Upgrade": "websocket",
                                             "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "x" * 22 + "=="})
    assert third.status == 429 and (await third.json())["error"]["code"] == "too_many_streams"
    other = await client.ws_connect("/ws", headers=bearer(KEYS[1]))  # another key has its own cap
    await first.close()
    await asyncio.sleep(0.1)
    again = await client.ws_connect("/ws", headers=bearer(KEYS[0]))  # a freed place is taken again
    for ws in (second, other, again):
        await ws.close()


async def test_one_client_holds_at_most_its_cap_of_event_streams(make_client: MakeClient) -> None:
    client = await make_client(**LONG, limits__max_readers_per_client=2)
    session = await create(client)
    url = f"/api/sessions/{session}/events"
    streams = [await client.get(url, headers={"Accept": "text/event-stream"}) for _ in range(2)]
    assert all(stream.status == 200 for stream in streams)
    for refused in (await client.get(url, headers={"Accept": "text/event-stream"}),
                    await client.get(f"{url}?after=100000&timeout=5")):  # a waiting long-poll is a stream too
        assert refused.status == 429 and (await refused.json())["error"]["code"] == "too_many_streams"
    streams[0].close()
    await asyncio.sleep(0.1)
    assert (await client.get(f"{url}?after=0&timeout=0")).status == 200
    streams[1].close()


async def test_one_socket_follows_at_most_its_cap_of_sessions(make_client: MakeClient) -> None:
    client = await make_client(**LONG, limits__max_follows_per_socket=1)
    async with client.ws_connect("/ws") as ws:
        await hello(ws)
        await ws.send_json({"type": "translate", **BODY, "text": "Hello there, how are you?", "ref": "a"})
        assert (await next_answer(ws))["ref"] == "a"
        await ws.send_json({"type": "translate", **BODY, "ref": "b"})
        while (answer := await next_answer(ws)).get("ref") != "b":
            pass
        assert answer["type"] == "error" and answer["code"] == "too_many_streams"
        await ws.send_json({"type": "ping"})
        while (await next_answer(ws))["type"] != "pong":
            pass


async def test_a_socket_that_floods_messages_is_closed(make_client: MakeClient) -> None:
    client = await make_client(limits__ws_messages_per_s=5.0)
    async with client.ws_connect("/ws") as ws:
        await hello(ws)
        for _ in range(200):
            await ws.send_json({"type": "ping"})
        while (message := await asyncio.wait_for(ws.receive(), 10)).type == aiohttp.WSMsgType.TEXT:
            pass
        assert ws.close_code == 1008 and message.extra == "too many messages"
    assert await metric(client, 'hmt_refusals_total{reason="websocket_message_rate"}') == 1
    # Everyone else is still served.
    assert (await client.post("/api/translate", json=BODY)).status == 200


async def test_app_pings_do_not_keep_an_idle_socket_open(make_client: MakeClient) -> None:
    client = await make_client(limits__ws_idle_timeout_s=1.0)
    async with client.ws_connect("/ws") as ws:
        await hello(ws)

        async def keep_pinging() -> None:
            while not ws.closed:
                await ws.send_json({"type": "ping"})
                await asyncio.sleep(0.2)

        pinger = asyncio.create_task(keep_pinging())
        try:
            async with asyncio.timeout(20):
                while (message := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
                    pass
        finally:
            pinger.cancel()
        assert ws.close_code == 1001 and message.extra == "idle"


async def test_deep_json_and_huge_numbers_are_bad_requests(client: TestClient[Any, Any]) -> None:
    bodies = ["[" * 30000 + "]" * 30000, '{"text": "x", "target": "fr", "n": ' + "7" * 5000 + "}",
              '{"text": ' + "[" * 30000 + "]" * 30000 + "}"]
    for body in bodies:
        for path in ("/api/sessions", "/api/translate"):
            response = await client.post(path, data=body, headers={"Content-Type": "application/json"})
            assert response.status == 400 and (await response.json())["error"]["code"] == "bad_request"
    async with client.ws_connect("/ws", max_msg_size=0) as ws:
        await hello(ws)
        for body in bodies:
            await ws.send_str(body)
            answer = await next_answer(ws)
            assert answer["type"] == "error" and answer["code"] == "bad_request"
        await ws.send_json({"type": "ping"})  # the socket is still there
        assert (await next_answer(ws))["type"] == "pong"


async def test_a_body_that_trickles_in_is_cut_off(make_client: MakeClient) -> None:
    client = await make_client(limits__body_timeout_s=0.5)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"te")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)  # read() ends when the server closes the connection
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert (await client.post("/api/translate", json=BODY)).status == 200
