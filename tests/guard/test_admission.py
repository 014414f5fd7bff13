"""Admission in the translator: what counts against the rate, the cheap checks before the tokenizer, the refusal
budget, one client's fair share of the queue, and what a failing model tells the client."""

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from hmt_stream.app import build_translator
from hmt_stream.engine import ChatPrompt
from hmt_stream.engine.scripted import Script, ScriptedEngine
from hmt_stream.engine.transformers import LocalEngine
from hmt_stream.errors import HmtError
from hmt_stream.prompts import build_prompt
from hmt_stream.request import TranslationRequest
from hmt_stream.translator import Translator

from ..conftest import MakeClient, make_settings

BODY = {"text": "Counted", "source": "en", "target": "fr"}


class TokenizerCount:
    """The real engine, counting prompt_tokens() calls (the tokenizer's work)."""

    def __init__(self, engine: LocalEngine) -> None:
        self._engine = engine
        self.model_id, self.demo = engine.model_id, engine.demo
        self.tokenized = 0

    def prompt_tokens(self, prompt: ChatPrompt) -> int:
        self.tokenized += 1
        return self._engine.prompt_tokens(prompt)

    def generate(self, prompt: ChatPrompt, options: Any) -> Any:
        return self._engine.generate(prompt, options)


def tokens_of(engine: LocalEngine, text: str) -> int:
    return engine.prompt_tokens(ChatPrompt.user(build_prompt(text, "en", "fr")))


async def code_of(client: TestClient[Any, Any], body: dict[str, str]) -> str:
    response = await client.post("/api/sessions", json=body)
    if response.status == 201:
        return "created"
    return str((await response.json())["error"]["code"])


async def test_input_refused_as_too_long_does_not_count_against_the_rate(make_client: MakeClient,
                                                                       engine: LocalEngine) -> None:
    short = "Hi"
    client = await make_client(limits__rate="1/minute", generation__max_chars=200,
                               generation__max_input_tokens=tokens_of(engine, short) + 2)
    too_many_chars = {**BODY, "text": "x" * 201}
    too_many_tokens = {**BODY, "text": "many words " * 15}
    for body in (too_many_chars, too_many_tokens, too_many_chars, too_many_tokens):
        assert await code_of(client, body) == "too_long"
    assert await code_of(client, {**BODY, "text": short}) == "created"
    assert await code_of(client, {**BODY, "text": short}) == "rate_limited"


async def test_overloaded_refusals_do_not_count_against_the_rate(make_client: MakeClient) -> None:
    client = await make_client(limits__rate="2/minute", scheduler__max_concurrent=1, scheduler__max_queue=0,
                               generation__temperature=0.0, generation__max_new_tokens=2000,
                               cache__enabled=False)
    first = await client.post("/api/sessions", json={**BODY, "text": "Hello there, how are you?"})
    assert first.status == 201
    for _ in range(3):
        assert await code_of(client, BODY) == "overloaded"
    session = (await first.json())["session"]
    assert (await client.delete(f"/api/sessions/{session}")).status == 200
    while (await (await client.get(f"/api/sessions/{session}")).json())["state"] != "cancelled":
        await asyncio.sleep(0.05)
    assert await code_of(client, BODY) == "created"  # the second translation counted, not the refusals
    assert await code_of(client, {**BODY, "text": "third"}) == "rate_limited"


async def test_the_rate_and_refusal_budget_are_checked_before_the_tokenizer(settings: Any,
                                                                            engine: LocalEngine) -> None:
    counting = TokenizerCount(engine)
    short = TranslationRequest("Hi", "en", "fr")
    long = TranslationRequest("many words " * 15, "en", "fr")
    limited = settings.replace({"limits.rate": "1/minute", "cache.enabled": False,
                                "generation.max_input_tokens": tokens_of(engine, "Hi") + 2,
                                "limits.refusal_rate": "2/minute"})
    translator = build_translator(limited, counting)  # type: ignore[arg-type]
    try:
        translator.submit(short, principal="a")
        tokenized = counting.tokenized
        with pytest.raises(HmtError, match="translations") as error:
            translator.submit(short, principal="a")
        assert error.value.code == "rate_limited" and counting.tokenized == tokenized
        # Refused input counts against the refusal budget of its client, and once over it, nothing of that
        # client's is tokenized (while another client is served as usual).
        for _ in range(2):
            with pytest.raises(HmtError, match="tokens with the prompt"):
                translator.submit(long, principal="b")
        tokenized = counting.tokenized
        with pytest.raises(HmtError, match="refused requests") as error:
            translator.submit(long, principal="b")
        assert error.value.code == "rate_limited" and counting.tokenized == tokenized
        translator.submit(short, principal="c")
    finally:
        await translator.close()


async def test_one_client_holds_at_most_its_share_of_slots_and_places(settings: Any,
                                                                    engine: LocalEngine) -> None:
    shared = settings.replace({"scheduler.max_concurrent": 1, "scheduler.max_queue": 16,
                               "scheduler.max_per_client": 3, "generation.temperature": 0.0,
                               "generation.max_new_tokens": 2000, "cache.enabled": False})
    translator = build_translator(shared, engine)
    request = TranslationRequest("Hello there, how are you?", "en", "fr")
    try:
        mine = [translator.submit(request, principal="greedy") for _ in range(3)]
        with pytest.raises(HmtError, match="your share") as error:
            translator.submit(request, principal="greedy")
        assert error.value.code == "overloaded" and error.value.retry_after
        other = translator.submit(request, principal="polite")
        assert translator.scheduler.queued == 3  # two of greedy's and polite's one: 16 places were not taken
        mine[1].cancel()
        await asyncio.sleep(0)
        mine.append(translator.submit(request, principal="greedy"))  # a place freed is one more for it
        for session in [*mine, other]:
            session.cancel()
    finally:
        await translator.close()


async def test_a_failing_model_tells_the_client_an_error_id_and_the_log_the_rest(
        demo_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Fault injection: the scripted engine (not a model) fails after its first token.
    translator: Translator = build_translator(make_settings(demo_dir), ScriptedEngine(Script(tokens=5, fail_after=1)))
    caplog.set_level(logging.ERROR, logger="hmt_stream.runner")
    try:
        session = await asyncio.wait_for(translator.translate(TranslationRequest("Hi", "en", "fr")), 10)
    finally:
        await translator.close()
    error = session.log[-1]
    assert error.type == "error" and error.data["code"] == "model_error"
    message = error.data["message"]
    assert "Scripted" not in message and "scripted" not in message  # the exception's own words stay inside
    error_id = message.split("error id ")[1].split(",")[0]
    logged = [record for record in caplog.records if error_id in record.getMessage()]
    assert logged and logged[0].exc_info is not None and "ScriptedFailure" in str(logged[0].exc_info[0])
