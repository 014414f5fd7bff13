"""When the last reader leaves, the session waits disconnect_grace_s for one to come back, then is cancelled."""

import asyncio
from typing import Any

import pytest

from .conftest import LONG, MakeClient, create, translator_of
from .readers import READERS


@pytest.mark.parametrize("transport", ["ws", "sse", "poll"])
async def test_the_last_reader_leaving_cancels_after_the_grace_period(make_client: MakeClient,
                                                                     transport: str) -> None:
    client = await make_client(session__disconnect_grace_s=0.3, **LONG)
    session_id = await create(client)
    await READERS[transport](client, session_id, 0, 3)
    session = translator_of(client).store.get(session_id)
    assert session is not None
    left_at = asyncio.get_running_loop().time()
    # Nobody reads now: wait for the end without counting as a reader (watch the log directly).
    while not session.finished:
        await asyncio.sleep(0.05)
        assert asyncio.get_running_loop().time() - left_at < 20
    assert session.state == "cancelled"
    assert session.log[-1].seq < 1000


async def test_a_reader_back_within_the_grace_period_keeps_the_session_and_loses_nothing(
        make_client: MakeClient) -> None:
    client = await make_client(session__disconnect_grace_s=3.0, **{**LONG, "generation__max_new_tokens": 4000})
    session_id = await create(client)
    before = await READERS["ws"](client, session_id, 0, 4)
    await asyncio.sleep(0.5)
    session = translator_of(client).store.get(session_id)
    assert session is not None and not session.finished
    rest = await READERS["sse"](client, session_id, 4, None)
    received: list[dict[str, Any]] = before + rest
    assert session.state == "done"
    assert received == [e.as_dict() for e in session.log]


async def test_a_session_nobody_ever_reads_is_cancelled(make_client: MakeClient) -> None:
    client = await make_client(session__disconnect_grace_s=0.2, **LONG)
    session_id = await create(client)
    session = translator_of(client).store.get(session_id)
    assert session is not None
    while not session.finished:
        await asyncio.sleep(0.05)
    assert session.state == "cancelled"
