"""Cross-site protection: the origin rule (hmt_stream/transports/origin.py), the Host allow-list against DNS
rebinding, what trusted proxies may tell, and the security headers of every answer."""

import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from hmt_stream.app import create_app
from hmt_stream.transports.origin import accept_form_bodies

from ..conftest import make_settings
from .conftest import MakeClient
from .test_guard import AUTH, BODY, KEYS, bearer, error_of

PUBLIC = "http://translate.example:8081"  # where the browser thinks the page is, behind a proxy
# nginx's default: the upstream's address as Host (proxy_pass http://127.0.0.1:<port>).
REWRITTEN = {"Origin": PUBLIC, "Host": "127.0.0.1:9"}
EVIL = {"Origin": "https://evil.example"}


async def refused(response: aiohttp.ClientResponse, code: str = "forbidden_origin") -> str:
    assert response.status == 403, (response.status, await response.text())
    error = await error_of(response)
    assert error["code"] == code
    return error["message"]


async def ws_status(client: TestClient[Any, Any], headers: dict[str, str], path: str = "/ws") -> int:
    try:
        async with client.ws_connect(path, headers=headers) as ws:
            assert json.loads((await ws.receive()).data)["type"] == "hello"
            return 101
    except aiohttp.WSServerHandshakeError as error:
        return error.status


async def test_cross_site_websockets_and_state_changes_are_refused(make_client: MakeClient) -> None:
    client = await make_client(auth__allowed_origins=("https://app.example.com",))
    response = await client.post("/api/sessions", data="{}", headers={**EVIL, "Content-Type": "text/plain"})
    await refused(response)
    assert (await client.delete("/api/sessions/x", headers={**EVIL, "Sec-Fetch-Site": "cross-site"})).status == 403
    assert await ws_status(client, EVIL) == 403
    own = {"Origin": f"http://{client.host}:{client.port}"}
    assert (await client.post("/api/sessions", json=BODY, headers=own)).status == 201
    allowed = {"Origin": "https://app.example.com"}
    assert (await client.post("/api/sessions", json=BODY, headers=allowed)).status == 201
    assert await ws_status(client, allowed) == 101
    # Reading is not a state change: a cross-site GET is answered (and needs the session id anyway).
    assert (await client.get("/api/languages", headers=EVIL)).status == 200


async def test_auth_off_a_proxy_that_rewrites_host_still_gets_json_requests_through(make_client: MakeClient) -> None:
    client = await make_client()
    # What the page sends: JSON, which a page of another site could only send after a CORS preflight (refused).
    created = await client.post("/api/sessions", json=BODY, headers=REWRITTEN)
    assert created.status == 201
    session = (await created.json())["session"]
    assert (await client.delete(f"/api/sessions/{session}", headers=REWRITTEN)).status == 200
    # What any site's page may send without asking: refused, and the message says what this API wants.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""):
        headers = {**REWRITTEN, "Content-Type": content_type} if content_type else REWRITTEN
        message = await refused(await client.post("/api/sessions", data=b"{}", headers=headers,
                                                  skip_auto_headers=["Content-Type"]))
        assert "Content-Type: application/json" in message, content_type
    # A browser that says the request is cross-site is believed, JSON or not.
    marked = {**REWRITTEN, "Sec-Fetch-Site": "cross-site"}
    await refused(await client.post("/api/sessions", json=BODY, headers=marked))
    # WebSocket upgrades have no preflight: the page steps down to SSE behind such a proxy.
    assert await ws_status(client, REWRITTEN) == 403


async def test_auth_on_a_mismatch_is_refused_with_what_to_do(make_client: MakeClient) -> None:
    client = await make_client(**AUTH)
    message = await refused(await client.post("/api/sessions", json=BODY, headers={**REWRITTEN, **bearer(KEYS[0])}))
    assert f'auth.allowed_origins = ["{PUBLIC}"]' in message
    assert "proxy_set_header Host $http_host;" in message and "X-Forwarded-Host" in message
    assert "'127.0.0.1:9'" in message  # the host the server was reached as
    assert await ws_status(client, {**REWRITTEN, **bearer(KEYS[0])}) == 403
    # An evil origin stays out on every door, with a valid key or token in hand.
    token = (await (await client.post("/api/token", headers=bearer(KEYS[0]))).json())["token"]
    await refused(await client.post("/api/sessions", json=BODY, headers={**EVIL, **bearer(KEYS[0])}))
    await refused(await client.post("/api/token", headers={**EVIL, **bearer(KEYS[0])}))
    assert await ws_status(client, EVIL, f"/ws?access_token={token}") == 403


