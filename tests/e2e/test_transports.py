"""The page negotiates WebSocket → SSE → long-poll, and resumes a session on another transport without loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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


# nginx 1.22 with `proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;` (tests/nginx.py's buffer_sse) still
# hands each chunk of a stream to a fast client as soon as it has read it: SSE gets through, late but whole. What
# really holds a stream back is a proxy that compresses it: gzip keeps the events until its buffer fills or the
# response ends. That is the proxy that must push the page down to long-poll.
_GZIP_SSE = "proxy_ignore_headers X-Accel-Buffering;\n            gzip on; gzip_types text/event-stream;"


@pytest.mark.parametrize(("gzip", "expected"), [(False, "sse"), (True, "poll")], ids=["proxy-buffering", "gzip"])
def test_behind_a_buffering_proxy_the_page_still_streams(serve: Serve, pages: Pages, tmp_path: Path, gzip: bool,
                                                         expected: str) -> None:
    server = serve(**LONG)
    proxy = Nginx(tmp_path, server.port, websocket=False, buffer_sse=True)
    if gzip and "gzip on" not in proxy.conf.read_text():
        proxy.conf.write_text(proxy.conf.read_text().replace("proxy_ignore_headers X-Accel-Buffering;", _GZIP_SSE))
    with proxy:
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
