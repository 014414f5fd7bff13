"""The OpenAI-compatible API, through the real openai SDK (async and sync) and curl -N, on the demo model."""

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jwt
import openai
import pytest
from aiohttp.test_utils import TestClient

from hmt_stream.app import create_app
from hmt_stream.engine import ChatPrompt, GenerationOptions, Message
from hmt_stream.engine.scripted import Script, ScriptedEngine
from hmt_stream.engine.transformers import LocalEngine
from tests.conftest import make_settings
from tests.e2e.server import LiveServer

from .conftest import LONG, MakeClient, translator_of
from .test_guard import AUTH, KEYS, SECRET

TEXT = "Translate the following segment into French, without additional explanation.\n\nGood morning, everyone."
MESSAGES: Any = [{"role": "user", "content": TEXT}]  # Any: the SDK wants its TypedDicts
NO_CACHE = {"cache__enabled": False}
DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


Sdk = Callable[..., openai.AsyncOpenAI]


@pytest.fixture
async def sdk() -> AsyncIterator[Sdk]:
    """sdk(client, key) is the async SDK on a test server; each is closed after the test."""
    made: list[openai.AsyncOpenAI] = []

    def make(client: TestClient[Any, Any], key: str = "none") -> openai.AsyncOpenAI:
        # No retries: the SDK would otherwise retry 429 and 503 by itself, honouring Retry-After.
        made.append(openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key=key, max_retries=0))
        return made[-1]

    yield make
    for api in made:
        await api.close()


async def generate(engine: LocalEngine, prompt: ChatPrompt, options: GenerationOptions) -> str:
    """What the engine itself makes of a prompt: what the API must answer, through the same chat template."""
    return "".join([text async for text in engine.generate(prompt, options)])


def raw_sse(body: str) -> list[str]:
    """The data lines of an OpenAI stream, checking its framing (`data: …` and a blank line; comments allowed)."""
    frames = body.split("\n\n")
    assert frames[-1] == ""
    data = []
    for frame in frames[:-1]:
        assert frame.startswith(("data: ", ": ")), frame
        if frame.startswith("data: "):
            data.append(frame[6:])
    assert data[-1] == "[DONE]"
    return data[:-1]


async def test_models_are_listed_and_retrieved(client: TestClient[Any, Any], sdk: Sdk) -> None:
    api = sdk(client)
    models = [model async for model in api.models.list()]
    assert [(m.id, m.object, m.owned_by) for m in models] == [("demo", "model", "hmt-stream")]
    assert (await api.models.retrieve("demo")).id == "demo"
    with pytest.raises(openai.NotFoundError) as missing:
        await api.models.retrieve("gpt-4o")
    assert missing.value.body == {"message": "the model 'gpt-4o' does not exist", "type": "not_found_error",
                                  "param": None, "code": "model_not_found"}
    with pytest.raises(openai.NotFoundError):
        await api.chat.completions.create(model="gpt-4o", messages=MESSAGES)


async def test_a_completion_is_what_the_engine_makes_of_the_messages(make_client: MakeClient,
                                                                      engine: LocalEngine, sdk: Sdk) -> None:
    client = await make_client(**NO_CACHE)
    api = sdk(client)
    answer = await api.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=12,
                                               seed=7)
    expected = await generate(engine, ChatPrompt.user(TEXT), GenerationOptions(max_new_tokens=12, seed=7))
    assert answer.id.startswith("chatcmpl-") and answer.object == "chat.completion" and answer.model == "demo"
    assert abs(answer.created - time.time()) < 60
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == expected
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == engine.prompt_tokens(ChatPrompt.user(TEXT))
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert (choice.finish_reason, answer.usage.completion_tokens) == ("length", 12) or (
        choice.finish_reason == "stop" and answer.usage.completion_tokens < 12)


