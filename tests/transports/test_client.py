"""The Python client (and `python -m hmt_stream translate`) against the real app."""

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hmt_stream.client import NAMES, ServerError, StreamClient

from ..nginx import Nginx
from ..test_metrics import samples
from .conftest import LONG, MakeClient, translator_of


def base_url(client: Any) -> str:
    return str(client.make_url("")).rstrip("/")


@pytest.mark.parametrize("transport", ["ws", "sse", "poll"])
async def test_each_transport_delivers_the_session_log(make_client: MakeClient, transport: str) -> None:
    client = await make_client()
    events: list[dict[str, Any]] = []
    tries: list[tuple[str, str]] = []
    async with aiohttp.ClientSession(base_url(client)) as http:
        stream = StreamClient(http, transport=transport, on_event=events.append,
                              on_transport=lambda name, why: tries.append((name, why)))
        terminal = await stream.translate("Client side", "en", "es")
    assert tries == [(NAMES[transport], "trying")]  # one connection did it: no retry hid a failure
    session = translator_of(client).store.get(terminal["session"])
    assert session is not None
    assert [{k: v for k, v in e.items() if k != "ref"} for e in events] == [e.as_dict() for e in session.log]


@pytest.mark.parametrize("first,then", [("websocket", "sse"), ("sse", "poll")])
async def test_a_dropped_connection_resumes_the_same_session_on_the_next_transport(make_client: MakeClient,
                                                                                  first: str, then: str) -> None:
    client = await make_client(transports__websocket=first == "websocket", **LONG)
    events: list[dict[str, Any]] = []
    switches: list[tuple[str, str]] = []
    async with aiohttp.ClientSession(base_url(client)) as http:
        stream = StreamClient(http, on_transport=lambda name, why: switches.append((name, why)))

        def on_event(event: dict[str, Any]) -> None:
            events.append(event)
            if len(events) == 5:
                stream.drop()

        stream.on_event = on_event
        terminal = await stream.translate("Hello there, how are you?", "en", "fr")
    session = translator_of(client).store.get(terminal["session"])
    assert session is not None and session.state == "done"
    assert [{k: v for k, v in e.items() if k != "ref"} for e in events] == [e.as_dict() for e in session.log]
    # One drop, one step down, and nothing more: the next transport finished the session without a retry.
    assert switches == [(first, "trying"), (first, switches[1][1]), (then, "trying")]
    assert switches[1][1].startswith("failed")


async def test_server_errors_are_not_retried(client: Any) -> None:
    async with aiohttp.ClientSession(base_url(client)) as http:
        with pytest.raises(ServerError, match="unsupported_language"):
            await StreamClient(http, transport="sse").translate("x", "en", "xx")


async def test_the_command_steps_down_to_sse_behind_a_proxy_without_websocket(make_client: MakeClient,
                                                                              tmp_path: Path) -> None:
    client = await make_client()
    assert client.server.port is not None
    with Nginx(tmp_path, client.server.port) as proxy:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hmt_stream", "translate", "--to", "de", "--server", proxy.url, "-v",
            "Through the proxy", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    report = stderr.decode()
    assert "[websocket: failed" in report and "[sse: trying]" in report
    assert "demo model" in report
    session = next(iter(translator_of(client).store.all()))
    assert stdout.decode() == session.text + "\n"


@pytest.mark.parametrize("transport", ["sse", "poll"])
async def test_the_command_uses_only_the_transport_it_is_given(make_client: MakeClient, transport: str) -> None:
    client = await make_client()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hmt_stream", "translate", "--to", "de", "--server", base_url(client), "-v",
        "--transport", transport, "One way only", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    assert [line for line in stderr.decode().splitlines() if line.endswith(": trying]")] == [f"[{transport}: trying]"]
    session = next(iter(translator_of(client).store.all()))
    assert stdout.decode() == session.text + "\n"
    requests = samples(await (await client.get("/metrics")).text())
    assert ("hmt_requests_total", (("transport", "websocket"),)) not in requests
    assert requests[("hmt_requests_total", (("transport", transport),))] >= 1


async def test_the_command_refuses_a_transport_the_server_does_not_offer(make_client: MakeClient) -> None:
    client = await make_client(transports__websocket=False)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hmt_stream", "translate", "--to", "de", "--server", base_url(client),
        "--transport", "ws", "Not this way", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 1 and stdout == b""
    assert stderr.decode().strip().splitlines()[-1] == "hmt-stream: bad_request: the server does not offer websocket"
    assert len(translator_of(client).store) == 0