async def test_the_browser_saying_same_origin_proves_it(make_client: MakeClient) -> None:
    client = await make_client(**AUTH)
    same = {**REWRITTEN, **bearer(KEYS[0]), "Sec-Fetch-Site": "same-origin"}
    assert (await client.post("/api/sessions", json=BODY, headers=same)).status == 201
    assert await ws_status(client, same) == 101


async def test_the_document_routes_follow_the_same_rule(make_client: MakeClient) -> None:
    documents = (("/api/prompts", BODY), ("/api/detect", {"text": BODY["text"]}))
    page = await make_client()  # auth off, behind a proxy that rewrote Host: the page's JSON gets through
    for path, body in documents:
        assert (await page.post(path, json=body, headers=REWRITTEN)).status == 200, path
        await refused(await page.post(path, data=b"{}", headers={**REWRITTEN, "Content-Type": "text/plain"}))
        await refused(await page.post(path, json=body, headers={**REWRITTEN, "Sec-Fetch-Site": "cross-site"}))
        rebound = {"Host": "evil.example:8080", "Origin": "http://evil.example:8080"}
        await refused(await page.post(path, json=body, headers=rebound), "forbidden_host")
    guarded = await make_client(**AUTH)
    for path, body in documents:
        assert (await guarded.post(path, json=body, headers=bearer(KEYS[0]))).status == 200, path
        await refused(await guarded.post(path, json=body, headers={**EVIL, **bearer(KEYS[0])}))


@pytest.mark.parametrize("forwarded", [{"X-Forwarded-Host": "translate.example:8081"},
                                       {"Forwarded": 'for=192.0.2.1;host="translate.example:8081";proto=http'}])
async def test_a_forwarded_host_counts_only_from_a_trusted_proxy(make_client: MakeClient,
                                                                 forwarded: dict[str, str]) -> None:
    headers = {**REWRITTEN, **forwarded, **bearer(KEYS[0])}
    untrusted = await make_client(**AUTH, server__allowed_hosts=("translate.example",))
    await refused(await untrusted.post("/api/sessions", json=BODY, headers=headers))
    assert await ws_status(untrusted, headers) == 403
    trusted = await make_client(**AUTH, server__trusted_proxies=("127.0.0.0/8",),
                                server__allowed_hosts=("translate.example",))
    assert (await trusted.post("/api/sessions", json=BODY, headers=headers)).status == 201
    assert await ws_status(trusted, headers) == 101


async def test_a_star_in_allowed_origins_allows_every_origin(make_client: MakeClient) -> None:
    headers = {**EVIL, **bearer(KEYS[0])}
    closed = await make_client(**AUTH, auth__allowed_origins=("https://app.example.com",))
    await refused(await closed.post("/api/sessions", json=BODY, headers=headers))
    opened = await make_client(**AUTH, auth__allowed_origins=("*",))
    assert (await opened.post("/api/sessions", json=BODY, headers=headers)).status == 201
    assert await ws_status(opened, headers) == 101


async def test_routes_that_speak_forms_opt_in_to_them(aiohttp_client: Any, demo_dir: Any, engine: Any) -> None:
    app = create_app(make_settings(demo_dir), engine=engine)

    async def form(request: web.Request) -> web.Response:
        return web.json_response(dict(await request.post()))

    app.router.add_post("/form", form)
    accept_form_bodies(app, "/form")
    client: TestClient[Any, Any] = await aiohttp_client(app)
    answer = await client.post("/form", data={"q": "hi"}, headers=REWRITTEN)
    assert answer.status == 200 and await answer.json() == {"q": "hi"}
    # Only there, only forms, and never what the browser marks as cross-site.
    await refused(await client.post("/api/sessions", data={"q": "hi"}, headers=REWRITTEN))
    await refused(await client.post("/form", data=b"q=hi", headers={**REWRITTEN, "Content-Type": "text/plain"}))
    await refused(await client.post("/form", data={"q": "hi"}, headers={**REWRITTEN, "Sec-Fetch-Site": "cross-site"}))