async def test_a_stream_is_chunks_then_usage_then_done(make_client: MakeClient, engine: LocalEngine,
                                                       sdk: Sdk) -> None:
    client = await make_client(**NO_CACHE)
    api = sdk(client)
    stream = await api.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=12,
                                               seed=7, stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    expected = await generate(engine, ChatPrompt.user(TEXT), GenerationOptions(max_new_tokens=12, seed=7))
    assert len({chunk.id for chunk in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert all(chunk.object == "chat.completion.chunk" and chunk.model == "demo" for chunk in chunks)
    first, *middle, last_choice, usage = chunks
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert "".join(chunk.choices[0].delta.content or "" for chunk in middle) == expected
    assert len(middle) >= 2 and all(chunk.choices[0].finish_reason is None for chunk in middle)
    assert last_choice.choices[0].finish_reason in ("stop", "length")
    assert usage.choices == [] and usage.usage is not None and usage.usage.completion_tokens <= 12
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_the_sync_sdk_streams_and_completes(demo_dir: Path, engine: LocalEngine) -> None:
    server = LiveServer(create_app(make_settings(demo_dir, **NO_CACHE), engine=engine)).start()
    try:
        api = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
        assert [model.id for model in api.models.list()] == ["demo"]
        whole = api.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=10,
                                            seed=3)
        with api.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=10, seed=3,
                                         stream=True) as stream:
            streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert streamed == whole.choices[0].message.content and streamed
    finally:
        server.stop()


async def test_curl_streams_the_documented_example(client: TestClient[Any, Any]) -> None:
    example = next(script for script in re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S)
                   if "/v1/chat/completions" in script)
    assert re.search(r"curl -s?N ", example)
    base = str(client.make_url("")).rstrip("/")
    process = await asyncio.create_subprocess_exec("bash", "-euo", "pipefail", "-c", example, env={"HMT": base},
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    chunks = [json.loads(data) for data in raw_sse(stdout.decode())]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 1
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")


async def test_the_chat_template_sees_every_message_and_continues_a_final_assistant_one(
        make_client: MakeClient, engine: LocalEngine, sdk: Sdk) -> None:
    client = await make_client(**NO_CACHE)
    api = sdk(client)
    messages: Any = [{"role": "system", "content": "You translate."},
                {"role": "user", "content": [{"type": "text", "text": "Translate into French:\n\n"},
                                             {"type": "text", "text": "Good night."}]},
                {"role": "assistant", "content": "Bonne"}]
    answer = await api.chat.completions.create(model="demo", messages=messages, max_tokens=10,
                                               temperature=0, extra_body={"continue_final_message": True,
                                                                          "add_generation_prompt": False})
    prompt = ChatPrompt((Message("system", "You translate."), Message("user", "Translate into French:\n\nGood night."),
                         Message("assistant", "Bonne")), add_generation_prompt=False, continue_final_message=True)
    assert answer.choices[0].message.content == await generate(
        engine, prompt, GenerationOptions(max_new_tokens=10, temperature=0))
    assert answer.usage is not None and answer.usage.prompt_tokens == engine.prompt_tokens(prompt)
    # Answered instead of continued, the same messages are a longer prompt: a new assistant turn is opened.
    answered = ChatPrompt(prompt.messages)
    assert engine.prompt_tokens(answered) != engine.prompt_tokens(prompt)
    plain = await api.chat.completions.create(model="demo", messages=messages, max_tokens=1,
                                              temperature=0)
    assert plain.usage is not None and plain.usage.prompt_tokens == engine.prompt_tokens(answered)


async def test_stop_seed_temperature_and_max_tokens_are_honoured(make_client: MakeClient, sdk: Sdk) -> None:
    client = await make_client(**NO_CACHE)
    api = sdk(client)

    async def ask(**options: Any) -> Any:
        return await api.chat.completions.create(model="demo", messages=MESSAGES, **options)

    seeded = [(await ask(max_tokens=24, seed=seed)).choices[0].message.content for seed in (11, 11, 12)]
    assert seeded[0] == seeded[1] != seeded[2]
    text = seeded[0]
    assert len(text) > 12
    stop = text[6:9]
    cut = text.find(stop)
    stopped = await ask(max_tokens=24, seed=11, stop=["never in the text", stop])
    assert stopped.choices[0].message.content == text[:cut]
    assert stopped.choices[0].finish_reason == "stop"
    short = await ask(max_tokens=3, seed=11)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    greedy = [(await ask(max_tokens=8, temperature=0)).choices[0].message.content for _ in range(2)]
    assert greedy[0] == greedy[1]
    # More than the server allows (generation.max_new_tokens = 40 in the tests) is held to its limit.
    capped = await ask(max_tokens=100_000, seed=5)
    assert capped.usage.completion_tokens <= 40


async def test_the_phrase_cache_key_is_the_whole_prompt_and_options(client: TestClient[Any, Any], sdk: Sdk) -> None:
    api = sdk(client)
    cache = translator_of(client).cache

    async def ask(messages: Any, **options: Any) -> str:
        answer = await api.chat.completions.create(model="demo", messages=messages,
                                                   temperature=0, **options)
        return str(answer.choices[0].message.content)

    first = await ask(MESSAGES, max_tokens=6)
    assert (cache.hits, cache.misses) == (0, 1)
    assert await ask(MESSAGES, max_tokens=6) == first
    assert cache.hits == 1
    await ask([{"role": "system", "content": "Be brief."}, *MESSAGES], max_tokens=6)
    await ask(MESSAGES, max_tokens=5)
    await ask([{"role": "user", "content": TEXT + " "}], max_tokens=6)  # one space more is another prompt
    assert (cache.hits, cache.misses) == (1, 4)


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": MESSAGES, "temperature": "hot"}, "temperature"),
    ({"messages": MESSAGES, "max_tokens": True}, "max_tokens"),
    ({"messages": MESSAGES, "max_completion_tokens": 0}, "max_completion_tokens"),
    ({"messages": MESSAGES, "seed": 1.5}, "seed"),
    ({"messages": MESSAGES, "stop": 5}, "stop"),
    ({"messages": MESSAGES, "stream": "yes"}, "stream"),
    ({"messages": MESSAGES, "n": 2}, "n"),
    ({"messages": MESSAGES, "top_p": 1.5}, "top_p"),
    ({}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": {"text": "x"}}]}, "messages[0].content"),
    ({"messages": MESSAGES, "continue_final_message": True}, "continue_final_message"),
])
async def test_wrong_types_get_400_in_openai_shape(client: TestClient[Any, Any], body: dict[str, Any],
                                                     param: str) -> None:
    response = await client.post("/v1/chat/completions", json={"model": "demo", **body})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "bad_request"
    assert error["param"] == param and param.split("[")[0] in error["message"]


