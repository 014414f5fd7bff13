"""Chat requests (the OpenAI API's) through the translator: the same plan, lanes and runner as a translation, with
the model's text kept verbatim, their own options and cache entries, finish_reason and prompt_tokens. The real
engine on the demo model (its output is not a translation)."""

from __future__ import annotations

from pathlib import Path

from hmt_stream.app import build_translator
from hmt_stream.chat import ChatRequest
from hmt_stream.engine import ChatPrompt, GenerationOptions
from hmt_stream.engine.transformers import LocalEngine
from hmt_stream.request import TranslationRequest

from .conftest import make_settings

PROMPT = ChatPrompt.user("Say something.")


async def test_a_chat_answer_is_the_models_text_exactly(demo_dir: Path, engine: LocalEngine) -> None:
    translator = build_translator(make_settings(demo_dir, cache__enabled=False), engine)
    expected, answered = [], []
    for seed in range(6):
        options = GenerationOptions(max_new_tokens=8, seed=seed)
        expected.append("".join([text async for text in engine.generate(PROMPT, options)]))
        session = await translator.translate(ChatRequest(PROMPT, (("max_new_tokens", 8), ("seed", seed))))
        done = session.log[-1]
        assert done.type == "done" and done.data["segments"] == 1
        assert "".join(e.data["text"] for e in session.log if e.type == "delta") == done.data["text"]
        answered.append(done.data["text"])
    # Outer spaces and line breaks are the model's answer too: nothing is trimmed as a document segment's text is.
    assert any(text != text.strip() for text in expected)
    assert answered == expected
    await translator.close()


async def test_a_repeated_chat_is_answered_from_its_own_cache_entry(demo_dir: Path,
                                                                   engine: LocalEngine) -> None:
    translator = build_translator(make_settings(demo_dir), engine)
    chat = ChatRequest(PROMPT, (("max_new_tokens", 3), ("seed", 1)))
    first = (await translator.translate(chat)).log[-1].data
    again = (await translator.translate(chat)).log[-1].data
    other = (await translator.translate(ChatRequest(PROMPT, (("max_new_tokens", 3), ("seed", 2))))).log[-1].data
    assert (first["cached"], again["cached"], other["cached"]) == (False, True, False)
    assert first["tokens"] == 3 and first["finish_reason"] == "length"
    assert {key: again[key] for key in ("text", "finish_reason", "prompt_tokens")} == {
        key: first[key] for key in ("text", "finish_reason", "prompt_tokens")}
    assert first["prompt_tokens"] == engine.prompt_tokens(PROMPT)
    assert (first["segments"], again["tokens"]) == (1, 0)
    await translator.close()


async def test_a_translation_reports_finish_reason_and_prompt_tokens_cached_or_not(
        demo_dir: Path, engine: LocalEngine) -> None:
    translator = build_translator(make_settings(demo_dir, generation__max_new_tokens=2, generation__temperature=0.0,
                                                generation__segment_tokens=16), engine)
    request = TranslationRequest("\n\n".join(f"Paragraph {n} is about the wind." for n in range(3)), "en", "fr",
                                 format="markdown")
    plan = translator.plan(request)
    fresh = (await translator.translate(request)).log[-1].data
    cached = (await translator.translate(request)).log[-1].data
    assert fresh["segments"] == len(plan.jobs) >= 3 and cached["cached"] is True
    # Two tokens a segment: every segment was cut short, and a cache hit says so as the generation did.
    assert fresh["finish_reason"] == cached["finish_reason"] == "length"
    assert fresh["prompt_tokens"] == cached["prompt_tokens"] == sum(
        engine.prompt_tokens(job.chat) for job in plan.jobs)
    await translator.close()

