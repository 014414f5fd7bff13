import json
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from hmt_stream.accesslog import AccessLogger
from hmt_stream.app import create_app
from hmt_stream.engine.transformers import LocalEngine

from .conftest import make_settings


async def test_one_json_line_per_request_without_secrets_or_text(aiohttp_client: Any, demo_dir: Any,
                                                                  engine: LocalEngine,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(demo_dir, auth__enabled=True, auth__api_keys=("very-secret-key-0123",))
    server = TestServer(create_app(settings, engine=engine))
    await server.start_server(access_log_class=AccessLogger)
    client = await aiohttp_client(server)
    caplog.set_level(logging.INFO, logger="hmt_stream.access")
    headers = {"Authorization": "Bearer very-secret-key-0123"}
    token = (await (await client.post("/api/token", headers=headers)).json())["token"]
    created = await client.post(f"/api/sessions?access_token={token}",
                                json={"text": "Confidential words", "source": "en", "target": "fr"})
    session = (await created.json())["session"]
    await client.get(f"/api/sessions/{session}/events?after=0&timeout=1&access_token={token}")
    lines = [r.getMessage() for r in caplog.records if r.name == "hmt_stream.access"]
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    assert records[1]["method"] == "POST" and records[1]["path"] == "/api/sessions"
    assert records[1]["status"] == 201 and records[1]["principal"].startswith("key:")
    assert records[2]["query"] == {"after": "0", "timeout": "1"} and records[2]["transport"] == "poll"
    everything = "\n".join(lines)
    for secret in ("very-secret-key-0123", token, "Confidential"):
        assert secret not in everything
