"""Shared fixtures: the demo checkpoint (built once per run) and the real engine over it: the one the default
settings pick (model.batching: BatchedEngine), or TransformersEngine with `pytest --engine threads`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from hmt_stream import config
from hmt_stream.app import build_translator, create_app
from hmt_stream.engine.batched import BatchedEngine
from hmt_stream.engine.demo import build_demo_model
from hmt_stream.engine.transformers import LocalEngine, TransformersEngine
from hmt_stream.translator import Translator

MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_model(tmp_path_factory.mktemp("demo") / "model")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--engine", choices=("batched", "threads"), default=None,
                     help="the engine of the shared `engine` fixture: batched (BatchedEngine) or threads "
                          "(TransformersEngine); default: what model.batching's default picks")


@pytest.fixture(scope="session")
def engine(demo_dir: Path, pytestconfig: pytest.Config) -> Iterator[LocalEngine]:
    kind = pytestconfig.getoption("engine") or ("batched" if config.Settings().model.batching else "threads")
    engine: LocalEngine
    if kind == "batched":
        engine = BatchedEngine.load(str(demo_dir), model_id="demo", demo=True, device="cpu")
    else:
        engine = TransformersEngine.load(str(demo_dir), model_id="demo", demo=True, device="cpu", workers=4)
    yield engine
    asyncio.run(engine.close())


# Many tests are one client (127.0.0.1) with many sessions, sockets and messages at once.
NO_CLIENT_CAPS = {"limits.refusal_rate": "100000/minute", "auth.failure_rate": "100000/minute",
                  "scheduler.max_per_client": 0, "limits.max_websockets_per_client": 100000,
                  "limits.max_readers_per_client": 100000, "limits.max_follows_per_socket": 100000,
                  "limits.ws_messages_per_s": 100000.0}


def make_settings(demo_dir: Path, **overrides: Any) -> config.Settings:
    """Settings for tests: the demo model, no warm-up, no practical rate limit or per-client cap (tests of the
    limits set their own), plus overrides as section__key=value."""
    base = {"model.name": "demo", "model.demo_dir": str(demo_dir), "model.warmup": False,
            "generation.max_new_tokens": 40, "limits.rate": "100000/minute", **NO_CLIENT_CAPS}
    return config.Settings().replace({**base, **{k.replace("__", "."): v for k, v in overrides.items()}})


@pytest.fixture
def settings(demo_dir: Path) -> config.Settings:
    return make_settings(demo_dir)


@pytest.fixture
def make_client(aiohttp_client: Any, demo_dir: Path, engine: LocalEngine) -> MakeClient:
    async def make(**overrides: Any) -> TestClient[Any, Any]:
        app = create_app(make_settings(demo_dir, **overrides), engine=engine)
        client: TestClient[Any, Any] = await aiohttp_client(app)
        assert client.server.port is not None
        return client
    return make


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    return await make_client()


@pytest.fixture
async def translator(settings: config.Settings, engine: LocalEngine) -> AsyncIterator[Translator]:
    translator = build_translator(settings, engine)
    yield translator
    await translator.close()
