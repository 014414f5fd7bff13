"""The guard rails with documents: a document is one session for the fair share and the queue, one translation of
its length for the rate (counted only once admitted), planned only after the cheap checks, and its per-segment
cache entries belong to the key that made them (the /api/prompts dry run included)."""

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from hmt_stream.app import build_translator
from hmt_stream.engine.transformers import LocalEngine
from hmt_stream.errors import HmtError
from hmt_stream.request import TranslationRequest

from ..conftest import MakeClient
from ..transports.test_guard import AUTH, KEYS, bearer
from .test_admission import TokenizerCount, code_of, tokens_of

# Five paragraphs, five segments; greedy decoding on the demo model runs each to max_new_tokens.
DOCUMENT = "\n\n".join(f"Paragraph {n}: the north wind and the sun argued about their strength."
                       for n in range(1, 6))
SHORT = TranslationRequest("Hello there, how are you?", "en", "fr")
BUSY = {"generation.temperature": 0.0, "generation.max_new_tokens": 2000, "cache.enabled": False}


async def test_a_document_is_one_session_for_the_fair_share_and_the_queue(settings: Any,
                                                                          engine: LocalEngine) -> None:
    shared = settings.replace({**BUSY, "scheduler.max_concurrent": 1, "scheduler.max_queue": 2,
                               "scheduler.max_per_client": 2})
    translator = build_translator(shared, engine)
    scheduler = translator.scheduler
    try:
        document = translator.submit(TranslationRequest(DOCUMENT, "en", "fr", format="markdown"),
                                     principal="greedy")
        while scheduler.queued == 0:  # the document's next segment waits for the slot its first one holds
            await asyncio.sleep(0.01)
        short = translator.submit(SHORT, principal="greedy")  # its second session: within its share of two
        with pytest.raises(HmtError, match="your share") as error:
            translator.submit(SHORT, principal="greedy")
        assert error.value.code == "overloaded"
        # The document's waiting segments take no place in line: two places, and another client still gets one.
        other = translator.submit(SHORT, principal="polite")
        assert scheduler.queued == 3
        with pytest.raises(HmtError, match="busy"):
            translator.submit(SHORT, principal="third")
        for session in (document, short, other):
            session.cancel()
    finally:
        await translator.close()


async def test_a_document_is_one_translation_of_its_length_counted_once_admitted(make_client: MakeClient) -> None:
    client = await make_client(limits__rate="3/minute", limits__chars_per_minute=2 * len(DOCUMENT) + 10,
                               scheduler__max_concurrent=1, scheduler__max_queue=0, generation__temperature=0.0,
                               generation__max_new_tokens=2000, cache__enabled=False)
    body = {"text": DOCUMENT, "source": "en", "target": "fr", "format": "markdown"}

    async def cancel(response: Any) -> None:
        session = (await response.json())["session"]
        assert (await client.delete(f"/api/sessions/{session}")).status == 200
        while (await (await client.get(f"/api/sessions/{session}")).json())["state"] != "cancelled":
            await asyncio.sleep(0.05)

    first = await client.post("/api/sessions", json=body)
    assert first.status == 201
    for _ in range(2):  # refused: neither a translation nor characters are counted
        assert await code_of(client, body) == "overloaded"
    await cancel(first)
    second = await client.post("/api/sessions", json=body)
    assert second.status == 201, await second.text()
    third = await client.post("/api/sessions", json=body)
    assert third.status == 429 and "characters" in (await third.json())["error"]["message"]
    await cancel(second)
    # Ten segments so far, two translations: a third (short) one is still within 3 a minute.
    assert await code_of(client, {"text": "Hi", "source": "en", "target": "fr"}) == "created"


async def test_a_long_document_is_planned_only_after_the_cheap_checks(settings: Any,
                                                                      engine: LocalEngine) -> None:
    counting = TokenizerCount(engine)
    limited = settings.replace({"limits.rate": "1/minute", "cache.enabled": False, "limits.refusal_rate": "2/minute",
                                "generation.max_input_tokens": tokens_of(engine, "Hi") + 2})
    translator = build_translator(limited, counting)  # type: ignore[arg-type]
    long = TranslationRequest("Many words in a row. " * 300, "en", "fr")  # planned in a worker thread
    try:
        await translator.start(TranslationRequest("Hi", "en", "fr"), principal="a")
        tokenized = counting.tokenized
        for request in (long, TranslationRequest("Bonjour", "auto", "en")):
            with pytest.raises(HmtError) as error:
                await translator.start(request, principal="a")
            assert error.value.code == "rate_limited" and counting.tokenized == tokenized
        # Refused by the planner (its segments are too long) counts against the refusal budget; once over it,
        # nothing more of that client's is planned.
        for _ in range(2):
            with pytest.raises(HmtError, match="tokens with the prompt"):
                await translator.start(long, principal="b")
        tokenized = counting.tokenized
        with pytest.raises(HmtError, match="refused requests"):
            await translator.start(long, principal="b")
        assert counting.tokenized == tokenized
    finally:
        await translator.close()


async def test_the_dry_run_is_held_to_the_cheap_checks_and_counts_nothing(make_client: MakeClient,
                                                                          engine: LocalEngine) -> None:
    client = await make_client(limits__rate="1/minute", limits__refusal_rate="2/minute",
                               generation__max_input_tokens=tokens_of(engine, "Hi") + 2)
    body = {"text": "Hi", "source": "en", "target": "fr"}
    for _ in range(3):
        assert (await client.post("/api/prompts", json=body)).status == 200
    assert await code_of(client, body) == "created"  # the dry runs did not use up the rate
    over = await client.post("/api/prompts", json=body)
    assert over.status == 429 and (await over.json())["error"]["code"] == "rate_limited"

    other = await make_client(limits__refusal_rate="2/minute", generation__max_input_tokens=tokens_of(engine, "Hi"))
    for code in ("too_long", "too_long", "rate_limited"):
        response = await other.post("/api/prompts", json={**body, "text": "Too many words for this server."})
        assert (await response.json())["error"]["code"] == code


async def cached_segments(client: TestClient[Any, Any], body: dict[str, str], headers: dict[str, str]) -> list[bool]:
    plan = await (await client.post("/api/prompts", json=body, headers=headers)).json()
    return [segment["cached"] for segment in plan["segments"]]


async def test_a_documents_cached_segments_belong_to_the_key_unless_shared(make_client: MakeClient) -> None:
    body = {"text": DOCUMENT, "source": "en", "target": "fr", "format": "markdown"}
    for shared in (False, True):
        client = await make_client(**AUTH, cache__enabled=True, cache__shared=shared, generation__max_new_tokens=4)
        mine, theirs = bearer(KEYS[0]), bearer(KEYS[1])
        first = await (await client.post("/api/translate", json=body, headers=mine)).json()
        assert (first["segments"], first["segments_cached"]) == (5, 0)
        assert await cached_segments(client, body, mine) == [True] * 5
        assert await cached_segments(client, body, theirs) == [shared] * 5
        other = await (await client.post("/api/translate", json=body, headers=theirs)).json()
        assert other["segments_cached"] == (5 if shared else 0) and other["cached"] is shared
