"""Documents through the translator with the real engine (demo model: its output is not a translation)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hmt_stream.app import build_translator
from hmt_stream.engine.transformers import LocalEngine
from hmt_stream.request import TranslationRequest
from hmt_stream.session import Event, TranslationSession
from hmt_stream.translator import Translator

from ..conftest import make_settings
from ..test_translator import CountingEngine, collect
from .samples import PROSE, html_page, markdown_document

URL = re.compile(r"https://[^\s)\"<]*[^\s)\"<.,]")


def translator_for(demo_dir: Path, engine: Any, **overrides: Any) -> Translator:
    # A few tokens per segment: the point is the document around them. Four at a time, as a batching engine would.
    base = {"generation__max_new_tokens": 6, "scheduler__max_concurrent": 4, "limits__chars_per_minute": 0}
    return build_translator(make_settings(demo_dir, **{**base, **overrides}), engine)


def check_document(session: TranslationSession, log: list[Event], translator: Translator) -> None:
    """Deltas in document order, every kept stretch (markers, breaks, code) in place, deltas joined = done.text."""
    assert isinstance(session.request, TranslationRequest)
    plan = translator.plan(session.request, dry_run=True)
    started = next(e for e in log if e.type == "started")
    assert started.data["segments"] == len(plan.jobs)
    deltas = [e for e in log if e.type == "delta"]
    order = [e.data["segment"] for e in deltas]
    assert order == sorted(order)
    progress = [e.data["done"] for e in log if e.type == "progress"]
    assert progress == list(range(1, len(plan.jobs) + 1))
    done = log[-1]
    assert done.type == "done" and "".join(e.data["text"] for e in deltas) == done.data["text"] == session.text
    by_segment: dict[int, str] = {}
    for event in deltas:
        by_segment[event.data["segment"]] = by_segment.get(event.data["segment"], "") + event.data["text"]
    for index, kept in enumerate(plan.kept[:-1]):
        assert by_segment.get(index, "").startswith(kept), index
    assert done.data["text"].endswith(plan.kept[-1])
    # Every URL of the document comes back whole (in its place, or after its sentence if the model dropped it).
    assert Counter(URL.findall(done.data["text"])) == Counter(URL.findall(session.request.text))


@pytest.mark.slow
async def test_a_mixed_script_markdown_document_streams_in_order(demo_dir: Path,
                                                                 engine: LocalEngine) -> None:
    translator = translator_for(demo_dir, engine)
    text = markdown_document(20_000)
    assert len(text) >= 20_000
    session = translator.submit(TranslationRequest(text, "en", "fr", format="markdown"))
    log = await asyncio.wait_for(collect(session.events()), 600)
    check_document(session, log, translator)
    out = log[-1].data["text"]
    assert out.startswith("# ") and out.endswith("\n")
    assert out.count("```python\ndef wind(strength=") == text.count("```python\ndef wind(strength=")
    assert out.count("\n\n") >= text.count("\n\n") - text.count("\n\n\n")
    for marker in ("\n- ", "\n  - ", "\n    1. ", "\n> ", "\n|---|---|\n"):
        assert out.count(marker) == text.count(marker), marker
    assert log[-1].data["segments"] > 100 and log[-1].data["segments_cached"] == 0
    await translator.close()


@pytest.mark.slow
async def test_an_html_page_keeps_tags_attributes_and_pre(demo_dir: Path, engine: LocalEngine) -> None:
    translator = translator_for(demo_dir, engine)
    page = html_page(12)
    session = translator.submit(TranslationRequest(page, "en", "de", format="html"))
    log = await asyncio.wait_for(collect(session.events()), 600)
    check_document(session, log, translator)
    out = log[-1].data["text"]
    tags = re.compile(r"<[^>]+>")
    # Every tag with its attributes (inside a sentence, a tag may move with the words it belongs to).
    assert Counter(tags.findall(out)) == Counter(tags.findall(page))
    for number in range(12):
        assert f"<pre>  keep   this  <b>as is</b> {number}\n  and this line</pre>" in out
        assert f"<code>x &lt; {number}</code>" in out
    assert "<script>if (1 < 2) { console.log('not translated'); }</script>" in out
    await translator.close()


async def test_editing_one_paragraph_generates_only_its_segments(demo_dir: Path,
                                                                 engine: LocalEngine) -> None:
    counting = CountingEngine(engine)
    translator = translator_for(demo_dir, counting, model__prompts="hy-mt1.5")
    paragraphs = [f"Paragraph {n}. {PROSE['en']}" for n in range(6)]
    first = TranslationRequest("\n\n".join(paragraphs), "en", "fr", format="markdown")
    before = await translator.translate(first)
    segments = before.log[-1].data["segments"]
    assert len(counting.generations) == segments >= 6
    edited = list(paragraphs)
    edited[3] = "Paragraph 3 was rewritten. The sun shone and the traveller took off his cloak."
    after = await translator.translate(TranslationRequest("\n\n".join(edited), "en", "fr", format="markdown"))
    plan = translator.plan(after.request, dry_run=True)
    changed = [job for job in plan.jobs if "rewritten" in job.segment.text or "took off" in job.segment.text]
    assert len(counting.generations) == segments + len(changed)
    assert after.log[-1].data["segments_cached"] == after.log[-1].data["segments"] - len(changed)
    # The segment after the edit was translated with the old paragraph as its context: its prompt changed, its
    # cache entry did not.
    assert "Paragraph 3 was rewritten" in plan.jobs[plan.jobs.index(changed[-1]) + 1].prompt.text
    await translator.close()


async def test_cancel_stops_every_segment(demo_dir: Path, engine: LocalEngine) -> None:
    counting = CountingEngine(engine)
    translator = translator_for(demo_dir, counting, generation__max_new_tokens=400, generation__temperature=0.0,
                                cache__enabled=False)
    text = "\n\n".join(f"Paragraph {n}: please keep talking for a long while." for n in range(12))
    session = translator.submit(TranslationRequest(text, "en", "fr", format="markdown"))
    async for event in session.events():
        if event.type == "started":
            await asyncio.sleep(0.2)
            assert session.cancel()
    assert session.log[-1].type == "cancelled" and sum(e.terminal for e in session.log) == 1
    running = len(counting.generations)
    assert 1 <= running <= 4  # four slots: the rest never started
    await asyncio.gather(*(generation.wait_closed() for generation in counting.generations))
    assert translator.scheduler.running == 0 and translator.scheduler.queued == 0
    assert all(generation.tokens < 400 for generation in counting.generations)
    await translator.close()


async def test_started_names_the_detected_source(demo_dir: Path, engine: LocalEngine) -> None:
    translator = translator_for(demo_dir, engine)
    session = await translator.translate(TranslationRequest(
        "Le vent du nord et le soleil se disputaient pour savoir lequel était le plus fort.", "auto", "en"))
    started = next(e for e in session.log if e.type == "started")
    assert started.data["source"] == "fr" and 0.5 < started.data["confidence"] <= 1
    assert session.log[-1].data["source"] == "fr"
    plan = translator.plan(session.request, dry_run=True)
    assert plan.jobs[0].prompt.text.startswith("Translate the following segment into English")
    await translator.close()


async def test_documents_count_against_the_character_rate(demo_dir: Path, engine: LocalEngine) -> None:
    from hmt_stream.errors import HmtError

    translator = translator_for(demo_dir, engine, limits__chars_per_minute=100)
    translator.submit(TranslationRequest("A" * 60 + " word.", "en", "fr"))
    with pytest.raises(HmtError) as caught:
        translator.submit(TranslationRequest("B" * 60 + " word.", "en", "fr"))
    assert caught.value.code == "rate_limited" and "characters" in caught.value.message
    with pytest.raises(HmtError) as too_long:
        translator.submit(TranslationRequest("C" * 200, "en", "fr"))
    assert too_long.value.code == "too_long" and "chars_per_minute" in too_long.value.message
    await translator.close()
