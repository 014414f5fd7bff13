import json
import re
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from hmt_stream import __version__
from hmt_stream.app import create_app
from hmt_stream.engine.scripted import Script, ScriptedEngine
from hmt_stream.engine.transformers import LocalEngine, TransformersEngine

from ..conftest import make_settings
from .conftest import MakeClient, create, translator_of
from .readers import read_poll


async def test_create_returns_the_session_and_its_events_url(client: TestClient[Any, Any]) -> None:
    response = await client.post("/api/sessions", json={"text": "Hi", "source": "auto", "target": "zh"})
    assert response.status == 201
    body = await response.json()
    assert body["events_url"] == f"/api/sessions/{body['session']}/events"
    assert response.headers["Location"] == f"/api/sessions/{body['session']}"
    assert body["state"] in ("queued", "running")


async def test_errors_are_json_with_stable_codes(make_client: MakeClient) -> None:
    client = await make_client(generation__max_chars=20)
    cases = [
        (b"{not json", 400, "bad_request"),
        (b'{"text": 3, "target": "en"}', 400, "bad_request"),
        (b'{"text": "hi", "target": "xx"}', 400, "unsupported_language"),
        (b'{"text": "' + b"a" * 21 + b'", "target": "en"}', 400, "too_long"),
        (b'\xff\xfe', 400, "bad_request"),
    ]
    for body, status, code in cases:
        response = await client.post("/api/sessions", data=body, headers={"Content-Type": "application/json"})
        assert response.status == status, body
        error = (await response.json())["error"]
        assert error["code"] == code and error["message"], body
    for method, path in (("GET", "/api/sessions/nope"), ("DELETE", "/api/sessions/nope"),
                         ("GET", "/api/sessions/nope/events")):
        response = await client.request(method, path)
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"


async def test_a_full_queue_answers_503_with_retry_after(make_client: MakeClient) -> None:
    client = await make_client(scheduler__max_concurrent=1, scheduler__max_queue=0, generation__max_new_tokens=200,
                               cache__enabled=False)
    await create(client, "first takes the only slot")
    response = await client.post("/api/sessions", json={"text": "second", "target": "de"})
    assert response.status == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert (await response.json())["error"]["code"] == "overloaded"


async def test_snapshot_and_delete_cancels(make_client: MakeClient) -> None:
    client = await make_client(generation__max_new_tokens=400)
    session_id = await create(client)
    response = await client.delete(f"/api/sessions/{session_id}")
    assert response.status == 200
    assert (await response.json())["session"] == session_id  # its snapshot
    session = translator_of(client).store.get(session_id)
    assert session is not None
    await session.next_batch(session.last_seq, 10)  # the cancelled event follows once generation has stopped
    while not session.finished:
        await session.next_batch(session.last_seq, 10)
    snapshot = await (await client.get(f"/api/sessions/{session_id}")).json()
    assert snapshot == {"session": session_id, "state": "cancelled", "text": session.text, "seq": session.last_seq}
    assert session.log[-1].type == "cancelled"


async def test_one_shot_translate_waits_for_the_whole_text(client: TestClient[Any, Any]) -> None:
    response = await client.post("/api/translate", json={"text": "One shot", "source": "en", "target": "ja"})
    assert response.status == 200
    body = await response.json()
    session = translator_of(client).store.get(body["session"])
    assert session is not None
    assert body == {"session": session.id, **session.log[-1].data}
    assert body["text"] == session.text and body["cached"] is False


async def test_languages_health_and_negotiate(make_client: MakeClient) -> None:
    client = await make_client()
    languages = await (await client.get("/api/languages")).json()
    assert len(languages) == 38 and languages[-1] == {"code": "yue", "name": "Cantonese", "zh_name": "粤语"}
    assert await (await client.get("/api/health")).json() == {"status": "ok", "model": "demo", "demo": True,
                                                               "ready": True, "version": __version__}
    negotiate = await (await client.get("/api/negotiate")).json()
    assert [t["name"] for t in negotiate["transports"]] == ["websocket", "sse", "poll"]
    assert negotiate["heartbeat_s"] == 15 and negotiate["poll_timeout_s"] == 20 and negotiate["demo"] is True
    assert negotiate["auth"] is False
    limited = await make_client(transports__websocket=False, transports__sse=False)
    negotiate = await (await limited.get("/api/negotiate")).json()
    assert [t["name"] for t in negotiate["transports"]] == ["poll"]
    assert (await limited.get("/ws")).status == 404


async def test_a_model_failure_is_a_500_with_model_error(aiohttp_client: Any, demo_dir: Path) -> None:
    # Fault injection: the scripted engine (not a model) fails after two tokens.
    app = create_app(make_settings(demo_dir, cache__enabled=False), engine=ScriptedEngine(Script(fail_after=2)))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    response = await client.post("/api/translate", json={"text": "Fails half way", "target": "fr"})
    assert response.status == 500 and (await response.json())["error"]["code"] == "model_error"
    session_id = await create(client, "Fails as a session")  # the server goes on serving
    events = await read_poll(client, session_id, 0, None)
    assert events[-1]["type"] == "error" and events[-1]["code"] == "model_error"


async def test_negotiate_answers_exactly_what_the_protocol_doc_shows(client: TestClient[Any, Any]) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    block = re.search(r"`GET /api/negotiate` answers.*?```json\n(.*?)```", doc, flags=re.S)
    assert block is not None
    shown = json.loads(block[1])
    assert await (await client.get("/api/negotiate")).json() == {**shown, "demo": True}  # the demo model here


async def test_with_a_real_model_nothing_says_demo(aiohttp_client: Any, demo_dir: Path,
                                                  engine: LocalEngine) -> None:
    # The demo checkpoint's weights, loaded as a real model would be: the flag follows the engine, not the name.
    real = TransformersEngine(engine.model, engine.tokenizer, model_id="some/model", demo=False, workers=1)
    client: TestClient[Any, Any] = await aiohttp_client(create_app(make_settings(demo_dir), engine=real))
    assert (await (await client.get("/api/health")).json())["demo"] is False
    assert (await (await client.get("/api/negotiate")).json())["demo"] is False
