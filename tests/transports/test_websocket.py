import asyncio
import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from hmt_stream.request import TranslationRequest
from hmt_stream.session import TranslationSession

from .conftest import MakeClient, translator_of


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 30) -> dict[str, Any]:
    """The next application message, skipping the server's heartbeat pings."""
    while True:
        message = await asyncio.wait_for(ws.receive(), timeout)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        data: dict[str, Any] = json.loads(message.data)
        if data["type"] != "ping":
            return data


async def until_terminal(ws: aiohttp.ClientWebSocketResponse, session: str | None = None) -> list[dict[str, Any]]:
    events = []
    while True:
        event = await receive(ws)
        if session is None or event.get("session") == session:
            events.append(event)
            if event["type"] in ("done", "error", "cancelled"):
                return events


async def connect(client: TestClient[Any, Any]) -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect("/ws")
    assert await receive(ws) == {"type": "hello", "heartbeat_s": 15.0}
    return ws


async def test_translate_streams_exactly_the_session_log_and_echoes_ref(client: TestClient[Any, Any]) -> None:
    ws = await connect(client)
    await ws.send_json({"type": "translate", "text": "Over the socket", "source": "en", "target": "de",
                        "ref": "r-1"})
    events = await until_terminal(ws)
    assert events[0]["ref"] == "r-1" and all("ref" not in e for e in events[1:])
    session = translator_of(client).store.get(events[0]["session"])
    assert session is not None
    assert [{k: v for k, v in e.items() if k != "ref"} for e in events] == [e.as_dict() for e in session.log]
    await ws.close()


async def test_three_sessions_interleave_on_one_socket(client: TestClient[Any, Any]) -> None:
    ws = await connect(client)
    for i in range(3):
        await ws.send_json({"type": "translate", "text": f"Parallel number {i}", "target": "fr", "ref": f"r{i}"})
    by_session: dict[str, list[dict[str, Any]]] = {}
    refs = {}
    while len([s for s, evs in by_session.items() if evs[-1]["type"] == "done"]) < 3:
        event = await receive(ws)
        by_session.setdefault(event["session"], []).append(event)
        if "ref" in event:
            refs[event["ref"]] = event["session"]
    assert sorted(refs) == ["r0", "r1", "r2"] and len(by_session) == 3
    for session_id, events in by_session.items():
        session = translator_of(client).store.get(session_id)
        assert session is not None
        assert [e["seq"] for e in events] == list(range(1, session.last_seq + 1))
        assert "".join(e.get("text", "") for e in events if e["type"] == "delta") == events[-1]["text"]
    await ws.close()


