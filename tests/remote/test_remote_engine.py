"""The remote engine in one process: a gateway hmt-stream whose engine is other hmt-streams' OpenAI API."""

import asyncio
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from hmt_stream import config
from hmt_stream.app import generation_slots
from hmt_stream.engine import ChatPrompt, GenerationOptions
from hmt_stream.engine.attempt import Attempt
from hmt_stream.engine.remote import RemoteEngine
from hmt_stream.engine.router import Router
from hmt_stream.engine.scripted import Script, ScriptedEngine
from hmt_stream.engine.transformers import LocalEngine
from hmt_stream.errors import ConfigError, ModelLoadError
from hmt_stream.prompts import build_prompt
from hmt_stream.request import TranslationRequest
from hmt_stream.session import Event, TranslationSession
from tests.transports.conftest import translator_of

from .conftest import MakeBackend, MakeGateway, faulty_server, remote_engine

TEXT = "Hello there, how are you?"
BODY = {"text": TEXT, "source": "en", "target": "fr"}
REQUEST = TranslationRequest(TEXT, "en", "fr")
PROMPT = ChatPrompt.user(build_prompt(TEXT, "en", "fr"))
GREEDY = {"generation__temperature": 0.0, "cache__enabled": False}


def scripted(script: Script) -> ScriptedEngine:
    """Fault injection: NOT a model. Answers every prompt with `script` (under the demo model's name)."""
    return ScriptedEngine(script, directives=False, model_id="demo")


async def finish(session: TranslationSession, timeout: float = 60) -> list[Event]:
    async def read() -> list[Event]:
        return [event async for event in session.events()]
    return await asyncio.wait_for(read(), timeout)


def check_log(log: list[Event]) -> str:
    """The invariants every session keeps: seq without gaps, one terminal event, deltas adding up to done.text."""
    assert [event.seq for event in log] == list(range(1, len(log) + 1))
    assert [event.terminal for event in log].count(True) == 1 and log[-1].terminal
    text = "".join(event.data["text"] for event in log if event.type == "delta")
    if log[-1].type == "done":
        assert text == log[-1].data["text"]
    return text


async def test_a_translation_is_what_the_backend_makes_of_hmt_streams_prompt(
        backend: MakeBackend, gateway: MakeGateway, engine: LocalEngine) -> None:
    server = await backend(**GREEDY)
    client = await gateway([server.url], generation__max_new_tokens=16, **GREEDY)
    answer = await (await client.post("/api/translate", json=BODY)).json()
    expected = "".join([text async for text in engine.generate(PROMPT, GenerationOptions(max_new_tokens=16,
                                                                                           temperature=0.0))])
    assert answer["text"] == expected and answer["prompt_tokens"] == engine.prompt_tokens(PROMPT)
    assert answer["tokens"] == 16 and answer["finish_reason"] == "length"
    [body] = server.bodies
    assert body["messages"] == [{"role": "user", "content": build_prompt(TEXT, "en", "fr")}]
    assert {key: body[key] for key in ("model", "stream", "stream_options", "max_tokens", "temperature", "top_k",
                                       "top_p", "repetition_penalty")} == {
        "model": "demo", "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 16,
        "temperature": 0.0, "top_k": 20, "top_p": 0.6, "repetition_penalty": 1.05}
    assert "continue_final_message" not in body
    health = await (await client.get("/api/health")).json()
    [endpoint] = health["endpoints"]
    assert (health["status"], endpoint["url"], endpoint["state"]) == ("ok", server.url, "healthy")
    assert (endpoint["requests"], endpoint["tokens"], endpoint["outstanding"]) == (1, 16, 0)
    metrics = await (await client.get("/metrics")).text()
    assert f'hmt_remote_up{{endpoint="{server.url}"}} 1.0' in metrics
    assert f'hmt_remote_tokens_total{{endpoint="{server.url}"}} 16.0' in metrics


