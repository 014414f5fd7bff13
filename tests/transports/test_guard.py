"""Auth, session ownership, Origin checks, rate limits and size limits, on every transport."""

import json
import time
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestClient

from .conftest import MakeClient

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
KEYS = ("key-one", "key-two")
AUTH = {"auth__enabled": True, "auth__api_keys": KEYS, "auth__jwt_secret": SECRET}
BODY = {"text": "Guarded", "source": "en", "target": "fr"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def error_code(response: aiohttp.ClientResponse) -> str:
    return str((await response.json())["error"]["code"])


async def test_auth_off_needs_no_credentials(client: TestClient[Any, Any]) -> None:
    response = await client.post("/api/sessions", json=BODY)
    assert response.status == 201
    session = (await response.json())["session"]
    assert (await client.get(f"/api/sessions/{session}")).status == 200


async def test_without_or_with_a_wrong_key_every_transport_answers_401(make_client: MakeClient) -> None:
    client = await make_client(**AUTH)
    for headers in ({}, bearer("wrong"), bearer("")):
        for method, path in (("POST", "/api/sessions"), ("POST", "/api/translate"), ("GET", "/api/sessions/x"),
                             ("GET", "/api/sessions/x/events"), ("DELETE", "/api/sessions/x")):
            response = await client.request(method, path, json=BODY, headers=headers)
            assert response.status == 401, (method, path, headers)
            assert await error_code(response) == "unauthorized"
        sse = await client.get("/api/sessions/x/events", headers={**headers, "Accept": "text/event-stream"})
        assert sse.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/ws", headers=headers)
        assert refused.value.status == 401
    for path in ("/api/health", "/api/languages", "/api/negotiate", "/"):
        assert (await client.get(path)).status == 200, path


async def test_a_session_belongs_to_the_key_that_created_it(make_client: MakeClient) -> None:
    client = await make_client(**AUTH)
    created = await client.post("/api/sessions", json=BODY, headers=bearer("key-one"))
    assert created.status == 201
    session = (await created.json())["session"]
    mine, theirs = bearer("key-one"), bearer("key-two")
    assert (await client.get(f"/api/sessions/{session}", headers=mine)).status == 200
    for method, path in (("GET", f"/api/sessions/{session}"), ("DELETE", f"/api/sessions/{session}"),
                         ("GET", f"/api/sessions/{session}/events?timeout=0")):
        response = await client.request(method, path, headers=theirs)
        assert response.status == 404 and await error_code(response) == "not_found", (method, path)
    sse = await client.get(f"/api/sessions/{session}/events", headers={**theirs, "Accept": "text/event-stream"})
    assert sse.status == 204  # exactly what an unknown session answers
    async with client.ws_connect("/ws", headers=theirs) as ws:
        assert json.loads((await ws.receive()).data)["type"] == "hello"
        for kind in ("resume", "cancel"):
            await ws.send_json({"type": kind, "session": session, "after": 0})
            answer = json.loads((await ws.receive()).data)
            assert answer["type"] == "error" and answer["code"] == "not_found"
    events = await (await client.get(f"/api/sessions/{session}/events?timeout=10", headers=mine)).json()
    assert events["events"]


async def test_browsers_trade_the_key_for_a_short_lived_token_in_cookie_or_query(make_client: MakeClient) -> None:
    client = await make_client(**AUTH)
    response = await client.post("/api/token", headers=bearer("key-one"))
    assert response.status == 200
    token = (await response.json())["token"]
    cookie = response.cookies["hmt_token"]
    assert cookie.value == token and cookie["httponly"] and cookie["samesite"] == "Strict"
    created = await client.post(f"/api/sessions?access_token={token}", json=BODY)
    assert created.status == 201
    session = (await created.json())["session"]
    # The same principal as the key: the session it created is readable with the key, and the other way round.
    assert (await client.get(f"/api/sessions/{session}", headers=bearer("key-one"))).status == 200
    sse = await client.get(f"/api/sessions/{session}/events?access_token={token}",
                           headers={"Accept": "text/event-stream"})
    assert sse.status == 200 and "event: done" in await sse.text()
    client.session.cookie_jar.update_cookies({"hmt_token": token})
    async with client.ws_connect("/ws") as ws:
        assert json.loads((await ws.receive()).data)["type"] == "hello"
    expired = jwt.encode({"sub": "key:x", "exp": int(time.time()) - 5}, SECRET, algorithm="HS256")
    assert (await client.post("/api/sessions", json=BODY, headers=bearer(expired))).status == 401
    forged = jwt.encode({"sub": "key:x", "exp": int(time.time()) + 60}, "x" * 48, algorithm="HS256")
    assert (await client.post("/api/sessions", json=BODY, headers=bearer(forged))).status == 401


async def test_cross_site_websockets_and_state_changes_are_refused(make_client: MakeClient) -> None:
    client = await make_client(auth__allowed_origins=("https://app.example.com",))
    evil = {"Origin": "https://evil.example"}
    response = await client.post("/api/sessions", json=BODY, headers=evil)
    assert response.status == 403 and await error_code(response) == "forbidden_origin"
    assert (await client.delete("/api/sessions/x", headers=evil)).status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers=evil)
    assert refused.value.status == 403
    own = {"Origin": f"http://{client.host}:{client.port}"}
    assert (await client.post("/api/sessions", json=BODY, headers=own)).status == 201
    allowed = {"Origin": "https://app.example.com"}
    assert (await client.post("/api/sessions", json=BODY, headers=allowed)).status == 201
    async with client.ws_connect("/ws", headers=allowed) as ws:
        assert json.loads((await ws.receive()).data)["type"] == "hello"
    # Reading is not a state change: a cross-site GET is answered (and needs the session id anyway).
    assert (await client.get("/api/languages", headers=evil)).status == 200