async def test_a_loopback_server_answers_only_to_local_host_names(make_client: MakeClient) -> None:
    client = await make_client()
    rebound = {"Host": "evil.example:8080", "Origin": "http://evil.example:8080"}
    for method, path in (("GET", "/"), ("GET", "/api/health"), ("POST", "/api/sessions")):
        message = await refused(await client.request(method, path, json=BODY, headers=rebound), "forbidden_host")
        assert "server.allowed_hosts" in message and "'evil.example'" in message
    assert await ws_status(client, rebound) == 403
    for host in ("localhost:8080", "127.0.0.1:8080", "[::1]:8080", "app.localhost", "LOCALHOST"):
        assert (await client.get("/api/health", headers={"Host": host})).status == 200, host
    # A trusted proxy's forwarded host is held to the same list.
    proxied = await make_client(server__trusted_proxies=("127.0.0.1",))
    await refused(await proxied.get("/api/health", headers={"X-Forwarded-Host": "evil.example"}), "forbidden_host")
    allowed = await make_client(server__allowed_hosts=("evil.example",))
    assert (await allowed.post("/api/sessions", json=BODY, headers=rebound)).status == 201
    everywhere = await make_client(server__host="0.0.0.0")
    assert (await everywhere.get("/api/health", headers=rebound)).status == 200


async def test_the_cookie_is_secure_behind_a_trusted_tls_proxy(make_client: MakeClient) -> None:
    for proxies, secure in (((), False), (("127.0.0.1",), True)):
        client = await make_client(**AUTH, server__trusted_proxies=proxies)
        for header in ({"X-Forwarded-Proto": "https"}, {"Forwarded": "proto=https"}):
            response = await client.post("/api/token", headers={**bearer(KEYS[0]), **header})
            assert bool(response.cookies["hmt_token"]["secure"]) is secure, (proxies, header)


async def test_the_client_address_comes_from_a_trusted_proxy_only(make_client: MakeClient) -> None:
    for proxies, limited_second in (((), True), (("127.0.0.1",), False)):
        client = await make_client(limits__rate="1/minute", server__trusted_proxies=proxies)
        assert (await client.post("/api/sessions", json=BODY, headers={"X-Forwarded-For": "192.0.2.1"})).status == 201
        second = await client.post("/api/sessions", json=BODY, headers={"X-Forwarded-For": "192.0.2.2"})
        assert (second.status == 429) is limited_second, proxies
    # Of a chain, the nearest address that no trusted proxy holds is the client; what it wrote itself is ignored.
    chained = {"X-Forwarded-For": "203.0.113.9, 192.0.2.3, 127.0.0.1"}
    assert (await client.post("/api/sessions", json=BODY, headers=chained)).status == 201
    assert (await client.post("/api/sessions", json=BODY,
                              headers={"X-Forwarded-For": "198.51.100.1, 192.0.2.3"})).status == 429


async def test_every_answer_carries_the_security_headers_and_no_server_banner(make_client: MakeClient) -> None:
    client = await make_client()
    session = (await (await client.post("/api/sessions", json=BODY)).json())["session"]
    answers = [await client.get(path) for path in ("/", "/static/app.js", "/static/style.css", "/api/health",
                                                   "/api/nothing-here", f"/api/sessions/{session}")]
    answers.append(await client.get(f"/api/sessions/{session}/events", headers={"Accept": "text/event-stream"}))
    for response in answers:
        headers = response.headers
        assert "Server" not in headers, (response.url, headers.get("Server"))
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    ws = await client.ws_connect("/ws")
    await ws.close()
