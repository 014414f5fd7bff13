"""Backends for the remote engine's tests: real hmt-stream apps serving the OpenAI API on loopback ports.

Most run the real engine on the demo model. Fault injection uses the ScriptedEngine (not a model) or a
tiny app that answers 500, named as such where a test uses them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hmt_stream.app import create_app
from hmt_stream.engine import Engine
from hmt_stream.engine.remote import RemoteEngine
from hmt_stream.engine.transformers import LocalEngine
from hmt_stream.keys import ENGINE, TRANSLATOR
from hmt_stream.translator import Translator
from hmt_stream.transports.guard import Handler
from tests.conftest import make_settings


@dataclass
class Backend:
    """One backend server: its URL (the /v1 base), its app and the chat bodies it received."""

    server: TestServer
    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def translator(self) -> Translator:
        app = self.server.app
        assert app is not None
        return app[TRANSLATOR]


MakeBackend = Callable[..., Awaitable[Backend]]
MakeGateway = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def backend(aiohttp_server: Any, demo_dir: Path, engine: LocalEngine) -> MakeBackend:
    """backend(engine=None, port=None, **overrides): an hmt-stream serving the OpenAI API; the demo model unless
    another engine is given."""
    async def start(engine_: Engine | None = None, port: int | None = None, **overrides: Any) -> Backend:
        settings = make_settings(demo_dir, **{"limits__rate": "1000000/minute", **overrides})
        app = create_app(settings, engine=engine_ or engine)
        backend = Backend(server=None)  # type: ignore[arg-type]

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path == "/v1/chat/completions":
                backend.bodies.append(await request.json())
            return await handler(request)

        app.middlewares.insert(0, record)
        backend.server = await aiohttp_server(app, port=port)
        backend.url = str(backend.server.make_url("/v1"))
        return backend
    return start


@pytest.fixture
def gateway(aiohttp_client: Any, demo_dir: Path) -> MakeGateway:
    """gateway(urls, **overrides): hmt-stream with remote.endpoints = urls, the demo model's tokenizer, and
    health checks rare enough (60 s) not to interfere unless a test asks for them."""
    async def start(urls: list[str], **overrides: Any) -> TestClient[Any, Any]:
        settings = make_settings(demo_dir, **{"remote__endpoints": tuple(urls), "remote__health_interval_s": 60.0,
                                              "remote__timeout_s": 5.0, **overrides})
        client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
        return client
    return start


def remote_engine(client: TestClient[Any, Any]) -> RemoteEngine:
    app = client.app
    assert app is not None
    engine = app[ENGINE]
    assert isinstance(engine, RemoteEngine)
    return engine


async def faulty_server(aiohttp_server: Any, status: int = 500) -> TestServer:
    """Fault injection, not hmt-stream: healthy to /health, but every chat completion answers `status`."""
    async def fail(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "scripted server fault", "type": "server_error"}},
                                 status=status)

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", healthy)
    app.router.add_post("/v1/chat/completions", fail)
    server: TestServer = await aiohttp_server(app)
    return server
