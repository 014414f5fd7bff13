import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from hmt_stream.request import TranslationRequest
from hmt_stream.session import TranslationSession

from .conftest import MakeClient, create, translator_of
from .readers import read_poll


async def test_the_exact_json(client: TestClient[Any, Any]) -> None:
    session = TranslationSession(TranslationRequest("hi", "en", "fr"), session_id="p1")
    translator_of(client).store.add(session)
    session.append("started")
    session.append("delta", text="Salut")
    response = await client.get("/api/sessions/p1/events?after=0")
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Cache-Control"] == "no-store"
    assert await response.read() == (
        b'{"events":[{"session":"p1","seq":1,"type":"started"},'
        b'{"session":"p1","seq":2,"type":"delta","text":"Salut"}],"next":2,"done":false}')
    session.append("done", text="Salut", cached=True, tokens=0, ttft_ms=0.0, elapsed_ms=0.0)
    last = await (await client.get("/api/sessions/p1/events?after=2")).json()
    assert [e["type"] for e in last["events"]] == ["done"] and last["next"] == 3 and last["done"] is True


async def test_waits_for_the_next_event_or_answers_empty_after_the_timeout(client: TestClient[Any, Any]) -> None:
    session = TranslationSession(TranslationRequest("hi", "en", "fr"), session_id="p2")
    translator_of(client).store.add(session)
    empty = await (await client.get("/api/sessions/p2/events?after=0&timeout=0.2")).json()
    assert empty == {"events": [], "next": 0, "done": False}
    pending = asyncio.ensure_future(client.get("/api/sessions/p2/events?after=0&timeout=10"))
    await asyncio.sleep(0.2)
    assert not pending.done() and session.readers == 1  # a waiting poll counts as a reader
    session.append("started")
    page = await (await pending).json()
    assert [e["seq"] for e in page["events"]] == [1] and page["next"] == 1


async def test_bad_query_values_are_bad_requests(client: TestClient[Any, Any]) -> None:
    session_id = await create(client)
    for query in ("after=x", "timeout=abc", "timeout=-1", "timeout=nan", "after=inf", "timeout=inf"):
        response = await client.get(f"/api/sessions/{session_id}/events?{query}")
        assert response.status == 400, query
        error = (await response.json())["error"]
        name, value = query.split("=")
        assert error["code"] == "bad_request" and f"{name!r}" in error["message"] and value in error["message"]


async def test_the_timeout_is_capped(make_client: MakeClient) -> None:
    client = await make_client(transports__poll_timeout_max_s=0.3)
    session = TranslationSession(TranslationRequest("hi", "en", "fr"), session_id="p3")
    translator_of(client).store.add(session)
    page = await asyncio.wait_for(client.get("/api/sessions/p3/events?timeout=3600"), 5)
    assert (await page.json())["events"] == []


async def test_polling_a_live_session_yields_exactly_its_log(client: TestClient[Any, Any]) -> None:
    session_id = await create(client)
    events = await read_poll(client, session_id, 0, None)
    session = translator_of(client).store.get(session_id)
    assert session is not None
    assert events == [e.as_dict() for e in session.log]


async def test_without_a_timeout_a_poll_waits_poll_timeout_s(make_client: MakeClient) -> None:
    client = await make_client(transports__poll_timeout_s=5.0, transports__poll_timeout_max_s=30.0)
    session = TranslationSession(TranslationRequest("hi", "en", "fr"), session_id="p4")
    translator_of(client).store.add(session)
    pending = asyncio.ensure_future(client.get("/api/sessions/p4/events?after=0"))
    while session.readers == 0:  # it waits, as a reader (it would answer at once with no wait)
        assert not pending.done(), await (await pending).json()
        await asyncio.sleep(0.01)
    session.append("started")
    assert [e["seq"] for e in (await (await pending).json())["events"]] == [1]
    short = await make_client(transports__poll_timeout_s=0.2, transports__poll_timeout_max_s=30.0)
    translator_of(short).store.add(TranslationSession(TranslationRequest("hi", "en", "fr"), session_id="p5"))
    # It gives up after poll_timeout_s, well before the longest wait a client may ask for.
    page = await asyncio.wait_for(short.get("/api/sessions/p5/events?after=0"), 10)
    assert await page.json() == {"events": [], "next": 0, "done": False}


async def test_events_already_there_are_answered_at_once_and_each_waiting_poll_is_a_reader(
        client: TestClient[Any, Any]) -> None:
    session = TranslationSession(TranslationRequest("hi", "en", "fr"), session_id="p6")
    translator_of(client).store.add(session)
    session.append("started")
    page = await asyncio.wait_for(client.get("/api/sessions/p6/events?after=0&timeout=30"), 10)
    assert [e["seq"] for e in (await page.json())["events"]] == [1]  # no wait for a next event
    waiting = [asyncio.ensure_future(client.get(f"/api/sessions/p6/events?after=1&timeout={t}")) for t in (0.5, 30)]
    while session.readers < 2:
        assert not any(poll.done() for poll in waiting)
        await asyncio.sleep(0.01)
    assert session.readers == 2  # a short timeout (under a second) waits too
    session.append("delta", text="x")
    for poll in waiting:
        assert [e["seq"] for e in (await (await poll).json())["events"]] == [2]


async def test_without_after_a_poll_starts_at_the_beginning(client: TestClient[Any, Any]) -> None:
    session = TranslationSession(TranslationRequest("hi", "en", "fr"), session_id="p7")
    translator_of(client).store.add(session)
    session.append("started")
    page = await (await client.get("/api/sessions/p7/events?timeout=0")).json()
    assert [e["seq"] for e in page["events"]] == [1]
