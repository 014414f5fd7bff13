import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from hmt_stream.request import TranslationRequest
from hmt_stream.session import TranslationSession
from hmt_stream.transports.sse import PROBE_LIFETIME_S

from .conftest import MakeClient, create, parse_sse, translator_of

SSE = {"Accept": "text/event-stream"}


def finished_session(client: TestClient[Any, Any]) -> TranslationSession:
    session = TranslationSession(TranslationRequest("hi", "en", "fr"), session_id="s1")
    translator_of(client).store.add(session)
    session.append("started")
    session.append("delta", text="Bon")
    session.append("delta", text="jour ✓")
    session.append("done", text="Bonjour ✓", cached=False, tokens=3, ttft_ms=1.5, elapsed_ms=4.0)
    return session


async def test_the_exact_bytes_on_the_wire(client: TestClient[Any, Any]) -> None:
    finished_session(client)
    response = await client.get("/api/sessions/s1/events", headers=SSE)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache, no-transform"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in response.headers
    assert await response.read() == (
        'id: 1\r\nevent: started\r\ndata: {"session":"s1","seq":1,"type":"started"}\r\n\r\n'
        'id: 2\r\nevent: delta\r\ndata: {"session":"s1","seq":2,"type":"delta","text":"Bon"}\r\n\r\n'
        'id: 3\r\nevent: delta\r\ndata: {"session":"s1","seq":3,"type":"delta","text":"jour ✓"}\r\n\r\n'
        'id: 4\r\nevent: done\r\ndata: {"session":"s1","seq":4,"type":"done","text":"Bonjour ✓","cached":false,'
        '"tokens":3,"ttft_ms":1.5,"elapsed_ms":4.0}\r\n\r\n'
    ).encode()


async def test_resume_from_last_event_id_or_after(client: TestClient[Any, Any]) -> None:
    finished_session(client)
    by_header = await client.get("/api/sessions/s1/events", headers={**SSE, "Last-Event-ID": "2"})
    assert [e["seq"] for e in parse_sse(await by_header.text())] == [3, 4]
    by_query = await client.get("/api/sessions/s1/events?after=3", headers=SSE)
    assert [e["seq"] for e in parse_sse(await by_query.text())] == [4]
    # EventSource's reconnect keeps the first URL's ?after and adds Last-Event-ID, which is newer.
    both = await client.get("/api/sessions/s1/events?after=1", headers={**SSE, "Last-Event-ID": "3"})
    assert [e["seq"] for e in parse_sse(await both.text())] == [4]


async def test_a_resume_point_that_is_no_integer_is_a_bad_request_that_says_so(
        client: TestClient[Any, Any]) -> None:
    finished_session(client)
    for query, headers in (("?after=x", SSE), ("", {**SSE, "Last-Event-ID": "x"})):
        response = await client.get(f"/api/sessions/s1/events{query}", headers=headers)
        error = (await response.json())["error"]
        assert response.status == 400 and error["code"] == "bad_request", headers
        assert "must be an integer seq, not 'x'" in error["message"], headers


async def test_an_unknown_session_answers_204_so_eventsource_stops(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/sessions/gone/events", headers=SSE)
    assert response.status == 204 and await response.read() == b""


async def test_a_live_session_streams_exactly_its_log(client: TestClient[Any, Any]) -> None:
    session_id = await create(client)
    response = await client.get(f"/api/sessions/{session_id}/events", headers=SSE)
    events = parse_sse(await response.text())
    session = translator_of(client).store.get(session_id)
    assert session is not None and session.finished
    assert events == [e.as_dict() for e in session.log]
    assert events[-1]["type"] == "done"


async def test_heartbeat_comments_keep_an_idle_stream_alive(make_client: MakeClient) -> None:
    client = await make_client(transports__heartbeat_s=1.0)
    session = TranslationSession(TranslationRequest("hi", "en", "fr"), session_id="idle")
    translator_of(client).store.add(session)
    response = await client.get("/api/sessions/idle/events", headers=SSE)
    chunk = await asyncio.wait_for(response.content.readuntil(b"\r\n\r\n"), 5)
    assert chunk == b": ping\r\n\r\n"
    session.append("cancelled")
    assert parse_sse(await response.text())[-1]["type"] == "cancelled"


async def test_the_negotiation_probe_says_hello_at_once(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/negotiate/sse", headers=SSE)
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.headers["Cache-Control"] == "no-cache, no-transform"  # as a real stream's, for proxies
    first = await asyncio.wait_for(response.content.readuntil(b"\r\n\r\n"), 5)
    assert first == b'event: hello\r\ndata: {"type": "hello", "heartbeat_s": 15.0}\r\n\r\n'
    response.close()


async def test_the_negotiation_probe_sends_heartbeats_after_its_hello(make_client: MakeClient) -> None:
    # A proxy that buffers until a response ends, or drops a silent one, must see pings, like on a real stream.
    client = await make_client(transports__heartbeat_s=1.0)
    response = await client.get("/api/negotiate/sse", headers=SSE)
    frames = []
    while frame := await asyncio.wait_for(response.content.readuntil(b"\r\n\r\n"), PROBE_LIFETIME_S + 10):
        frames.append(frame)
        if frame == b": ping\r\n\r\n":
            break
    assert frames[0].startswith(b"event: hello\r\n")
    assert frames[-1] == b": ping\r\n\r\n", "the probe ended without a ping"  # it lives PROBE_LIFETIME_S
    response.close()
