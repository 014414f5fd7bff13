"""A reader drops after k events and comes back, on the same or another transport, with after=k."""

from typing import Any

import pytest

from .conftest import LONG, MakeClient, create, translator_of
from .readers import READERS

PAIRS = [("ws", "ws"), ("sse", "sse"), ("poll", "poll"), ("ws", "poll"), ("sse", "ws"), ("poll", "sse")]


@pytest.mark.parametrize("first,second", PAIRS)
async def test_resume_gets_every_later_event_exactly_once(make_client: MakeClient, first: str, second: str) -> None:
    client = await make_client(**LONG)
    session_id = await create(client, "Hello there, how are you?")
    k = 6
    before = await READERS[first](client, session_id, 0, k)
    assert [e["seq"] for e in before] == list(range(1, k + 1))
    session = translator_of(client).store.get(session_id)
    assert session is not None and not session.finished, "the translation should still be running"
    rest = await READERS[second](client, session_id, k, None)
    received: list[dict[str, Any]] = before + rest
    assert received == [e.as_dict() for e in session.log]
    assert received[-1]["type"] == "done"
    assert "".join(e["text"] for e in received if e["type"] == "delta") == received[-1]["text"]
