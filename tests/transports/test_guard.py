"""Auth and tenancy on every transport: keys, browser tokens, JWTs, session and cache ownership, failed sign-ins."""

import asyncio
import json
import time
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestClient

from hmt_stream import config
from hmt_stream.errors import ConfigError

from .conftest import LONG, MakeClient

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
KEYS = ("key-one-0123456789", "key-two-0123456789")
AUTH = {"auth__enabled": True, "auth__api_keys": KEYS, "auth__jwt_secret": SECRET}
BODY = {"text": "Guarded", "source": "en", "target": "fr"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def error_of(response: aiohttp.ClientResponse) -> dict[str, str]:
    error: dict[str, str] = (await response.json())["error"]
    return error


async def error_code(response: aiohttp.ClientResponse) -> str:
    return (await error_of(response))["code"]


async def token_for(client: TestClient[Any, Any], headers: dict[str, str]) -> str:
    response = await client.post("/api/token", headers=headers)
    assert response.status == 200, await response.text()
    return str((await response.json())["token"])


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def idp_jwt(sub: str, **extra: Any) -> str:
    """A JWT as an identity provider that shares auth.jwt_secret would sign it."""
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 60, **extra}, SECRET, algorithm="HS256")


async def test_auth_off_needs_no_credentials(client: TestClient[Any, Any]) -> None:
    response = await client.post("/api/sessions", json=BODY)
    assert response.status == 201
    session = (await response.json())["session"]
    assert (await client.get(f"/api/sessions/{session}")).status == 200
    token = await client.post("/api/token")  # nothing to trade: a clear refusal, not a token
    assert token.status == 400 and await error_code(token) == "bad_request"
    assert "auth is switched off" in (await error_of(token))["message"]


async def test_without_or_with_a_wrong_key_every_transport_answers_401(make_client: MakeClient) -> None:
    client = await make_client(**AUTH)
    for headers in ({}, bearer("wrong"), bearer("")):
        for method, path in (("POST", "/api/sessions"), ("POST", "/api/translate"), ("GET", "/api/sessions/x"),
                             ("GET", "/api/sessions/x/events"), ("DELETE", "/api/sessions/x"),
                             ("POST", "/api/prompts"), ("POST", "/api/detect")):
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
    created = await client.post("/api/sessions", json=BODY, headers=bearer(KEYS[0]))
    assert created.status == 201
    session = (await created.json())["session"]
    mine, theirs = bearer(KEYS[0]), bearer(KEYS[1])
    assert (await client.get(f"/api/sessions/{session}", headers=mine)).status == 200
    for method, path in (("GET", f"/api/sessions/{session}"), ("DELETE", f"/api/sessions/{session}"),
                         ("GET", f"/api/sessions/{session}/events?timeout=0")):
        response = await client.request(method, path, headers=theirs)
        assert response.status == 404 and await error_code(response) == "not_found", (method, path)
    sse = await client.get(f"/api/sessions/{session}/events", headers={**theirs, "Accept": "text/event-stream"})
    assert sse.status == 204  # exactly what an unknown session answers
    one_shot = (await (await client.post("/api/translate", json=BODY, headers=mine)).json())["session"]
    assert (await client.get(f"/api/sessions/{one_shot}", headers=theirs)).status == 404
    assert (await client.get(f"/api/sessions/{one_shot}", headers=mine)).status == 200
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
    response = await client.post("/api/token", headers=bearer(KEYS[0]))
    assert response.status == 200
    token = (await response.json())["token"]
    cookie = response.cookies["hmt_token"]
    assert cookie.value == token and cookie["httponly"] and cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"  # sent to /ws and /api/..., not only below /api/token's folder
    assert not cookie["secure"]  # plain http, no trusted proxy saying otherwise
    created = await client.post(f"/api/sessions?access_token={token}", json=BODY)
    assert created.status == 201
    session = (await created.json())["session"]
    # The same principal as the key: the session it created is readable with the key, and the other way round.
    assert (await client.get(f"/api/sessions/{session}", headers=bearer(KEYS[0]))).status == 200
    sse = await client.get(f"/api/sessions/{session}/events?access_token={token}",
                           headers={"Accept": "text/event-stream"})
    assert sse.status == 200 and "event: done" in await sse.text()
    client.session.cookie_jar.update_cookies({"hmt_token": token})
    async with client.ws_connect("/ws") as ws:
        assert json.loads((await ws.receive()).data)["type"] == "hello"
    client.session.cookie_jar.clear()
    # A token signed with anything but its key's own secret is worthless, whatever it claims.
    header = jwt.get_unverified_header(token)
    forged = jwt.encode(claims(token), "x" * 48, algorithm="HS256", headers={"kid": header["kid"]})
    assert (await client.post("/api/sessions", json=BODY, headers=bearer(forged))).status == 401