async def test_openai_requests_pass_seed_and_stop_through_the_gateway(
        backend: MakeBackend, gateway: MakeGateway, engine: LocalEngine) -> None:
    server = await backend(cache__enabled=False)
    client = await gateway([server.url], cache__enabled=False)
    api = openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="none", max_retries=0)
    messages: Any = [{"role": "user", "content": PROMPT.messages[0].content}]
    try:
        answer = await api.chat.completions.create(model="demo", messages=messages, max_tokens=20,
                                                   seed=4, stop=["never there"])
    finally:
        await api.close()
    expected = "".join([text async for text in engine.generate(PROMPT, GenerationOptions(max_new_tokens=20,
                                                                                           seed=4))])
    assert answer.choices[0].message.content == expected
    assert server.bodies[0]["seed"] == 4 and server.bodies[0]["stop"] == ["never there"]


async def test_failures_before_the_first_token_are_retried_unseen(
        backend: MakeBackend, gateway: MakeGateway, aiohttp_server: Any, engine: LocalEngine) -> None:
    stopped = await backend(**GREEDY)
    broken = await faulty_server(aiohttp_server, 500)  # fault injection: answers 500 to every completion
    good = await backend(**GREEDY)
    client = await gateway([stopped.url, str(broken.make_url("/v1")), good.url], generation__max_new_tokens=8,
                           **GREEDY)
    assert [e["state"] for e in (await (await client.get("/api/health")).json())["endpoints"]] == ["healthy"] * 3
    await stopped.server.close()  # stopped before the request; the next health check is a minute away
    session = translator_of(client).submit(REQUEST)
    log = await finish(session)
    assert [event.type for event in log if event.type != "delta"] == ["started", "done"]
    expected = "".join([text async for text in engine.generate(PROMPT, GenerationOptions(max_new_tokens=8,
                                                                                           temperature=0.0))])
    assert check_log(log) == expected
    states = {e["url"]: e for e in (await (await client.get("/api/health")).json())["endpoints"]}
    assert states[stopped.url]["state"] == "down" and states[stopped.url]["failures"] == 1
    assert "Connect" in states[stopped.url]["last_error"]
    broken_state = states[str(broken.make_url("/v1"))]
    assert broken_state["state"] == "healthy" and broken_state["failures"] == 1  # it answers: only this failed
    assert states[good.url]["requests"] == 1 and good.bodies


async def test_a_server_failing_mid_stream_is_continued_elsewhere_from_the_text_so_far(
        backend: MakeBackend, gateway: MakeGateway) -> None:
    first = await backend(scripted(Script(tokens=50, text="a{i} ", fail_after=5)))
    second = await backend(scripted(Script(tokens=4, text="b{i} ")))
    client = await gateway([first.url, second.url], generation__max_new_tokens=30)
    log = await finish(translator_of(client).submit(REQUEST))
    # A translation's text is trimmed at its ends (documents); the server is sent the raw text, space and all.
    assert check_log(log) == "a0 a1 a2 a3 a4 b0 b1 b2 b3"
    assert log[-1].type == "done" and log[-1].data["tokens"] == 9
    [continued] = second.bodies
    assert continued["messages"][-1] == {"role": "assistant", "content": "a0 a1 a2 a3 a4 "}
    assert continued["messages"][:-1] == first.bodies[0]["messages"]
    assert (continued["continue_final_message"], continued["add_generation_prompt"]) == (True, False)
    assert continued["max_tokens"] == 30 - 5
    states = (await (await client.get("/api/health")).json())["endpoints"]
    assert [(e["failures"], e["failovers"]) for e in states] == [(1, 1), (0, 0)]


