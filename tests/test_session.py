import asyncio
import time

import pytest

from hmt_stream.request import TranslationRequest
from hmt_stream.session import MemorySessionStore, SessionClosed, TranslationSession

REQUEST = TranslationRequest("hi", "en", "fr")


async def test_events_replay_then_follow_live_and_stop_after_the_terminal_event() -> None:
    session = TranslationSession(REQUEST)
    session.append("started")
    reader = asyncio.ensure_future(_collect(session, after=0))
    await asyncio.sleep(0)
    assert session.readers == 1
    session.append("delta", text="Bon")
    session.append("delta", text="jour")
    session.append("done", text="Bonjour", cached=False, tokens=2, ttft_ms=1.0, elapsed_ms=2.0)
    events = await reader
    assert [(e.seq, e.type) for e in events] == [(1, "started"), (2, "delta"), (3, "delta"), (4, "done")]
    assert events[1].as_dict() == {"session": session.id, "seq": 2, "type": "delta", "text": "Bon"}
    assert events[1].json == f'{{"session":"{session.id}","seq":2,"type":"delta","text":"Bon"}}'
    assert session.readers == 0 and session.state == "done" and session.text == "Bonjour"
    assert await _collect(session, after=3) == events[3:]
    assert await _collect(session, after=4) == []


async def test_cancelling_a_session_nothing_generates_for_ends_it_at_once() -> None:
    session = TranslationSession(REQUEST)
    assert session.cancel()
    assert [(e.seq, e.type) for e in session.log] == [(1, "cancelled")] and session.state == "cancelled"
    assert session.finished and not session.cancel()


async def test_nothing_is_appended_after_the_terminal_event() -> None:
    session = TranslationSession(REQUEST)
    session.append("cancelled")
    with pytest.raises(SessionClosed):
        session.append("delta", text="late")
    assert not session.cancel()


async def test_ids_are_unguessable_and_distinct() -> None:
    ids = {TranslationSession(REQUEST).id for _ in range(100)}
    assert len(ids) == 100 and all(len(i) >= 24 for i in ids)


async def test_the_store_evicts_a_finished_session_after_retention() -> None:
    store = MemorySessionStore(retention_s=1.0)
    session = TranslationSession(REQUEST)
    store.add(session)
    await asyncio.sleep(1.2)
    assert store.get(session.id) is session  # still running: never evicted
    session.append("done", text="", cached=False, tokens=0, ttft_ms=0.0, elapsed_ms=0.0)
    finished = time.monotonic()
    await asyncio.sleep(0.25)  # a quarter of the retention: still there for late readers and resumes
    assert store.get(session.id) is session
    while store.get(session.id) is not None:
        await asyncio.sleep(0.05)
    assert time.monotonic() - finished > 0.9 and len(store) == 0  # (not before its time; no upper bound)
    assert store._timers == {}  # nothing kept for it


async def _collect(session: TranslationSession, after: int) -> list:  # type: ignore[type-arg]
    return [event async for event in session.events(after=after)]


async def test_a_long_poll_of_less_than_a_second_still_waits_for_the_next_event() -> None:
    session = TranslationSession(REQUEST)
    asyncio.get_running_loop().call_later(0.05, session.append, "started")
    batch = await session.next_batch(0, 0.5)
    assert [(e.seq, e.type) for e in batch] == [(1, "started")]