async def test_api_keys_are_accepted_only_in_the_authorization_header(make_client: MakeClient) -> None:
    client = await make_client(**AUTH)
    in_query = await client.post(f"/api/sessions?access_token={KEYS[0]}", json=BODY)
    assert in_query.status == 401 and "Authorization header" in (await error_of(in_query))["message"]
    client.session.cookie_jar.update_cookies({"hmt_token": KEYS[0]})
    assert (await client.post("/api/sessions", json=BODY)).status == 401
    client.session.cookie_jar.clear()
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect(f"/ws?access_token={KEYS[0]}")
    assert (await client.post("/api/sessions", json=BODY, headers=bearer(KEYS[0]))).status == 201


async def test_the_token_lifetime_is_auth_token_ttl_s(make_client: MakeClient) -> None:
    tokens = {}
    for ttl in (1, 120):
        client = await make_client(**AUTH, auth__token_ttl_s=ttl)
        response = await client.post("/api/token", headers=bearer(KEYS[0]))
        body = await response.json()
        assert body["expires_in"] == ttl
        assert response.cookies["hmt_token"]["max-age"] == str(ttl)
        issued = claims(body["token"])
        assert issued["exp"] - issued["iat"] == ttl
        tokens[ttl] = (client, body["token"])
    await asyncio.sleep(2.1)
    for ttl, (client, token) in tokens.items():
        answer = await client.post(f"/api/sessions?access_token={token}", json=BODY)
        assert answer.status == (201 if ttl == 120 else 401), ttl


async def test_only_a_key_mints_tokens_and_renewals_never_pass_the_sign_in_s_end(make_client: MakeClient) -> None:
    client = await make_client(**AUTH, auth__token_ttl_s=600, auth__signin_ttl_s=3600)
    first = await token_for(client, bearer(KEYS[0]))
    end = claims(first)["end"]
    assert end - claims(first)["iat"] == 3600
    renewed = await token_for(client, bearer(first))
    client.session.cookie_jar.update_cookies({"hmt_token": renewed})
    again = await token_for(client, {})  # the page renews with its cookie
    client.session.cookie_jar.clear()
    for token in (renewed, again):
        assert claims(token)["end"] == end and claims(token)["exp"] <= end
        assert claims(token)["sub"] == claims(first)["sub"]
    # An identity provider's JWT reads and writes, but does not mint browser tokens.
    idp = await client.post("/api/token", headers=bearer(idp_jwt("alice")))
    assert idp.status == 400 and await error_code(idp) == "bad_request"

    # A sign-in of three seconds: a renewal within them keeps their end, and after them there is none.
    short = await make_client(**AUTH, auth__token_ttl_s=600, auth__signin_ttl_s=3)
    token = await token_for(short, bearer(KEYS[0]))
    assert claims(token)["exp"] == claims(token)["end"] == claims(token)["iat"] + 3
    await asyncio.sleep(1.1)
    renewed = await token_for(short, bearer(token))
    assert claims(renewed)["end"] == claims(token)["end"] and claims(renewed)["exp"] <= claims(token)["end"]
    await asyncio.sleep(max(0.0, claims(token)["end"] - time.time()) + 1.1)
    expired = await short.post("/api/token", headers=bearer(renewed))
    assert expired.status == 401


async def test_a_token_dies_with_its_key_even_across_a_restart(make_client: MakeClient) -> None:
    before = await make_client(**AUTH)
    token = await token_for(before, bearer(KEYS[0]))
    restarted = await make_client(**AUTH)  # same keys, a new process: the token still works
    assert (await restarted.post("/api/sessions", json=BODY, headers=bearer(token))).status == 201
    without_it = await make_client(**{**AUTH, "auth__api_keys": (KEYS[1],)})
    refused = await without_it.post("/api/sessions", json=BODY, headers=bearer(token))
    assert refused.status == 401 and "no longer accepted" in (await error_of(refused))["message"]
    assert (await without_it.post("/api/token", headers=bearer(token))).status == 401


async def test_jwt_subjects_live_in_their_own_namespace(make_client: MakeClient) -> None:
    client = await make_client(**AUTH)
    created = await client.post("/api/sessions", json=BODY, headers=bearer(KEYS[0]))
    session = (await created.json())["session"]
    key_principal = claims(await token_for(client, bearer(KEYS[0])))["sub"]
    assert key_principal.startswith("key:")
    impostor = bearer(idp_jwt(key_principal))  # a JWT whose subject spells the key's principal
    assert (await client.get(f"/api/sessions/{session}", headers=impostor)).status == 404
    own = await client.post("/api/sessions", json=BODY, headers=impostor)
    assert own.status == 201
    assert (await client.get(f"/api/sessions/{(await own.json())['session']}", headers=bearer(KEYS[0]))).status \
        == 404
    for empty in ("", "  "):
        assert (await client.post("/api/sessions", json=BODY, headers=bearer(idp_jwt(empty)))).status == 401
    expired = jwt.encode({"sub": "alice", "exp": int(time.time()) - 5}, SECRET, algorithm="HS256")
    assert (await client.post("/api/sessions", json=BODY, headers=bearer(expired))).status == 401
    # Without auth.jwt_secret no JWT is accepted, whoever signed it.
    no_idp = await make_client(**{**AUTH, "auth__jwt_secret": ""})
    assert (await no_idp.post("/api/sessions", json=BODY, headers=bearer(idp_jwt("alice")))).status == 401