@pytest.mark.parametrize(("silence", "text"), [
    (Script(tokens=50, text="a{i} ", hang_after=3), "a0 a1 a2 b0 b1"),  # mid-stream: continued elsewhere
    (Script(tokens=5, text="a{i} ", first_token_s=60), "b0 b1"),  # headers, then nothing: left unseen
], ids=["mid-stream", "before-the-first-token"])
async def test_a_silent_server_times_out_and_the_translation_goes_on_elsewhere(
        backend: MakeBackend, gateway: MakeGateway, silence: Script, text: str) -> None:
    first = await backend(scripted(silence))
    second = await backend(scripted(Script(tokens=2, text="b{i} ")))
    client = await gateway([first.url, second.url], remote__timeout_s=0.5)
    began = time.monotonic()
    log = await finish(translator_of(client).submit(REQUEST))
    assert check_log(log) == text and time.monotonic() - began < 10
    states = (await (await client.get("/api/health")).json())["endpoints"]
    assert states[0]["state"] == "down" and "Timeout" in states[0]["last_error"]
    assert not remote_engine(client).reading  # no stream is left behind in the sweep's set


async def test_a_server_that_never_answers_the_request_is_left_for_another(
        aiohttp_server: Any, backend: MakeBackend, gateway: MakeGateway) -> None:
    async def never(request: web.Request) -> web.Response:  # fault injection: healthy, but no answer ever
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", healthy)
    app.router.add_post("/v1/chat/completions", never)
    mute = await aiohttp_server(app)
    second = await backend(scripted(Script(tokens=2, text="b{i} ")))
    client = await gateway([str(mute.make_url("/v1")), second.url], remote__timeout_s=0.5)
    began = time.monotonic()
    log = await finish(translator_of(client).submit(REQUEST))
    assert check_log(log) == "b0 b1" and time.monotonic() - began < 10
    states = (await (await client.get("/api/health")).json())["endpoints"]
    assert states[0]["failures"] == 1 and "Timeout" in states[0]["last_error"]


async def test_no_server_left_is_engine_unavailable_within_bounded_time(
        backend: MakeBackend, gateway: MakeGateway) -> None:
    only = await backend(scripted(Script(tokens=50, text="a{i} ", fail_after=3)))
    client = await gateway([only.url, "http://127.0.0.1:9/v1"])
    began = time.monotonic()
    log = await finish(translator_of(client).submit(REQUEST))
    assert check_log(log) == "a0 a1 a2"  # what was sent stays sent; the end says why no more came
    assert log[-1].type == "error" and log[-1].data["code"] == "engine_unavailable"
    assert only.url in log[-1].data["message"]
    assert time.monotonic() - began < 10
    metrics = await (await client.get("/metrics")).text()  # counted under its own code, not as a model failure
    assert 'hmt_errors_total{code="engine_unavailable"} 1.0' in metrics and 'code="model_error"' not in metrics
    await only.server.close()
    await remote_engine(client).router.check(remote_engine(client).http, 2.0)
    health = await (await client.get("/api/health")).json()
    assert health["status"] == "degraded" and {e["state"] for e in health["endpoints"]} == {"down"}
    response = await client.post("/api/translate", json=BODY)
    assert response.status == 503 and (await response.json())["error"]["code"] == "engine_unavailable"


async def test_cancel_closes_the_backend_stream_within_one_token(backend: MakeBackend,
                                                                 gateway: MakeGateway) -> None:
    remote = scripted(Script(tokens=400, rate=50, text="t{i} "))  # a token every 20 ms
    server = await backend(remote)
    client = await gateway([server.url], generation__max_new_tokens=400)
    session = translator_of(client).submit(REQUEST)
    async for event in session.events():
        if event.type == "delta" and len(session.text.split()) >= 5:
            break
    [generation] = remote.generations
    made = generation.tokens
    assert session.cancel()
    await finish(session, 10)
    await asyncio.wait_for(generation.wait_closed(), 2)
    assert generation.cancelled and generation.tokens - made <= 1
    [backend_session] = server.translator.store.all()
    await finish(backend_session, 5)
    assert backend_session.state == "cancelled"
    assert remote_engine(client).endpoints[0].outstanding == 0


