"""The core acceptance: sessions driven by the real engine over the demo model."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hmt_stream.app import build_translator
from hmt_stream.config import Settings
from hmt_stream.engine import ChatPrompt, GenerationOptions
from hmt_stream.engine.transformers import LocalEngine
from hmt_stream.errors import HmtError
from hmt_stream.request import TranslationRequest
from hmt_stream.session import Event
from hmt_stream.translator import Translator

from .conftest import make_settings


class CountingEngine:
    """The real engine, with a count of its generations (the engine's own calls are untouched)."""

    def __init__(self, engine: LocalEngine) -> None:
        self._engine = engine
        self.model_id, self.demo = engine.model_id, engine.demo
        self.generations: list[Any] = []

    def prompt_tokens(self, prompt: ChatPrompt) -> int:
        return self._engine.prompt_tokens(prompt)

    def generate(self, prompt: ChatPrompt, options: GenerationOptions) -> Any:
        generation = self._engine.generate(prompt, options)
        self.generations.append(generation)
        return generation

    async def warmup(self) -> None: ...

    async def close(self) -> None: ...


async def collect(events: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in events]


def request(text: str = "Hello, how are you today?", source: str = "en", target: str = "fr") -> TranslationRequest:
    return TranslationRequest(text=text, source=source, target=target)


async def test_a_session_streams_deltas_that_add_up_to_done(translator: Translator) -> None:
    translator.options = GenerationOptions(max_new_tokens=60)
    session = translator.submit(request())
    log = await asyncio.wait_for(collect(session.events()), 60)
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert log[0].type == "started"
    deltas = [e.data["text"] for e in log if e.type == "delta"]
    assert len(deltas) >= 20
    done = log[-1]
    assert done.type == "done" and sum(e.terminal for e in log) == 1
    assert "".join(deltas) == done.data["text"] == session.text
    assert done.data["cached"] is False and done.data["tokens"] >= len(deltas)
    assert 0 < done.data["ttft_ms"] <= done.data["elapsed_ms"]
    assert all(e.session == session.id for e in log)
    # A reader that joins late, after k events, sees exactly k+1..n, identical to the first reader's.
    k = len(log) // 2
    late = await collect(session.events(after=k))
    assert late == log[k:]
    assert late[0].json == log[k].json


async def test_many_readers_follow_the_same_live_log(translator: Translator) -> None:
    session = translator.submit(request("Readers come and go"))
    first, second = await asyncio.gather(collect(session.events()), collect(session.events()))
    assert first == second == session.log


def note_tokens_on_cancel(generation: Any, counts: list[int]) -> None:
    """Have the generation note its token count once cancel() has reached it."""
    stop = generation.cancel

    def cancel() -> None:
        stop()
        counts.append(generation.tokens)

    generation.cancel = cancel


async def test_cancel_mid_generation_stops_within_one_decode_step(demo_dir: Any, engine: LocalEngine) -> None:
    counting = CountingEngine(engine)
    translator = build_translator(make_settings(demo_dir, generation__max_new_tokens=400), counting)
    session = translator.submit(request("Please stop me in the middle"))
    deltas = 0
    at_cancel: list[int] = []  # the engine's count when the cancel reached it (the next turn of the event loop)
    async for event in session.events():
        if event.type == "delta":
            deltas += 1
            if deltas == 5:
                note_tokens_on_cancel(counting.generations[0], at_cancel)
                assert session.cancel()
    assert session.log[-1].type == "cancelled" and session.state == "cancelled"
    assert len(at_cancel) == 1 and counting.generations[0].tokens - at_cancel[0] <= 1
    assert translator.scheduler.running == 0
    await translator.close()


async def test_queue_positions_decrease_and_one_more_is_overloaded(demo_dir: Any, engine: LocalEngine) -> None:
    settings: Settings = make_settings(demo_dir, scheduler__max_concurrent=1, scheduler__max_queue=2,
                                       cache__enabled=False, generation__max_new_tokens=12)
    translator = build_translator(settings, engine)
    sessions = [translator.submit(request(f"Sentence number {i}")) for i in range(3)]
    with pytest.raises(HmtError) as caught:
        translator.submit(request("one too many"))
    assert caught.value.code == "overloaded" and caught.value.retry_after
    logs = await asyncio.gather(*(collect(s.events()) for s in sessions))
    positions = [[e.data["position"] for e in log if e.type == "queued"] for log in logs]
    assert positions == [[], [1], [2, 1]]
    assert all(log[-1].type == "done" for log in logs)
    await translator.close()


async def test_cancelling_a_queued_session_frees_its_place(demo_dir: Any, engine: LocalEngine) -> None:
    settings = make_settings(demo_dir, scheduler__max_concurrent=1, scheduler__max_queue=2, cache__enabled=False)
    translator = build_translator(settings, engine)
    running, waiting, last = (translator.submit(request(f"Text {i}")) for i in range(3))
    assert waiting.cancel()
    assert waiting.log[-1].type == "cancelled" and translator.scheduler.queued == 1
    log = await collect(last.events())
    assert [e.data["position"] for e in log if e.type == "queued"] == [2, 1]
    assert log[-1].type == "done" and running.finished
    await translator.close()


async def test_a_repeated_request_is_answered_from_the_cache(demo_dir: Any, engine: LocalEngine) -> None:
    counting = CountingEngine(engine)
    translator = build_translator(make_settings(demo_dir), counting)
    first = await translator.translate(request("The cache remembers"))
    second = await translator.translate(request("  The   cache remembers "))
    assert len(counting.generations) == 1
    assert [e.type for e in second.log] == ["delta", "done"]
    assert second.log[-1].data["cached"] is True
    assert second.text == first.text == second.log[-1].data["text"]
    assert (translator.cache.hits, translator.cache.misses) == (1, 1)
    await translator.translate(request("The cache remembers", target="de"))
    assert len(counting.generations) == 2


async def test_cancelled_translations_are_not_cached(demo_dir: Any, engine: LocalEngine) -> None:
    counting = CountingEngine(engine)
    translator = build_translator(make_settings(demo_dir), counting)
    session = translator.submit(request("Cancelled early"))
    async for event in session.events():
        if event.type == "delta":
            session.cancel()
    assert session.state == "cancelled"
    again = await translator.translate(request("Cancelled early"))
    assert again.log[-1].data["cached"] is False
    assert len(counting.generations) == 2


@pytest.mark.parametrize("option,value", [("top_k", 5), ("top_p", 0.9), ("temperature", 0.0),
                                          ("repetition_penalty", 1.0), ("max_new_tokens", 7)])
async def test_a_translation_made_with_other_sampling_options_is_no_cache_hit(demo_dir: Any, engine: LocalEngine,
                                                                             option: str, value: Any) -> None:
    counting = CountingEngine(engine)
    translator = build_translator(make_settings(demo_dir, generation__max_new_tokens=8), counting)
    await translator.translate(request("Options are part of the key"))
    translator.options = dataclasses.replace(translator.options, **{option: value})
    other = await translator.translate(request("Options are part of the key"))
    assert other.log[-1].data["cached"] is False and len(counting.generations) == 2
    again = await translator.translate(request("Options are part of the key"))
    assert again.log[-1].data["cached"] is True and len(counting.generations) == 2


async def test_ttft_and_elapsed_count_from_the_request_so_time_in_the_queue_is_included(
        demo_dir: Any, engine: LocalEngine) -> None:
    settings = make_settings(demo_dir, scheduler__max_concurrent=1, generation__temperature=0.0,
                             generation__max_new_tokens=300, cache__enabled=False)
    translator = build_translator(settings, engine)
    first = translator.submit(request("Hello there, how are you?"))  # holds the only slot
    second = translator.submit(request("Waiting in line"))
    log = await asyncio.wait_for(collect(second.events()), 120)
    assert first.finished_at is not None and second.finished_at is not None
    done = log[-1].data
    # The second's first token came after the first had finished: its wait counts (to the 0.1 ms it is rounded to).
    waited_ms = (first.finished_at - second.created) * 1000
    lasted_ms = (second.finished_at - second.created) * 1000
    assert waited_ms - 0.1 <= done["ttft_ms"] <= done["elapsed_ms"] <= lasted_ms + 0.1, (waited_ms, done, lasted_ms)
    await translator.close()


@pytest.mark.parametrize("text,source", [
    ("机器翻译把一种语言的文本转换成另一种语言。", "zh"),
    ("مرحبا بالعالم، هذه جملة باللغة العربية.", "ar"),
    ("नमस्ते दुनिया, यह हिंदी में एक वाक्य है।", "hi"),
    ("Party time 🎉👨‍👩‍👧👍🏽", "en"),
])
async def test_non_ascii_streams_never_contain_replacement_characters(translator: Translator, text: str,
                                                                     source: str) -> None:
    translator.options = GenerationOptions(max_new_tokens=80)
    for target in ("zh", "en", "ar", "hi"):
        if target == source:
            continue
        session = await translator.translate(request(text, source, target))
        deltas = [e.data["text"] for e in session.log if e.type == "delta"]
        assert deltas and all("\ufffd" not in d for d in deltas)
        assert "".join(deltas) == session.log[-1].data["text"]


async def test_input_over_the_token_limit_is_refused(demo_dir: Any, engine: LocalEngine) -> None:
    translator = build_translator(make_settings(demo_dir, generation__max_input_tokens=32), engine)
    with pytest.raises(HmtError) as caught:
        translator.submit(request("word " * 40))
    assert caught.value.code == "too_long" and "limit is 32" in caught.value.message
    assert len(translator.store) == 0


def test_requests_are_validated_with_stable_codes() -> None:
    def code(payload: Any) -> str:
        with pytest.raises(HmtError) as caught:
            TranslationRequest.parse(payload, max_chars=10)
        return caught.value.code

    assert code([]) == "bad_request"
    assert code({"text": 5, "target": "en"}) == "bad_request"
    assert code({"text": "  ", "target": "en"}) == "bad_request"
    assert code({"text": "x" * 11, "target": "en"}) == "too_long"
    assert code({"text": "hi", "target": "xx"}) == "unsupported_language"
    assert code({"text": "hi", "source": "klingon", "target": "en"}) == "unsupported_language"
    assert code({"text": "hi", "source": None, "target": "en"}) == "bad_request"
    assert TranslationRequest.parse({"text": " hi ", "target": "yue"}, max_chars=10) == TranslationRequest(
        "hi", "auto", "yue")
