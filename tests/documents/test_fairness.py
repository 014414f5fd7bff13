"""Scheduling a document's segments: concurrent, yet no starving of others (counted, never timed).

The document test uses the ScriptedEngine (NOT a model: scripted tokens, for scheduling and fault injection), so
that 300 segments cost milliseconds; the same path runs with the real engine in test_streaming.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hmt_stream.app import build_translator
from hmt_stream.chat import ChatRequest
from hmt_stream.engine import ChatPrompt
from hmt_stream.engine.scripted import Script, ScriptedEngine
from hmt_stream.errors import HmtError
from hmt_stream.request import TranslationRequest
from hmt_stream.scheduler import Scheduler

from ..conftest import make_settings
from ..test_translator import collect


@pytest.mark.parametrize(("slots", "chat"), [(1, False), (4, False), (1, True)])
async def test_a_sentence_behind_a_300_segment_document_waits_for_about_one_segment(demo_dir: Path, slots: int,
                                                                                      chat: bool) -> None:
    engine = ScriptedEngine(Script(tokens=3, rate=300.0), directives=False)
    translator = build_translator(make_settings(demo_dir, scheduler__max_concurrent=slots,
                                                limits__chars_per_minute=0), engine)
    document = "\n".join(f"Paragraph {n} of the long document." for n in range(300))
    doc = translator.submit(TranslationRequest(document, "en", "fr"))
    async for event in doc.events():
        if event.type == "progress" and event.data["done"] == 20:
            break
    started_before = engine.started
    # A chat completion (the OpenAI API's) takes the same lanes as a translation.
    single = translator.submit(ChatRequest(ChatPrompt.user("A lonely sentence.")) if chat
                               else TranslationRequest("A lonely sentence.", "en", "fr"))
    log = await asyncio.wait_for(collect(single.events()), 60)
    assert log[-1].type == "done"
    prompts = list(engine.prompts)
    mine = next(i for i, prompt in enumerate(prompts) if "A lonely sentence." in prompt)
    # Document segments that started after the sentence arrived and before it did: at most those whose slots were
    # granted before it came but whose generation had not begun yet, one per slot (on a loaded machine the tasks of
    # all `slots` may still be on their way). The scheduler's choice itself is pinned by the test below.
    assert mine - started_before <= slots
    assert [e.type for e in log if e.type == "queued"] == ["queued"] * len([e for e in log if e.type == "queued"])
    doc_log = await asyncio.wait_for(collect(doc.events()), 60)
    assert doc_log[-1].type == "done" and doc_log[-1].data["segments"] == 300
    assert not [e for e in doc_log if e.type == "queued" and e.seq > doc_log[0].seq + 1]
    await translator.close()


async def test_lanes_share_slots_and_report_positions_per_session() -> None:
    scheduler = Scheduler(max_concurrent=2, max_queue=2)
    reports: dict[str, list[int]] = {"doc": [], "a": [], "b": []}
    doc = scheduler.lane(reports["doc"].append)
    tickets = [doc.admit() for _ in range(5)]
    assert [t.granted.done() for t in tickets] == [True, True, False, False, False]
    assert reports["doc"] == []  # a started document is no longer in line
    a = scheduler.admit(reports["a"].append)
    b = scheduler.admit(reports["b"].append)
    assert (reports["a"], reports["b"]) == ([1], [2])
    # Queue events stay one per session whose place changed, however many segments wait.
    tickets[0].release()
    assert a.granted.done() and not b.granted.done() and reports["b"] == [2, 1]
    tickets[1].release()
    assert b.granted.done() and not tickets[2].granted.done()
    a.release()
    assert tickets[2].granted.done()
    # The line holds two sessions that have not started; a started document does not count.
    later = [scheduler.admit(lambda position: None) for _ in range(2)]
    with pytest.raises(HmtError, match="busy"):
        scheduler.admit(lambda position: None)
    doc.close()  # its two waiting segments leave the line
    assert scheduler.queued == 2
    for ticket in (b, tickets[2], *later):
        ticket.release()
    assert scheduler.running == 0 and scheduler.queued == 0 and not scheduler._lanes


async def test_two_documents_take_turns(demo_dir: Path) -> None:
    engine = ScriptedEngine(Script(tokens=2), directives=False)
    translator = build_translator(make_settings(demo_dir, scheduler__max_concurrent=1,
                                                limits__chars_per_minute=0), engine)
    first = translator.submit(TranslationRequest("\n".join(f"First {n}." for n in range(10)), "en", "fr"))
    second = translator.submit(TranslationRequest("\n".join(f"Second {n}." for n in range(10)), "en", "fr"))
    await asyncio.gather(collect(first.events()), collect(second.events()))
    order = ["F" if "First" in prompt else "S" for prompt in engine.prompts]
    assert "".join(order[:6]) in ("FSFSFS", "FFSFSF")
    await translator.close()



async def test_a_long_session_read_by_long_poll_is_not_orphaned(demo_dir: Path) -> None:
    # Events are always waiting when the poll comes back, so the reader is never seen waiting; each poll must still
    # count as reading, or the session would be cancelled after the grace period.
    engine = ScriptedEngine(Script(tokens=40, rate=40.0), directives=False)
    translator = build_translator(make_settings(demo_dir, session__disconnect_grace_s=0.3), engine)
    session = translator.submit(TranslationRequest("A long read.", "en", "fr"))
    after = 0
    while not session.finished:
        await asyncio.sleep(0.15)
        batch = await session.next_batch(after, timeout=0)
        after = batch[-1].seq if batch else after
    assert session.log[-1].type == "done"
    await translator.close()