async def test_cancel_closes_the_backend_stream_even_while_nobody_reads(backend: MakeBackend,
                                                                       gateway: MakeGateway) -> None:
    remote = scripted(Script(tokens=400, rate=50, text="t{i} "))
    server = await backend(remote)
    client = await gateway([server.url])
    generation = remote_engine(client).generate(PROMPT, GenerationOptions(max_new_tokens=400))
    reader = generation.__aiter__()
    for _ in range(3):
        await reader.__anext__()
    # The reader holds its third delta and asks for no more (as a stop string's cut does): cancel alone must close.
    [backend_generation] = remote.generations
    made = backend_generation.tokens
    generation.cancel()
    await asyncio.wait_for(generation.wait_closed(), 2)
    await asyncio.wait_for(backend_generation.wait_closed(), 2)
    assert backend_generation.cancelled and backend_generation.tokens - made <= 1
    assert remote_engine(client).endpoints[0].outstanding == 0
    await reader.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("how", ["disconnect_grace", "shutdown"])
async def test_a_reader_gone_or_a_shutdown_closes_the_backend_stream_too(
        backend: MakeBackend, gateway: MakeGateway, how: str) -> None:
    remote = scripted(Script(tokens=400, rate=50, text="t{i} "))
    server = await backend(remote)
    client = await gateway([server.url], generation__max_new_tokens=400, session__disconnect_grace_s=0.2)
    session = translator_of(client).submit(REQUEST)
    while remote.started == 0 or remote.generations[0].tokens < 3:
        await asyncio.sleep(0.01)
    if how == "shutdown":
        await translator_of(client).drain(0.0)
    generation = remote.generations[0]
    await asyncio.wait_for(generation.wait_closed(), 5)
    assert generation.cancelled and session.state == "cancelled"
    assert generation.tokens < 100


async def test_least_outstanding_routing_and_slots_per_server(backend: MakeBackend, gateway: MakeGateway) -> None:
    slow = [scripted(Script(tokens=100, rate=50, text="x ")) for _ in range(2)]
    servers = [await backend(engine, scheduler__max_concurrent=4) for engine in slow]
    client = await gateway([server.url for server in servers], remote__max_concurrent=2,
                           generation__max_new_tokens=100,
                           scheduler__max_concurrent=1)  # ignored with remote engines: 2 servers × 2 slots
    translator = translator_of(client)
    assert translator.scheduler.max_concurrent == 4
    sessions = [translator.submit(REQUEST) for _ in range(5)]
    while sum(engine.started for engine in slow) < 4:
        await asyncio.sleep(0.01)
    assert [engine.started for engine in slow] == [2, 2]
    assert [e.outstanding for e in remote_engine(client).endpoints] == [2, 2]
    assert sessions[4].log[0].type == "queued"
    for session in sessions:
        session.cancel()
    for session in sessions:
        await finish(session, 10)


async def test_health_checks_take_a_server_out_and_put_it_back(backend: MakeBackend, gateway: MakeGateway) -> None:
    server = await backend()
    port = server.server.port
    client = await gateway([server.url], remote__health_interval_s=0.1)

    async def wait_for(state: str) -> dict[str, Any]:
        began = time.monotonic()
        while True:
            health = await (await client.get("/api/health")).json()
            if health["endpoints"][0]["state"] == state:
                return health  # type: ignore[no-any-return]
            assert time.monotonic() - began < 10, health
            await asyncio.sleep(0.05)

    await wait_for("healthy")
    await server.server.close()
    assert (await wait_for("down"))["status"] == "degraded"
    again = await backend(port=port)  # back on the same address
    assert (await wait_for("healthy"))["status"] == "ok"
    answer = await client.post("/api/translate", json=BODY)
    assert answer.status == 200 and again.bodies


async def test_max_input_tokens_is_enforced_with_the_local_tokenizer(backend: MakeBackend,
                                                                      gateway: MakeGateway) -> None:
    server = await backend()
    client = await gateway([server.url], generation__max_input_tokens=16)
    response = await client.post("/api/translate", json=BODY)
    assert response.status == 400 and (await response.json())["error"]["code"] == "too_long"
    assert server.bodies == []