async def test_bad_json_unknown_routes_and_the_sdk_class(client: TestClient[Any, Any], sdk: Sdk) -> None:
    response = await client.post("/v1/chat/completions", data=b"{not json",
                                 headers={"Content-Type": "application/json"})
    assert response.status == 400 and (await response.json())["error"]["code"] == "bad_request"
    response = await client.get("/v1/completions")
    assert response.status == 404 and (await response.json())["error"]["type"] == "not_found_error"
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(client).chat.completions.create(model="demo", messages=MESSAGES,
                                                  temperature="hot")  # type: ignore[call-overload]
    assert refused.value.code == "bad_request" and refused.value.param == "temperature"


async def test_unknown_fields_are_ignored(client: TestClient[Any, Any], sdk: Sdk) -> None:
    answer = await sdk(client).chat.completions.create(
        model="demo", messages=MESSAGES, max_tokens=4, user="someone", presence_penalty=0.5,
        extra_body={"frobnicate": {"level": 11}, "best_of": 1})
    assert answer.choices[0].message.role == "assistant"


async def test_too_long_prompts_are_refused(make_client: MakeClient, sdk: Sdk) -> None:
    client = await make_client(generation__max_input_tokens=16)
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(client).chat.completions.create(model="demo", messages=MESSAGES)
    assert refused.value.code == "too_long"


async def test_auth_takes_an_api_key_or_a_jwt(make_client: MakeClient, sdk: Sdk) -> None:
    client = await make_client(**AUTH)
    for key in ("none", "wrong-key"):
        with pytest.raises(openai.AuthenticationError) as refused:
            await sdk(client, key).models.list()
        body: Any = refused.value.body
        assert body == {"message": body["message"], "type": "authentication_error", "param": None,
                        "code": "unauthorized"}
        with pytest.raises(openai.AuthenticationError):
            await sdk(client, key).chat.completions.create(model="demo", messages=MESSAGES)
    token = jwt.encode({"sub": "tool", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    for key in (KEYS[0], token):
        answer = await sdk(client, key).chat.completions.create(model="demo", messages=MESSAGES,
                                                                max_tokens=3)
        assert answer.choices[0].message.role == "assistant"


async def test_the_rate_limit_answers_429_with_retry_after(make_client: MakeClient, sdk: Sdk) -> None:
    client = await make_client(limits__rate="2/minute")
    api = sdk(client)
    for _ in range(2):
        await api.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=2)
    with pytest.raises(openai.RateLimitError) as limited:
        await api.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=2)
    assert limited.value.code == "rate_limited" and limited.value.type == "rate_limit_error"
    assert 1 <= int(limited.value.response.headers["Retry-After"]) <= 60


