"""Helpers for the transport tests (the app fixtures `make_client` and `client` are in tests/conftest.py)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient

from hmt_stream.keys import TRANSLATOR
from hmt_stream.translator import Translator

from ..conftest import MakeClient

__all__ = ["LONG", "MakeClient", "create", "parse_sse", "translator_of"]


def translator_of(client: TestClient[Any, Any]) -> Translator:
    app = client.app
    assert app is not None
    translator: Translator = app[TRANSLATOR]
    return translator


async def create(client: TestClient[Any, Any], text: str = "Hello there, how are you?", source: str = "en",
                 target: str = "fr") -> str:
    response = await client.post("/api/sessions", json={"text": text, "source": source, "target": target})
    assert response.status == 201, await response.text()
    return str((await response.json())["session"])


def parse_sse(raw: str) -> list[dict[str, Any]]:
    """The events of an SSE body as dicts, checking each frame's id and event lines against its data."""
    events = []
    for frame in raw.split("\r\n\r\n"):
        lines = [line for line in frame.split("\r\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        event = json.loads(fields["data"])
        assert fields["id"] == str(event["seq"]) and fields["event"] == event["type"]
        events.append(event)
    return events


# Greedy decoding makes the demo model's output length a property of the prompt: these English prompts run to
# max_new_tokens (about 1.3 ms a token here), so a test can act while a translation is still being generated.
LONG = {"generation__temperature": 0.0, "generation__max_new_tokens": 1000, "cache__enabled": False}