def test_without_its_tokenizer_the_gateway_does_not_start(tmp_path: Path) -> None:
    settings = config.Settings().replace({"remote.endpoints": ("http://127.0.0.1:9/v1",),
                                          "model.name": str(tmp_path / "no-such-model")})
    with pytest.raises(ModelLoadError, match=r"remote\.endpoints.*tokenizer of model\.name.*does not exist"):
        RemoteEngine.load(settings)
    offline = settings.replace({"model.name": "tencent/no-such-model-here", "model.local_files_only": True})
    with pytest.raises(ModelLoadError, match="not in the local hub cache"):
        RemoteEngine.load(offline)


async def test_a_client_error_from_the_backend_is_a_model_error_not_a_retry(
        backend: MakeBackend, gateway: MakeGateway, aiohttp_server: Any) -> None:
    refusing = await faulty_server(aiohttp_server, 400)  # fault injection: refuses every completion
    good = await backend()
    client: TestClient[Any, Any] = await gateway([str(refusing.make_url("/v1")), good.url])
    log = await finish(translator_of(client).submit(REQUEST))
    assert log[-1].type == "error" and log[-1].data["code"] == "model_error"
    assert "HTTP 400" in log[-1].data["message"] and good.bodies == []


def test_endpoints_come_from_config_or_the_environment_comma_separated() -> None:
    settings = config.load(None, environ={"HMT_REMOTE_ENDPOINTS": "http://gpu-1:8000/v1, http://gpu-2:30000/v1"})
    assert settings.remote.endpoints == ("http://gpu-1:8000/v1", "http://gpu-2:30000/v1")
    scripted = ScriptedEngine()  # a stand-in that does not batch: auto (0) gives it one slot
    assert generation_slots(settings.replace({"remote.max_concurrent": 3}), scripted) == 6
    assert generation_slots(config.Settings(), scripted) == 1
    assert generation_slots(config.Settings().replace({"scheduler.max_concurrent": 5}), scripted) == 5
    with pytest.raises(ConfigError, match=r"remote\.endpoints: 'gpu-1:8000' is not an http"):
        config.load(None, environ={"HMT_REMOTE_ENDPOINTS": "gpu-1:8000"})


def test_text_that_arrived_with_an_error_is_kept() -> None:
    # One network packet may carry the last chunks and the error after them: the text before the error was sent.
    router = Router(["http://127.0.0.1:9/v1"], 1)
    attempt = Attempt(router, router.endpoints[0])
    lines = [b'data: {"choices":[{"index":0,"delta":{"content":"a4 "}}]}', b"", b": ping", b"",
             b'data: {"error": {"message": "boom", "type": "server_error"}}', b""]
    text, failure = attempt.read(lines)
    assert text == "a4 " and failure is not None and "boom" in str(failure) and not failure.down
    text, failure = attempt.read([b'data: {"choices":[{"delta":{"content":"b"}}]}', b"data: {not json"])
    assert text == "b" and failure is not None and "unreadable" in str(failure)
    text, failure = attempt.read([b'data: {"choices":[{"delta":{},"finish_reason":"length"}]}',
                                  b'data: {"choices":[],"usage":{"completion_tokens":7}}', b"data: [DONE]"])
    assert (text, failure, attempt.finished, attempt.tokens) == ("", None, True, 7)


async def test_the_api_key_goes_to_the_servers_with_every_request_and_probe(backend: MakeBackend,
                                                                           gateway: MakeGateway) -> None:
    server = await backend(auth__enabled=True, auth__api_keys=("backend-key-0123456789",))
    keyed = await gateway([server.url], remote__api_key="backend-key-0123456789")
    assert (await keyed.post("/api/translate", json=BODY)).status == 200
    assert [e["state"] for e in (await (await keyed.get("/api/health")).json())["endpoints"]] == ["healthy"]
    keyless = await gateway([server.url])
    [endpoint] = (await (await keyless.get("/api/health")).json())["endpoints"]
    assert endpoint["state"] == "down" and "HTTP 401" in endpoint["last_error"]
