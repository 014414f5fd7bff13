"""The batching engine as the server runs it: chosen by model.batching, sized by scheduler.max_concurrent, 8-bit."""

import asyncio
from pathlib import Path
from typing import Any

from hmt_stream.app import create_app
from hmt_stream.engine import ChatPrompt, GenerationOptions, load_engine, max_concurrent
from hmt_stream.engine.batched import BatchedEngine
from hmt_stream.engine.transformers import TransformersEngine
from hmt_stream.keys import ENGINE, TRANSLATOR
from hmt_stream.prompts import build_prompt

from ..conftest import make_settings
from .conftest import MakeBatched, read


async def test_load_engine_batches_unless_told_not_to(demo_dir: Path) -> None:
    default = make_settings(demo_dir)
    engine = await asyncio.to_thread(load_engine, default)
    try:
        assert isinstance(engine, BatchedEngine) and engine.max_batch == 8 == max_concurrent(default, engine)
    finally:
        await engine.close()
    sized = make_settings(demo_dir, scheduler__max_concurrent=3)
    engine = await asyncio.to_thread(load_engine, sized)
    try:
        assert isinstance(engine, BatchedEngine) and engine.max_batch == 3 == max_concurrent(sized, engine)
    finally:
        await engine.close()
    threads = make_settings(demo_dir, model__batching=False)
    engine = await asyncio.to_thread(load_engine, threads)
    try:
        assert isinstance(engine, TransformersEngine) and max_concurrent(threads, engine) == 1
    finally:
        await engine.close()


async def test_the_server_translates_concurrent_requests_in_one_batch(aiohttp_client: Any, demo_dir: Path) -> None:
    # No engine handed in: the app loads the configured one, as `serve` does.
    settings = make_settings(demo_dir, generation__temperature=0.0, generation__max_new_tokens=300,
                             cache__enabled=False)
    client = await aiohttp_client(create_app(settings))
    app = client.app
    engine = app[ENGINE]
    assert isinstance(engine, BatchedEngine) and app[TRANSLATOR].scheduler.max_concurrent == 8
    texts = [f"Sentence number {n} of the test, in English." for n in range(5)]
    responses = await asyncio.gather(*(client.post("/api/translate", json={"text": text, "source": "en",
                                                                           "target": "de"}) for text in texts))
    bodies = [await response.json() for response in responses]
    assert [response.status for response in responses] == [200] * 5, bodies
    assert all(body["tokens"] == 300 and not body["cached"] for body in bodies)
    assert engine.peak_rows >= 2


async def test_8bit_models_batch_too(make_batched: MakeBatched) -> None:
    from bitsandbytes.nn.modules import Linear8bitLt

    engine = make_batched(float64=False, ids=True, load_in_8bit=True)
    assert isinstance(engine.model.model.layers[0].mlp.gate_proj, Linear8bitLt)
    options = GenerationOptions(max_new_tokens=20, temperature=0.0, repetition_penalty=3.0)
    prompts = [ChatPrompt.user(build_prompt(f"Hello number {n}", "en", "de")) for n in range(4)]
    results = await asyncio.gather(*(read(engine.generate(prompt, options)) for prompt in prompts))
    assert engine.peak_rows == 4
    assert all(tokens == 20 and text.count("<") == 20 for text, tokens in results)
    assert len({text for text, _ in results}) == 4