async def test_a_stream_waiting_in_the_queue_says_so_in_comments(make_client: MakeClient) -> None:
    client = await make_client(scheduler__max_concurrent=1, **LONG)
    first = await client.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": True})
    second = await client.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": True})
    role = json.loads((await second.content.readuntil(b"\n\n"))[6:])
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert await second.content.readuntil(b"\n\n") == b": queued 1\n\n"
    first.close()
    second.close()


async def test_a_full_queue_answers_503_overloaded(make_client: MakeClient, sdk: Sdk) -> None:
    client = await make_client(scheduler__max_concurrent=1, scheduler__max_queue=0, **LONG)
    api = sdk(client)
    busy = await api.chat.completions.create(model="demo", messages=MESSAGES, stream=True)
    await busy.__anext__()  # the role chunk: the first completion holds the only slot now
    with pytest.raises(openai.InternalServerError) as refused:
        await api.chat.completions.create(model="demo", messages=MESSAGES)
    assert refused.value.status_code == 503 and refused.value.code == "overloaded"
    assert int(refused.value.response.headers["Retry-After"]) >= 1
    await busy.close()


@pytest.mark.parametrize("stream", [True, False])
async def test_a_client_that_goes_away_cancels_its_completion_at_once(make_client: MakeClient,
                                                                      stream: bool) -> None:
    # A grace period far longer than the test: only the OpenAI transport's own cancel can end the session.
    client = await make_client(session__disconnect_grace_s=600, **LONG)
    request = asyncio.create_task(client.post("/v1/chat/completions", json={"model": "demo", "messages": MESSAGES,
                                                                            "stream": stream}))
    store = translator_of(client).store
    while not store.all() or store.all()[0].state != "running":
        await asyncio.sleep(0.01)
    [session] = store.all()
    if stream:
        response = await request
        await response.content.readuntil(b"\n\n")
        response.close()
    else:
        request.cancel()  # the client gives up waiting: its connection closes
    began = time.monotonic()
    while not session.finished:
        await asyncio.sleep(0.02)
        assert time.monotonic() - began < 10
    assert session.state == "cancelled"
    assert session.log[-1].seq < 1000  # far from the 1000 tokens it would have made


async def test_an_error_mid_stream_reaches_the_sdk(aiohttp_client: Any, demo_dir: Path, sdk: Sdk) -> None:
    # Fault injection: the ScriptedEngine (not a model) fails after three tokens.
    app = create_app(make_settings(demo_dir, model__name="scripted"), engine=ScriptedEngine(model_id="scripted"))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    api = sdk(client)
    failing: Any = [{"role": "user", "content": Script(tokens=10, fail_after=3, text="t{i} ").directive()}]
    stream = await api.chat.completions.create(model="scripted", messages=failing, stream=True)
    seen = []
    with pytest.raises(openai.APIError, match=r"the model failed on this translation \(error id [0-9a-f]{8}"):
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content)
    assert "".join(text or "" for text in seen) == "t0 t1 t2 "
    with pytest.raises(openai.InternalServerError) as failed:
        await api.chat.completions.create(model="scripted", messages=failing)
    assert failed.value.status_code == 500 and failed.value.code == "model_error"


async def test_metrics_count_the_openai_transport_and_it_can_be_switched_off(make_client: MakeClient,
                                                                              sdk: Sdk) -> None:
    client = await make_client()
    await sdk(client).models.list()
    metrics = await (await client.get("/metrics")).text()
    assert 'hmt_requests_total{transport="openai"} 1.0' in metrics
    off = await make_client(transports__openai=False)
    assert (await off.get("/v1/models")).status == 404
