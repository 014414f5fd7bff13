import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MakeClient


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_count_traffic_sessions_cache_latency_tokens_and_errors(make_client: MakeClient) -> None:
    client = await make_client()
    body = {"text": "Measured", "source": "en", "target": "fr"}
    async with client.ws_connect("/ws") as ws:
        await ws.receive()
        await ws.send_json({"type": "fly"})  # an error over the socket
        assert json.loads((await ws.receive()).data)["code"] == "bad_request"
        await ws.send_json({"type": "translate", **body})
        while json.loads((await ws.receive()).data)["type"] != "done":
            pass
        during = samples(await (await client.get("/metrics")).text())
        assert during[("hmt_open_connections", (("transport", "websocket"),))] == 1
    created = await (await client.post("/api/sessions", json={**body, "text": "Other"})).json()
    await (await client.get(created["events_url"], headers={"Accept": "text/event-stream"})).read()
    await (await client.get(created["events_url"])).read()
    await client.post("/api/translate", json=body)  # a cache hit
    await client.post("/api/translate", json={**body, "target": "xx"})  # an error
    response = await client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain")
    got = samples(await response.text())
    for transport in ("websocket", "sse", "poll", "rest"):
        assert got[("hmt_requests_total", (("transport", transport),))] >= 1, transport
    assert got[("hmt_open_connections", (("transport", "websocket"),))] == 0
    assert got[("hmt_cache_hits_total", ())] == 1 and got[("hmt_cache_misses_total", ())] == 2
    assert got[("hmt_time_to_first_token_seconds_count", ())] == 2
    assert got[("hmt_inter_token_seconds_count", ())] > 10
    assert got[("hmt_tokens_generated_total", ())] >= got[("hmt_inter_token_seconds_count", ())]
    assert got[("hmt_sessions_finished_total", (("state", "done"),))] == 2
    assert got[("hmt_errors_total", (("code", "unsupported_language"),))] == 1
    assert got[("hmt_errors_total", (("code", "bad_request"),))] == 1
    assert got[("hmt_sessions_active", ())] == 0 and got[("hmt_sessions_queued", ())] == 0


async def test_each_app_has_its_own_registry(make_client: MakeClient) -> None:
    first, second = await make_client(), await make_client()
    await first.post("/api/translate", json={"text": "x", "target": "yy"})
    error = ("hmt_errors_total", (("code", "unsupported_language"),))
    assert samples(await (await first.get("/metrics")).text())[error] == 1
    got: dict[Any, float] = samples(await (await second.get("/metrics")).text())
    assert error not in got and got[("hmt_requests_total", (("transport", "rest"),))] == 1  # its own /metrics


async def test_metrics_need_no_credentials_with_auth_on(make_client: MakeClient) -> None:
    # Prometheus scrapes without a key.
    client = await make_client(auth__enabled=True, auth__api_keys=("a-key-long-enough-for-any-rule-0123",))
    response = await client.get("/metrics")
    assert response.status == 200 and ("hmt_sessions_active", ()) in samples(await response.text())
    assert (await client.get("/api/sessions/some-id")).status == 401
