"""Behind a real nginx configured like a corporate reverse proxy that does not pass WebSocket upgrades."""

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from ..nginx import Nginx
from .conftest import LONG, MakeClient, translator_of


def port(client: TestClient[Any, Any]) -> int:
    assert client.server.port is not None
    return client.server.port


async def test_ws_fails_but_sse_streams_incrementally_and_poll_works(make_client: MakeClient,
                                                                     tmp_path: Path) -> None:
    client = await make_client(**LONG)
    translator = translator_of(client)
    with Nginx(tmp_path, port(client)) as proxy:
        async with aiohttp.ClientSession(proxy.url) as http:
            # WebSocket: nginx drops the Upgrade header, so the handshake cannot succeed.
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await http.ws_connect("/ws")

            # SSE: the first delta arrives while the engine is still generating.
            created = await (await http.post("/api/sessions", json={"text": "Hello there, how are you?",
                                                                     "target": "fr"})).json()
            session = translator.store.get(created["session"])
            assert session is not None
            events: list[dict[str, Any]] = []
            finished_at_first_delta = None
            async with http.get(created["events_url"], headers={"Accept": "text/event-stream"}) as response:
                assert response.headers["Content-Type"] == "text/event-stream"
                async for line in response.content:
                    if line.startswith(b"data: "):
                        events.append(json.loads(line[6:]))
                        if events[-1]["type"] == "delta" and finished_at_first_delta is None:
                            finished_at_first_delta = session.finished
                            tokens_at_first_delta = sum(e.type == "delta" for e in session.log)
            assert finished_at_first_delta is False
            total = sum(e.type == "delta" for e in session.log)
            print(f"first delta through nginx when the engine had produced {tokens_at_first_delta} of {total} deltas")
            assert tokens_at_first_delta < total
            assert events == [e.as_dict() for e in session.log]

            # Long-poll through the same proxy.
            created = await (await http.post("/api/sessions", json={"text": "Please stop me in the middle",
                                                                     "target": "de"})).json()
            polled: list[dict[str, Any]] = []
            after, done = 0, False
            while not done:
                page = await (await http.get(f"{created['events_url']}?after={after}&timeout=5")).json()
                polled += page["events"]
                after, done = page["next"], page["done"]
            session = translator.store.get(created["session"])
            assert session is not None and polled == [e.as_dict() for e in session.log]


async def test_a_proxy_that_passes_upgrades_carries_the_websocket(make_client: MakeClient, tmp_path: Path) -> None:
    client = await make_client()
    with Nginx(tmp_path, port(client), websocket=True) as proxy:
        async with aiohttp.ClientSession(proxy.url) as http, http.ws_connect("/ws") as ws:
            assert json.loads((await ws.receive()).data)["type"] == "hello"
