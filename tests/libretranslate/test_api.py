"""The LibreTranslate-compatible API on the wire: q lists, HTML, errors in its shape, the same path as every other
request (auth, limits, cache, detection, metrics), files and their downloads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import FormData
from aiohttp.test_utils import TestClient
from yarl import URL

from hmt_stream.app import create_app
from hmt_stream.engine.scripted import Script, ScriptedEngine
from hmt_stream.transports.libre_files import FILES

from ..conftest import MakeClient, make_settings
from ..transports.conftest import LONG, create, translator_of

KEY = "libre-client-key-0001"
AUTH = {"auth__enabled": True, "auth__api_keys": (KEY,)}
WORDS = ["river", "mountain", "lantern", "harbour", "meadow"]


async def translate(client: TestClient[Any, Any], status: int = 200, **body: Any) -> Any:
    response = await client.post("/translate", json=body)
    assert response.status == status, await response.text()
    return await response.json()


async def test_a_list_of_50_texts_answers_50_in_order_through_the_cache(client: TestClient[Any, Any]) -> None:
    cache = translator_of(client).cache
    alone = {word: (await translate(client, q=f"The {word} at night.", source="en", target="fr"))["translatedText"]
             for word in WORDS}
    assert (cache.hits, cache.misses) == (0, 5)
    texts = [f"The {WORDS[(i * 3) % 5]} at night." for i in range(50)]
    answer = await translate(client, q=texts, source="en", target="fr")
    assert set(answer) == {"translatedText"}
    assert answer["translatedText"] == [alone[text.split()[1]] for text in texts]  # each in its place
    assert (cache.hits, cache.misses) == (50, 5)
    fresh = [f"Line {number}: the {WORDS[number % 5]} is quiet." for number in range(50)]
    answer = await translate(client, q=fresh, source="en", target="de", alternatives=2)
    assert len(answer["translatedText"]) == 50 and all(isinstance(t, str) for t in answer["translatedText"])
    assert answer["alternatives"] == [[]] * 50
    assert cache.misses == 55


async def test_a_list_with_auto_source_has_a_detection_for_each_text(client: TestClient[Any, Any]) -> None:
    texts = ["Der Hase lachte laut über die Schildkröte.", "", "Le lièvre se moquait de la tortue.", "12345"]
    answer = await translate(client, q=texts, source="auto", target="en")
    assert [d["language"] for d in answer["detectedLanguage"]] == ["de", "en", "fr", "en"]
    assert [d["confidence"] > 0 for d in answer["detectedLanguage"]] == [True, False, True, False]
    assert answer["translatedText"][1] == "" and answer["translatedText"][3] == "12345"  # nothing to translate


async def test_detect_answers_their_codes_with_confidence_in_percent(client: TestClient[Any, Any]) -> None:
    chinese = (("今天天气很好，我们去公园散步吧。", "zh-Hans"), ("今天天氣很好，我們去公園散步吧。", "zh-Hant"))
    for text, code in chinese:
        found = await (await client.post("/detect", data={"q": text})).json()
        assert found[0]["language"] == code and 50 < found[0]["confidence"] <= 100
    assert await (await client.post("/detect", json={"q": "1234 !!"})).json() == [{"confidence": 0.0,
                                                                                   "language": "en"}]


async def test_html_keeps_its_markup(client: TestClient[Any, Any]) -> None:
    page = '<div class="note"><p>The <b>quick</b> fox.</p>\n<p>It ran <a href="/x">home</a>.</p></div>'
    answer = await translate(client, q=page, source="en", target="fr", format="html")
    html = answer["translatedText"]
    assert html.startswith('<div class="note"><p>') and html.endswith("</p></div>")
    assert html.count("<p>") == 2 and '<a href="/x">' in html and "</a>" in html
    listed = await translate(client, q=[page, "<h2>Hi there</h2>"], source="en", target="fr", format="html")
    assert listed["translatedText"][0] == html  # from the cache
    assert listed["translatedText"][1].startswith("<h2>") and listed["translatedText"][1].endswith("</h2>")


async def test_bad_parameters_are_400_with_their_error(make_client: MakeClient) -> None:
    client = await make_client(generation__max_chars=50)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"source": "en", "target": "es"}, "Invalid request: missing q parameter"),
        ({"q": "Hello", "target": "es"}, "Invalid request: missing source parameter"),
        ({"q": "Hello", "source": "en"}, "Invalid request: missing target parameter"),
        ({"q": "Hello", "source": "en", "target": "zz"}, "zz is not supported"),
        ({"q": "Hello", "source": "xx", "target": "es"}, "xx is not supported"),
        ({"q": "Hello", "source": "en", "target": "auto"}, "auto is not supported"),
        ({"q": "Hello", "source": "en", "target": "es", "format": "xml"}, "xml format is not supported"),
        ({"q": "Hello", "source": "en", "target": "es", "alternatives": "x"},
         "Invalid request: alternatives parameter is not a number"),
        ({"q": ["Hello", 3], "source": "en", "target": "es"},
         "Invalid request: q must be a string or a list of strings"),
    ]
    for body, message in cases:
        assert await translate(client, 400, **body) == {"error": message}, body
    assert "50" in (await translate(client, 400, q="a" * 51, source="en", target="es"))["error"]
    form = await client.post("/translate", data={"q": "Hello", "source": "en", "target": "zz"})
    assert form.status == 400 and await form.json() == {"error": "zz is not supported"}
    broken = await client.post("/translate", data=b"{nope", headers={"Content-Type": "application/json"})
    assert broken.status == 400 and isinstance((await broken.json())["error"], str)
    assert (await client.post("/detect", json={})).status == 400


async def test_rate_limits_are_429_in_their_shape_and_a_list_costs_one_per_text(make_client: MakeClient) -> None:
    client = await make_client(limits__rate="3/minute")
    await translate(client, q=["One.", "Two."], source="en", target="fr")
    refused = await client.post("/translate", json={"q": ["Three.", "Four."], "source": "en", "target": "fr"})
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    assert (await refused.json())["error"].startswith("Slowdown: over the limit of 3 per 1 minute")
    assert (await client.post("/translate", json={"q": "Five.", "source": "en", "target": "fr"})).status == 429


async def test_a_refusal_part_way_through_a_list_cancels_its_other_translations(make_client: MakeClient) -> None:
    client = await make_client(limits__rate="3/minute", **LONG)
    refused = await client.post("/translate", json={"q": [f"Story {n} of the long night." for n in range(5)],
                                                    "source": "en", "target": "fr"})
    assert refused.status == 429
    sessions = translator_of(client).store.all()
    assert len(sessions) == 3
    for _ in range(100):  # each stops at its next token (well inside the 20 s an unread session is left running)
        if all(session.finished for session in sessions):
            break
        await asyncio.sleep(0.05)
    assert [session.state for session in sessions] == ["cancelled"] * 3


async def test_characters_are_rate_limited_too(make_client: MakeClient) -> None:
    client = await make_client(limits__chars_per_minute=30)
    await translate(client, q="Twenty characters ok", source="en", target="fr")
    refused = await client.post("/translate", data={"q": "Fifteen chars!!", "source": "en", "target": "fr"})
    assert refused.status == 429 and "characters" in (await refused.json())["error"]


async def test_a_model_failure_is_500_and_the_server_goes_on(aiohttp_client: Any, demo_dir: Path) -> None:
    # Fault injection: the scripted engine (not a model) fails after two tokens.
    app = create_app(make_settings(demo_dir, cache__enabled=False), engine=ScriptedEngine(Script(fail_after=2)))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    body = await translate(client, 500, q=["Fails half way.", "So does this."], source="en", target="fr")
    assert set(body) == {"error"} and "error id" in body["error"]
    assert (await client.get("/languages")).status == 200


async def test_keys_in_the_body_or_the_bearer_header_and_nowhere_else(make_client: MakeClient) -> None:
    client = await make_client(**AUTH)
    body = {"q": "Good night.", "source": "en", "target": "fr"}
    assert (await client.post("/translate", json={**body, "api_key": KEY})).status == 200
    assert (await client.post("/translate", data={**body, "api_key": KEY})).status == 200
    assert (await client.post("/translate", json=body, headers={"Authorization": f"Bearer {KEY}"})).status == 200
    for refused in (await client.post("/translate", json=body),
                    await client.post("/translate", json={**body, "api_key": "wrong-key-wrong-key"}),
                    await client.post(f"/translate?access_token={KEY}", json=body)):
        assert refused.status == 403 and set(await refused.json()) == {"error"}
    # The body's key is this API's exception: the native API still takes keys from the header only.
    native = await client.post("/api/translate", json={"text": "Good night.", "target": "fr", "api_key": KEY})
    assert native.status == 401
    assert (await client.get("/frontend/settings")).status == 200


async def test_wrong_body_keys_count_as_failed_authentications(make_client: MakeClient) -> None:
    client = await make_client(**AUTH, auth__failure_rate="2/minute")
    for _ in range(2):
        response = await client.post("/detect", data={"q": "Hallo", "api_key": "wrong-key-wrong-key"})
        assert response.status == 403
    blocked = await client.post("/detect", data={"q": "Hallo", "api_key": KEY})
    assert blocked.status == 429 and (await blocked.json())["error"].startswith("Slowdown:")


async def test_cross_site_forms_are_refused_and_same_site_ones_pass(client: TestClient[Any, Any]) -> None:
    form = {"q": "Hello", "source": "en", "target": "fr"}
    evil = await client.post("/translate", data=form, headers={"Origin": "https://evil.example",
                                                               "Sec-Fetch-Site": "cross-site"})
    assert evil.status == 403 and "evil.example" in (await evil.json())["error"]
    own = await client.post("/translate", data=form, headers={"Origin": str(client.make_url("")).rstrip("/"),
                                                              "Sec-Fetch-Site": "same-origin"})
    assert own.status == 200
    # This server's own page behind a proxy that rewrote Host: these routes take forms as others take JSON.
    proxied = await client.post("/translate", data=form, headers={"Origin": "http://translate.example:8081"})
    assert proxied.status == 200


async def test_pages_of_allowed_sites_may_call_and_read_it_others_may_not(make_client: MakeClient) -> None:
    client = await make_client(auth__allowed_origins=("https://app.example",))
    asking = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    preflight = await client.options("/translate", headers={"Origin": "https://app.example", **asking})
    assert preflight.status == 204 and preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    cross = {"Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"}
    answer = await client.post("/translate", json={"q": "Hi", "source": "en", "target": "fr"}, headers=cross)
    assert answer.status == 200 and answer.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert answer.headers["Vary"] == "Origin"
    evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    refused = await client.options("/translate", headers={**evil, **asking})
    assert refused.status == 403 and "Access-Control-Allow-Origin" not in refused.headers
    listed = await client.get("/languages", headers=evil)
    assert listed.status == 200 and "Access-Control-Allow-Origin" not in listed.headers


async def test_requests_are_counted_under_their_own_transport(client: TestClient[Any, Any]) -> None:
    await translate(client, q="Count me.", source="en", target="fr")
    await client.get("/languages")
    await translate(client, 400, q="Count me.", source="en", target="zz")
    metrics = await (await client.get("/metrics")).text()
    assert 'hmt_requests_total{transport="libretranslate"} 3.0' in metrics
    assert 'hmt_errors_total{code="bad_request"} 1.0' in metrics
    assert 'hmt_sessions_finished_total{state="done"} 1.0' in metrics


async def test_the_switch_turns_the_api_off(make_client: MakeClient) -> None:
    client = await make_client(transports__libretranslate=False)
    assert (await client.post("/translate", json={"q": "Hi", "source": "en", "target": "fr"})).status == 404
    assert (await client.get("/languages")).status == 404


def upload(name: str, content: bytes, **fields: str) -> FormData:
    form = FormData(quote_fields=False)  # the file's name as browsers and curl send it
    for key, value in {"source": "en", "target": "de", **fields}.items():
        form.add_field(key, value)
    form.add_field("file", content, filename=name)
    return form


async def test_files_are_kept_as_long_as_their_sessions(make_client: MakeClient) -> None:
    client = await make_client(session__retention_s=1.0)
    page = b"<html><body><h1>Title</h1><p>One <b>bold</b> word.</p></body></html>"
    answer = await (await client.post("/translate_file", data=upload("../../etc/pa ge.HTML", page))).json()
    url = URL(answer["translatedFileUrl"]).path
    assert url.endswith("/pa_ge.HTML")
    download = await client.get(url)
    assert download.status == 200 and download.content_type == "text/html"
    translated = await download.text()
    assert translated.startswith("<html><body><h1>") and translated.endswith("</p></body></html>")
    text = await (await client.post("/translate_file", data=upload("a.txt", b"\xef\xbb\xbfPlain words."))).json()
    assert (await client.get(URL(text["translatedFileUrl"]).path)).content_type == "text/plain"
    await asyncio.sleep(1.3)  # the sessions are evicted, and their files with them
    gone = await client.get(url)
    assert gone.status == 404 and set(await gone.json()) == {"error"}
    assert client.app is not None and len(client.app[FILES]) == 2
    await client.post("/translate_file", data=upload("b.txt", b"More words."))
    assert len(client.app[FILES]) == 1  # forgotten with their sessions


async def test_only_uploaded_files_can_be_downloaded(client: TestClient[Any, Any]) -> None:
    session_id = await create(client)  # a session of the native API: its id is no download capability
    assert (await client.get(f"/download_file/{session_id}/x.txt")).status == 404
    assert (await client.get("/download_file/nope/x.txt")).status == 404


async def test_bad_uploads_are_400(make_client: MakeClient) -> None:
    client = await make_client(**AUTH)
    cases = [
        (upload("slides.pdf", b"%PDF", api_key=KEY), "file format not supported"),
        (upload("a.txt", b"\xff\xfe\x00bad", api_key=KEY), "not UTF-8"),
        (upload("a.txt", b"  \n", api_key=KEY), "empty file"),
        (upload("a.txt", b"Hi", api_key=KEY, target="zz"), "zz is not supported"),
    ]
    for form, message in cases:
        response = await client.post("/translate_file", data=form)
        assert response.status == 400 and message in (await response.json())["error"]
    assert (await client.post("/translate_file", data=upload("a.txt", b"Hi"))).status == 403
    missing = await client.post("/translate_file", data={"source": "en", "target": "de", "api_key": KEY})
    assert await missing.json() == {"error": "Invalid request: missing file parameter"}
    ok = await client.post("/translate_file", data=upload("a.md", b"# Hi", api_key=KEY))
    assert ok.status == 200
    # The URL is the capability (LibreTranslate's clients fetch it without a key).
    assert (await client.get(URL((await ok.json())["translatedFileUrl"]).path)).status == 200
