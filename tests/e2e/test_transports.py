"""The page negotiates WebSocket → SSE → long-poll, and resumes a session on another transport without loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, WebSocketRoute

from tests.nginx import Nginx

from .conftest import LONG, Pages, Serve
from .helpers import (
    output,
    record_output_lengths,
    recorded_lengths,
    session_id,
    translate,
    transport,
    wait_finished,
    wait_output,
)

pytestmark = pytest.mark.slow


def finished_like_the_server(page, server) -> dict[str, Any]:
    """The page's output is exactly the session's text on the server, and it saw every seq once, in order."""
    assert wait_finished(page) == "done"
    session = server.get_json(f"/api/sessions/{session_id(page)}")
    assert session["state"] == "done"
    assert output(page) == session["text"] != ""
    assert page.evaluate("window.hmt.translation.seqs") == list(range(1, session["seq"] + 1))
    return dict(session)


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"transports__websocket": False}, "sse"),
    ({"transports__websocket": False, "transports__sse": False}, "poll"),
])
def test_switched_off_transports_are_skipped(serve: Serve, pages: Pages, overrides, expected) -> None:
    server = serve(**overrides)
    page = pages.open(server.url)
    assert transport(page) == expected
    translate(page, "Which way does this go?", "en", "es")
    finished_like_the_server(page, server)
    assert page.evaluate("window.hmt.translation.transport") == expected
    assert pages.errors == []


def test_a_websocket_that_opens_but_stays_silent_counts_as_failed(serve: Serve, pages: Pages) -> None:
    server = serve(silent_websocket=True)
    page = pages.open(server.url)
    assert transport(page) == "sse"
    translate(page, "Say something.", "en", "it")
    finished_like_the_server(page, server)
    assert pages.errors == []


def test_a_websocket_that_goes_silent_mid_translation_is_given_up(serve: Serve, pages: Pages) -> None:
    # Playwright sits on the page's WebSocket and, once told to, stops passing the server's frames: the socket
    # stays open, but neither events nor heartbeats arrive. After 2 × heartbeat_s the page gives up on it.
    server = serve(transports__heartbeat_s=1.0, **LONG)
    frozen: list[bool] = []

    def hold_frames(page: Page) -> None:
        def route(ws: WebSocketRoute) -> None:
            upstream = ws.connect_to_server()
            upstream.on_message(lambda message: None if frozen else ws.send(message))
        page.route_web_socket("**/ws", route)

    page = pages.open(server.url, setup=hold_frames)
    assert transport(page) == "websocket"
    translate(page, "Hold on to this.", "en", "ko")
    wait_output(page, 30)
    session = session_id(page)
    frozen.append(True)
    done = finished_like_the_server(page, server)
    assert session_id(page) == session == done["session"]
    assert page.evaluate("window.hmt.translation.transport") == "sse"
    assert pages.errors == []


def test_the_tab_remembers_failures_and_retries_a_better_transport_later(serve: Serve, pages: Pages) -> None:
    server = serve()
    page = pages.open(server.url)
    assert transport(page) == "websocket"
    # WebSocket failed a moment ago in this tab: a reload starts below it, without trying it again.
    page.evaluate("""sessionStorage.setItem('hmt-stream.transports',
                     JSON.stringify({failedAt: {websocket: Date.now()}}))""")
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    assert transport(page) == "sse"
    translate(page, "Remember me.", "en", "pt")
    finished_like_the_server(page, server)
    # Long enough ago: the better transport gets another chance.
    page.evaluate("""sessionStorage.setItem('hmt-stream.transports',
                     JSON.stringify({failedAt: {websocket: Date.now() - 10 * 60 * 1000}}))""")
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    assert transport(page) == "websocket"
    assert pages.errors == []


# nginx 1.22 with `proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;` (tests/nginx.py's buffer_sse) still
# hands each chunk of a stream to a fast client as soon as it has read it: SSE gets through. What really holds a
# stream back is a proxy that compresses it (compress_sse): gzip keeps the events until its buffer fills or the
# response ends. That is the proxy that must push the page down to long-poll.


@pytest.mark.parametrize(("gzip", "expected"), [(False, "sse"), (True, "poll")], ids=["proxy-buffering", "gzip"])
def test_behind_a_buffering_proxy_the_page_still_streams(serve: Serve, pages: Pages, tmp_path: Path, gzip: bool,
                                                         expected: str) -> None:
    server = serve(**LONG)
    with Nginx(tmp_path, server.port, websocket=False, buffer_sse=True, compress_sse=gzip) as proxy:
        page = pages.open(proxy.url)
        # The upgrade is refused (no Upgrade headers pass); whether SSE stays depends on the probe's hello.
        assert transport(page) == expected
        record_output_lengths(page)
        translate(page, "Through the proxy, please.", "en", "fr")
        finished_like_the_server(page, server)
        lengths = recorded_lengths(page)
        distinct = sorted(set(lengths) - {0})
        print(f"behind nginx ({'gzip' if gzip else 'proxy_buffering'}): output grew in {len(distinct)} distinct "
              f"steps to {len(output(page))} characters over {expected}")
        assert len(distinct) >= 3, lengths
        assert page.evaluate("window.hmt.translation.transport") == expected
        memory = page.evaluate("JSON.parse(sessionStorage.getItem('hmt-stream.transports'))")
        assert memory["working"] == expected
        assert set(memory["failedAt"]) == {"websocket", "sse"} - {expected}
    assert pages.errors == []


def test_websocket_killed_mid_translation_resumes_the_same_session(serve: Serve, pages: Pages) -> None:
    server = serve(**LONG)
    page = pages.open(server.url)
    assert transport(page) == "websocket"
    translate(page, "Do not lose a single word.", "en", "fr")
    wait_output(page, 30)
    session = session_id(page)
    assert server.kill_websockets() == 1
    done = finished_like_the_server(page, server)
    # The same session, finished over the next transport.
    assert session_id(page) == session == done["session"]
    assert page.evaluate("window.hmt.translation.transport") == "sse"
    assert transport(page) == "sse"
    assert pages.errors == []
