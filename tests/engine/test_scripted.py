"""ScriptedEngine (not a model): rates, scripted failures and hangs, cancel, directives, and a translator over it."""

import asyncio
import time

import pytest

from hmt_stream.app import build_translator
from hmt_stream.config import Settings
from hmt_stream.engine import ChatPrompt, Engine, GenerationOptions
from hmt_stream.engine.scripted import Script, ScriptedEngine, ScriptedFailure, ScriptedGeneration, stamps
from hmt_stream.request import TranslationRequest

OPTIONS = GenerationOptions(max_new_tokens=512)


async def read(generation: ScriptedGeneration) -> list[str]:
    return [text async for text in generation]


def test_it_is_an_engine_and_says_it_is_not_a_model() -> None:
    engine: Engine = ScriptedEngine()
    assert engine.demo is True
    assert "NOT a model" in (ScriptedEngine.__doc__ or "")


async def test_emits_the_scripted_tokens_at_the_scripted_rate() -> None:
    engine = ScriptedEngine(Script(tokens=5, rate=100, text="w{i} "))
    began = time.monotonic()
    generation = engine.generate(ChatPrompt.user("hi"), OPTIONS)
    assert await read(generation) == ["w0 ", "w1 ", "w2 ", "w3 ", "w4 "]
    assert time.monotonic() - began >= 0.04 - 0.005  # tokens due at 0, 10, ..., 40 ms
    assert generation.tokens == 5 and engine.started == 1 and engine.running == 0


async def test_first_token_delay_and_max_new_tokens() -> None:
    engine = ScriptedEngine(Script(tokens=50, first_token_s=0.05))
    began = time.monotonic()
    generation = engine.generate(ChatPrompt.user("hi"), GenerationOptions(max_new_tokens=3))
    assert len(await read(generation)) == 3
    assert time.monotonic() - began >= 0.045


async def test_fails_after_n_tokens() -> None:
    generation = ScriptedEngine(Script(tokens=10, fail_after=2)).generate(ChatPrompt.user("hi"), OPTIONS)
    seen = []
    with pytest.raises(ScriptedFailure, match="after 2 tokens"):
        async for text in generation:
            seen.append(text)
    assert len(seen) == 2


async def test_fails_before_the_first_token_and_after_the_last() -> None:
    with pytest.raises(ScriptedFailure):
        await read(ScriptedEngine(Script(fail_after=0)).generate(ChatPrompt.user("hi"), OPTIONS))
    generation = ScriptedEngine(Script(tokens=3, fail_after=3)).generate(ChatPrompt.user("hi"), OPTIONS)
    with pytest.raises(ScriptedFailure):
        await read(generation)
    assert generation.tokens == 3


async def test_hangs_until_cancelled_then_stops() -> None:
    generation = ScriptedEngine(Script(tokens=10, hang_after=1)).generate(ChatPrompt.user("hi"), OPTIONS)
    seen: list[str] = []

    async def consume() -> None:
        async for text in generation:
            seen.append(text)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    assert seen == ["tok "] and not task.done()
    generation.cancel()
    await asyncio.wait_for(task, 1)
    await asyncio.wait_for(generation.wait_closed(), 1)
    assert generation.cancelled and generation.done


async def test_cancel_wakes_a_slow_generation_at_once() -> None:
    generation = ScriptedEngine(Script(tokens=10, rate=0.5)).generate(ChatPrompt.user("hi"), OPTIONS)
    iterator = generation.__aiter__()
    assert await anext(iterator) == "tok "
    began = time.monotonic()
    generation.cancel()
    with pytest.raises(StopAsyncIteration):
        await anext(iterator)
    assert time.monotonic() - began < 0.5


async def test_stop_delay_makes_wait_closed_wait() -> None:
    generation = ScriptedEngine(Script(tokens=100, rate=100, stop_delay_s=0.1)).generate(ChatPrompt.user("hi"), OPTIONS)
    await asyncio.sleep(0.02)
    generation.cancel()
    began = time.monotonic()
    await generation.wait_closed()
    assert time.monotonic() - began >= 0.09