async def test_jwt_audience_and_issuer_are_checked_when_configured(make_client: MakeClient) -> None:
    client = await make_client(**AUTH, auth__jwt_audience="hmt-stream", auth__jwt_issuer="https://idp.example")
    good = {"aud": "hmt-stream", "iss": "https://idp.example"}
    assert (await client.post("/api/sessions", json=BODY, headers=bearer(idp_jwt("alice", **good)))).status == 201
    for wrong in ({}, {**good, "aud": "other"}, {**good, "iss": "https://evil.example"}, {"aud": "hmt-stream"},
                  {"iss": "https://idp.example"}):
        response = await client.post("/api/sessions", json=BODY, headers=bearer(idp_jwt("alice", **wrong)))
        assert response.status == 401, wrong


def test_short_api_keys_are_refused_at_start_up() -> None:
    with pytest.raises(ConfigError, match=r"auth\.api_keys: .*at least 16 characters"):
        config.Settings().replace({"auth.api_keys": ("long-enough-key-0001", "short-key")})
    with pytest.raises(ConfigError, match=r"auth\.api_keys"):
        config.load(environ={"HMT_AUTH_API_KEYS": "abc"})
    assert config.Settings().replace({"auth.api_keys": ("a" * 16,)}).auth.api_keys == ("a" * 16,)


async def test_failed_authentications_are_throttled_per_address(make_client: MakeClient) -> None:
    client = await make_client(**AUTH, auth__failure_rate="3/minute", server__trusted_proxies=("127.0.0.1",))
    for _ in range(5):  # no credential at all costs nothing: the page asks this way before it has a key
        assert (await client.post("/api/sessions", json=BODY)).status == 401
    for _ in range(3):
        assert (await client.post("/api/sessions", json=BODY, headers=bearer("wrong-key-0123456789"))).status == 401
    throttled = await client.post("/api/sessions", json=BODY, headers=bearer(KEYS[0]))
    assert throttled.status == 429 and await error_code(throttled) == "rate_limited"
    assert int(throttled.headers["Retry-After"]) >= 1
    # Another client address (as a trusted proxy reports it) is not held back by this one's failures.
    elsewhere = {**bearer(KEYS[0]), "X-Forwarded-For": "192.0.2.7"}
    assert (await client.post("/api/sessions", json=BODY, headers=elsewhere)).status == 201


async def test_a_websocket_is_closed_with_4401_when_its_token_expires(make_client: MakeClient) -> None:
    client = await make_client(**AUTH, **LONG, auth__token_ttl_s=2)
    token = await token_for(client, bearer(KEYS[0]))
    async with client.ws_connect(f"/ws?access_token={token}") as ws, asyncio.timeout(30):
        assert json.loads((await ws.receive()).data)["type"] == "hello"
        await ws.send_json({"type": "translate", **BODY, "text": "Hello there, how are you?", "ref": "r"})
        session = None
        while (message := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
            session = session or json.loads(message.data).get("session")
        assert ws.close_code == 4401 and "token expired" in str(message.extra)
    # The session carries on, for the same key to resume once signed in again.
    assert session is not None
    fresh = await token_for(client, bearer(KEYS[0]))
    assert (await client.get(f"/api/sessions/{session}?access_token={fresh}")).status == 200


async def test_the_phrase_cache_is_scoped_to_the_key_unless_shared(make_client: MakeClient) -> None:
    for shared, other_hits in ((False, False), (True, True)):
        client = await make_client(**AUTH, cache__shared=shared)
        text = {**BODY, "text": "A private sentence of key one."}
        first = await (await client.post("/api/translate", json=text, headers=bearer(KEYS[0]))).json()
        again = await (await client.post("/api/translate", json=text, headers=bearer(KEYS[0]))).json()
        assert (first["cached"], again["cached"]) == (False, True)
        other = await (await client.post("/api/translate", json=text, headers=bearer(KEYS[1]))).json()
        assert other["cached"] is other_hits, shared
        if not other_hits:
            assert other["ttft_ms"] > 0
    # With auth off there are no tenants: two client addresses share the cache.
    open_client = await make_client(server__trusted_proxies=("127.0.0.1",))
    text = {**BODY, "text": "Shared by all"}
    for address, cached in (("192.0.2.1", False), ("192.0.2.2", True)):
        answer = await open_client.post("/api/translate", json=text, headers={"X-Forwarded-For": address})
        assert (await answer.json())["cached"] is cached


async def test_health_names_the_model_without_its_local_path(make_client: MakeClient, demo_dir: Any) -> None:
    client = await make_client(model__name=str(demo_dir))
    health = await (await client.get("/api/health")).json()
    assert health["model"] == demo_dir.name and str(demo_dir.parent) not in json.dumps(health)
    hub = await make_client(model__name="tencent/Hunyuan-MT-7B")
    assert (await (await hub.get("/api/health")).json())["model"] == "tencent/Hunyuan-MT-7B"
