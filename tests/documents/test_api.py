"""The document fields over HTTP and WebSocket, and the /api/prompts dry run."""

from __future__ import annotations

import json
from typing import Any

from ..transports.conftest import parse_sse, translator_of

DOC = ("# The fable\n\nThe north wind boasted of its strength. The sun only smiled.\n\n"
       "- A traveller wore a cloak.\n- Nobody saw the moon.\n\n```\nwind = 'cloak'\n```\n")
GLOSSARY = [{"source": "cloak", "target": "manteau"}, {"source": "sun", "target": "soleil"},
            {"source": "dragon", "target": "dragon"}]


async def test_prompts_is_a_dry_run_with_glossary_entries_only_where_they_occur(make_client: Any) -> None:
    client = await make_client(model__prompts="hy-mt1.5")
    body = {"text": DOC, "source": "en", "target": "fr", "format": "markdown", "glossary": GLOSSARY,
            "context": "A fable by Aesop."}
    response = await client.post("/api/prompts", json=body)
    assert response.status == 200, await response.text()
    plan = await response.json()
    assert plan["profile"] == "hy-mt1.5" and plan["source"] == "en" and plan["detected"] is None
    segments = plan["segments"]
    assert [s["text"] for s in segments] == ["The fable", "The north wind boasted of its strength. The sun only "
                                             "smiled.", "A traveller wore a cloak.", "Nobody saw the moon."]
    assert [s["glossary"] for s in segments] == [[], [GLOSSARY[1]], [GLOSSARY[0]], []]
    for segment in segments:
        assert ("cloak 翻译成 manteau" in segment["prompt"]) == ("cloak" in segment["text"])
        assert ("sun 翻译成 soleil" in segment["prompt"]) == ("sun" in segment["text"])
        assert "dragon" not in segment["prompt"]
        assert segment["messages"] == [{"role": "user", "content": segment["prompt"]}]
        assert segment["cached"] is False
    assert [s["template"] for s in segments] == ["context", "terminology", "terminology", "context"]
    # The user's context, then the previous segment's source, for a segment without glossary terms.
    assert segments[3]["prompt"].startswith("A fable by Aesop.\nA traveller wore a cloak.\n参考上面的信息")
    # Nothing was generated or counted: the same request now is a miss, then a hit.
    assert (translator_of(client).cache.hits, translator_of(client).cache.misses) == (0, 0)
    done = await (await client.post("/api/translate", json=body)).json()
    assert done["segments"] == 4 and done["segments_cached"] == 0
    again = await (await client.post("/api/prompts", json=body)).json()
    assert all(segment["cached"] for segment in again["segments"])


async def test_auto_source_is_detected_in_the_dry_run(client: Any) -> None:
    plan = await (await client.post("/api/prompts", json={"text": "Der Hase lachte über die Schildkröte.",
                                                          "source": "auto", "target": "en"})).json()
    assert plan["source"] == "de" and plan["detected"]["language"] == "de"


async def test_a_markdown_document_over_sse_and_websocket(client: Any) -> None:
    body = {"text": DOC, "source": "en", "target": "de", "format": "markdown"}
    created = await (await client.post("/api/sessions", json=body)).json()
    stream = await client.get(created["events_url"], headers={"Accept": "text/event-stream"})
    events = parse_sse(await stream.text())
    started = next(e for e in events if e["type"] == "started")
    assert started["segments"] == 4 and started["segments_cached"] == 0
    assert [e["done"] for e in events if e["type"] == "progress"] == [1, 2, 3, 4]
    done = events[-1]
    assert done["type"] == "done" and done["text"].endswith("\n\n```\nwind = 'cloak'\n```\n")
    assert "".join(e["text"] for e in events if e["type"] == "delta") == done["text"]

    ws = await client.ws_connect("/ws")
    assert json.loads((await ws.receive()).data)["type"] == "hello"
    await ws.send_json({"type": "translate", **body, "ref": "doc"})
    types = []
    while True:
        frame = json.loads((await ws.receive()).data)
        if frame["type"] == "ping":
            continue
        types.append(frame["type"])
        if frame["type"] == "done":
            assert frame["cached"] is True and frame["segments_cached"] == 4 and frame["text"] == done["text"]
            break
    assert types[0] == "delta" and "progress" not in types
    await ws.close()


async def test_bad_document_fields_have_stable_codes(client: Any) -> None:
    base = {"text": "Hello.", "source": "en", "target": "fr"}
    cases: list[tuple[dict[str, Any], str]] = [
                        ({"format": "pdf"}, "bad_request"), ({"glossary": {"a": "b"}}, "bad_request"),
                        ({"glossary": [{"source": "", "target": "x"}]}, "bad_request"),
                        ({"glossary": [{"source": "a", "target": "b"}] * 201}, "bad_request"),
                        ({"context": 5}, "bad_request"), ({"context": "x" * 2001}, "too_long")]
    for extra, code in cases:
        response = await client.post("/api/sessions", json={**base, **extra})
        assert response.status == 400 and (await response.json())["error"]["code"] == code, extra


async def test_text_without_words_comes_back_as_it_is(client: Any) -> None:
    done = await (await client.post("/api/translate", json={"text": "1234 — 5678", "target": "fr"})).json()
    assert (done["text"], done["segments"], done["cached"], done["tokens"]) == ("1234 — 5678", 0, False, 0)