async def test_stamps_carry_the_production_time() -> None:
    before = time.monotonic_ns()
    texts = await read(ScriptedEngine(Script(tokens=3, stamp=True, text="x")).generate(ChatPrompt.user("hi"), OPTIONS))
    times = stamps("".join(texts))
    assert len(times) == 3 and before <= times[0] <= times[1] <= times[2] <= time.monotonic_ns()
    assert all(text.endswith("x") for text in texts)


def test_directive_round_trip() -> None:
    script = Script(tokens=7, rate=20.0, stamp=True, fail_after=3, text="a b")
    directive = script.directive()
    assert directive == "[[script tokens=7 rate=20.0 text=a_b stamp=1 fail_after=3]]"
    assert Script.from_directive(f"Translate this.\n\n{directive} rest") == script
    assert Script.from_directive("no directive here") is None
    assert Script().directive() == "[[script]]"


async def test_a_directive_in_the_prompt_overrides_the_engine_script() -> None:
    engine = ScriptedEngine(Script(tokens=2, text="base "))
    assert await read(engine.generate(ChatPrompt.user("plain"), OPTIONS)) == ["base ", "base "]
    assert await read(engine.generate(ChatPrompt.user("x [[script tokens=3]]"), OPTIONS)) == ["base "] * 3
    off = ScriptedEngine(Script(tokens=2), directives=False)
    assert len(await read(off.generate(ChatPrompt.user("x [[script tokens=3]]"), OPTIONS))) == 2


async def test_a_bad_directive_fails_the_generation() -> None:
    generation = ScriptedEngine().generate(ChatPrompt.user("[[script colour=red]]"), OPTIONS)
    with pytest.raises(ScriptedFailure, match="unknown script key 'colour'"):
        await read(generation)


async def test_a_script_can_be_a_function_of_the_prompt() -> None:
    engine = ScriptedEngine(lambda prompt: Script(tokens=len(prompt)))
    assert len(await read(engine.generate(ChatPrompt.user("abcd"), OPTIONS))) == 4
    assert engine.prompts[-1] == "abcd" and engine.prompt_tokens(ChatPrompt.user("abcdefghi")) == 3


async def test_warmup_and_close() -> None:
    await ScriptedEngine(warmup_s=0.01).warmup()
    with pytest.raises(ScriptedFailure):
        await ScriptedEngine(fail_warmup=True).warmup()
    engine = ScriptedEngine(Script(tokens=10, hang_after=0))
    generation = engine.generate(ChatPrompt.user("hi"), OPTIONS)
    await asyncio.wait_for(engine.close(), 1)
    assert generation.cancelled and engine.running == 0 and engine.closed


def request(text: str) -> TranslationRequest:
    return TranslationRequest(text=text, source="en", target="fr")


async def test_drives_a_translator_to_done_error_and_cancelled() -> None:
    engine = ScriptedEngine(Script(tokens=4, text="mot "))
    translator = build_translator(Settings().replace({"cache.enabled": False}), engine)
    try:
        done = await asyncio.wait_for(translator.translate(request("hello")), 5)
        # A segment's output is trimmed: the text around it (here none) keeps the layout.
        assert done.log[-1].type == "done" and done.text == "mot mot mot mot" and done.log[-1].data["tokens"] == 4

        failed = await asyncio.wait_for(translator.translate(request("hi [[script fail_after=1]]")), 5)
        assert [e.type for e in failed.log] == ["started", "delta", "error"]
        assert failed.log[-1].data["code"] == "model_error"

        hung = translator.submit(request("hey [[script hang_after=0]]"))
        await asyncio.sleep(0.02)
        assert hung.cancel()
        async for _ in hung.events():
            pass
        assert hung.log[-1].type == "cancelled" and engine.running == 0
    finally:
        await translator.close()