async def test_malformed_frames_get_an_error_and_the_socket_stays_open(client: TestClient[Any, Any]) -> None:
    ws = await connect(client)
    cases = [
        ("{oops", "bad_request"),
        ('"just a string"', "bad_request"),
        ('{"type": "fly"}', "bad_request"),
        ('{"type": "translate", "text": "", "target": "en", "ref": "e1"}', "bad_request"),
        ('{"type": "translate", "text": "x", "target": "xx", "ref": "e2"}', "unsupported_language"),
        ('{"type": "cancel", "session": "nope"}', "not_found"),
        ('{"type": "resume", "session": "nope", "after": 0}', "not_found"),
    ]
    for raw, code in cases:
        await ws.send_str(raw)
        error = await receive(ws)
        assert error["type"] == "error" and error["code"] == code, raw
        assert error["message"]
        if '"ref"' in raw:
            assert error["ref"] == json.loads(raw)["ref"]
    await ws.send_bytes(b"\x00\x01")
    assert (await receive(ws))["code"] == "bad_request"
    await ws.send_json({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}
    assert not ws.closed
    await ws.close()


async def test_cancel_by_message(make_client: MakeClient) -> None:
    client = await make_client(generation__max_new_tokens=400)
    ws = await connect(client)
    await ws.send_json({"type": "translate", "text": "Cancel me over the socket", "target": "ko", "ref": "c"})
    first = await receive(ws)
    await ws.send_json({"type": "cancel", "session": first["session"]})
    events = await until_terminal(ws, first["session"])
    assert events[-1]["type"] == "cancelled"
    session = translator_of(client).store.get(first["session"])
    assert session is not None and session.state == "cancelled"
    await ws.close()


async def test_resume_replays_after_a_seq(client: TestClient[Any, Any]) -> None:
    session = TranslationSession(TranslationRequest("hi", "en", "fr"), session_id="w1")
    translator_of(client).store.add(session)
    for text in ("a", "b", "c"):
        session.append("delta", text=text)
    session.append("done", text="abc", cached=False, tokens=3, ttft_ms=1.0, elapsed_ms=2.0)
    ws = await connect(client)
    await ws.send_json({"type": "resume", "session": "w1", "after": 2})
    assert [e["seq"] for e in await until_terminal(ws)] == [3, 4]
    await ws.close()


async def test_overload_is_an_error_message_with_retry_after(make_client: MakeClient) -> None:
    client = await make_client(scheduler__max_concurrent=1, scheduler__max_queue=0, generation__max_new_tokens=300,
                               cache__enabled=False)
    ws = await connect(client)
    await ws.send_json({"type": "translate", "text": "takes the slot", "target": "fr", "ref": "a"})
    await ws.send_json({"type": "translate", "text": "no room", "target": "fr", "ref": "b"})
    while True:
        message = await receive(ws)
        if message["type"] == "error":
            break
    assert message["code"] == "overloaded" and message["ref"] == "b" and message["retry_after"] >= 1
    await ws.close()


async def test_the_app_level_heartbeat(make_client: MakeClient) -> None:
    client = await make_client(transports__heartbeat_s=1.0)
    ws = await client.ws_connect("/ws")
    assert json.loads((await ws.receive()).data)["type"] == "hello"
    message = await asyncio.wait_for(ws.receive(), 5)
    assert json.loads(message.data) == {"type": "ping"}
    await ws.close()


async def test_frames_are_not_compressed_even_when_the_client_offers_deflate(client: TestClient[Any, Any]) -> None:
    # Token frames are tiny: deflate would cost CPU and a compressor's memory per socket and save nothing.
    ws = await client.ws_connect("/ws", compress=15)  # offers permessage-deflate
    assert ws.compress == 0  # what the server agreed to: no extension
    assert (await receive(ws))["type"] == "hello"
    await ws.close()


async def test_resume_defaults_to_the_whole_log_and_refuses_a_seq_that_is_not_an_integer(
        client: TestClient[Any, Any]) -> None:
    session = TranslationSession(TranslationRequest("hi", "en", "fr"), session_id="w2")
    translator_of(client).store.add(session)
    session.append("delta", text="a")
    session.append("done", text="a", cached=False, tokens=1, ttft_ms=1.0, elapsed_ms=2.0)
    ws = await connect(client)
    await ws.send_json({"type": "resume", "session": "w2"})
    assert [e["seq"] for e in await until_terminal(ws)] == [1, 2]
    for after in ("1", True, 1.5, None):
        await ws.send_json({"type": "resume", "session": "w2", "after": after})
        error = await receive(ws)
        assert (error["type"], error["code"], error["session"]) == ("error", "bad_request", "w2"), after
    await ws.close()


async def test_resuming_a_session_again_on_the_same_socket_replaces_the_first_follower(
        client: TestClient[Any, Any]) -> None:
    session = TranslationSession(TranslationRequest("hi", "en", "fr"), session_id="w3")
    translator_of(client).store.add(session)
    session.append("started")
    ws = await connect(client)
    for _ in range(2):
        await ws.send_json({"type": "resume", "session": "w3", "after": 0})
        assert (await receive(ws))["seq"] == 1
    session.append("delta", text="once")
    session.append("done", text="once", cached=False, tokens=1, ttft_ms=1.0, elapsed_ms=2.0)
    assert [e["seq"] for e in await until_terminal(ws)] == [2, 3]
    await ws.send_json({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}  # and no second copy of 2 and 3 before it
    await ws.close()


async def test_pongs_are_taken_silently_and_errors_name_the_session(client: TestClient[Any, Any]) -> None:
    ws = await connect(client)
    await ws.send_json({"type": "pong"})
    await ws.send_json({"type": "cancel", "session": "nope"})
    error = await receive(ws)  # the first answer: the pong before it got none
    assert (error["type"], error["code"], error["session"]) == ("error", "not_found", "nope") and error["message"]
    await ws.close()


async def test_sessions_started_over_the_socket_belong_to_its_key(make_client: MakeClient) -> None:
    keys = ("a-first-key-long-enough-for-any-rule", "a-second-key-long-enough-for-any-rule")
    client = await make_client(auth__enabled=True, auth__api_keys=keys)
    mine, theirs = ({"Authorization": f"Bearer {key}"} for key in keys)
    async with client.ws_connect("/ws", headers=mine) as ws:
        assert (await receive(ws))["type"] == "hello"
        await ws.send_json({"type": "translate", "text": "Mine", "target": "fr", "ref": "m"})
        events = await until_terminal(ws)
        session_id = events[0]["session"]
        await ws.send_json({"type": "resume", "session": session_id, "after": 0})  # its owner may resume it
        assert [e["seq"] for e in await until_terminal(ws)] == [e["seq"] for e in events]
    assert (await client.get(f"/api/sessions/{session_id}", headers=theirs)).status == 404
    assert (await client.get(f"/api/sessions/{session_id}", headers=mine)).status == 200


async def test_the_exact_frames_of_the_server_s_own_messages(make_client: MakeClient) -> None:
    client = await make_client(transports__heartbeat_s=1.0)
    ws = await client.ws_connect("/ws")
    assert (await ws.receive()).data == '{"type":"hello","heartbeat_s":1.0}'
    assert (await asyncio.wait_for(ws.receive(), 10)).data == '{"type":"ping"}'
    await ws.send_json({"type": "ping"})
    while (message := await asyncio.wait_for(ws.receive(), 10)).data == '{"type":"ping"}':
        pass
    assert message.data == '{"type":"pong"}'
    await ws.close()