async def test_the_rate_limit_counts_translations_across_all_transports(make_client: MakeClient) -> None:
    client = await make_client(limits__rate="3/minute")
    assert (await client.post("/api/sessions", json=BODY)).status == 201
    assert (await client.post("/api/translate", json={**BODY, "text": "two"})).status == 200
    async with client.ws_connect("/ws") as ws:
        assert json.loads((await ws.receive()).data)["type"] == "hello"
        await ws.send_json({"type": "translate", **BODY, "text": "three", "ref": "3"})
        assert json.loads((await ws.receive()).data)["ref"] == "3"
        await ws.send_json({"type": "translate", **BODY, "text": "four", "ref": "4"})
        while (answer := json.loads((await ws.receive()).data)).get("type") != "error":
            pass
        assert answer["code"] == "rate_limited" and answer["ref"] == "4" and answer["retry_after"] >= 1
    for path in ("/api/sessions", "/api/translate"):
        response = await client.post(path, json=BODY)
        assert response.status == 429 and await error_code(response) == "rate_limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 60


async def test_the_rate_limit_is_per_key(make_client: MakeClient) -> None:
    client = await make_client(limits__rate="1/minute", **AUTH)
    assert (await client.post("/api/sessions", json=BODY, headers=bearer("key-one"))).status == 201
    assert (await client.post("/api/sessions", json=BODY, headers=bearer("key-one"))).status == 429
    assert (await client.post("/api/sessions", json=BODY, headers=bearer("key-two"))).status == 201


async def test_oversized_bodies_and_frames(make_client: MakeClient) -> None:
    client = await make_client(limits__max_body_bytes=2048, limits__max_ws_frame_bytes=2048)
    response = await client.post("/api/sessions", data=b'{"text": "' + b"a" * 4096 + b'"}',
                                 headers={"Content-Type": "application/json"})
    assert response.status == 413 and await error_code(response) == "too_large"
    async with client.ws_connect("/ws") as ws:
        assert json.loads((await ws.receive()).data)["type"] == "hello"
        await ws.send_str(json.dumps({"type": "translate", "text": "a" * 4096, "target": "fr"}))
        closing = await ws.receive()
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1009
    # Everyone else is still served.
    assert (await client.post("/api/translate", json=BODY)).status == 200
