"""The page behind real nginx configurations, in a real Chromium: the plainest one (Host rewritten, no upgrades,
buffering), README's snippet, and auth on behind the plainest one; the page's Content-Security-Policy; and a
token that expires under a running translation.

`hmt.test` resolves to 127.0.0.1 in this browser: a plain-http host that is not localhost, where browsers send no
Sec-Fetch-Site, as on an intranet server. Through 127.0.0.1 itself they do send it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from hmt_stream.keys import TRANSLATOR
from hmt_stream.scheduler import Ticket
from tests.nginx import PLAIN, Nginx, readme_snippet

from .conftest import CHROMIUM, CHROMIUM_ARGS, Pages, Serve
from .helpers import csp_violations, output, session_id, status, text, translate, transport, wait_finished, watch_csp
from .server import LiveServer
from .test_transports import finished_like_the_server

pytestmark = pytest.mark.slow

MAPPED = "hmt.test"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """This module's Chromium, with hmt.test mapped to 127.0.0.1."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {MAPPED} 127.0.0.1"])
        yield browser
        browser.close()


@pytest.mark.parametrize("host", ["127.0.0.1", MAPPED])
def test_the_page_translates_behind_the_plainest_proxy(serve: Serve, pages: Pages, tmp_path: Path, host: str) -> None:
    server = serve()
    with Nginx(tmp_path, server.port, servers=PLAIN) as proxy:
        page = pages.open(f"http://{host}:{proxy.port}/")
        assert transport(page) == "sse"  # nginx drops the upgrade; the page steps down
        translate(page, "Behind a plain proxy.", "en", "de")
        finished_like_the_server(page, server)
    assert pages.errors == []


def test_the_page_uses_websockets_behind_the_readme_proxy(serve: Serve, pages: Pages, tmp_path: Path) -> None:
    server = serve(server__allowed_hosts=(MAPPED,), server__trusted_proxies=("127.0.0.1",))
    with Nginx(tmp_path, server.port, servers=readme_snippet()) as proxy:
        page = pages.open(f"http://{MAPPED}:{proxy.port}/")
        assert transport(page) == "websocket"
        translate(page, "Behind the documented proxy.", "en", "fr")
        finished_like_the_server(page, server)
    assert pages.errors == []


def test_with_auth_on_the_page_shows_what_to_change_behind_the_plainest_proxy(serve: Serve, pages: Pages,
                                                                              tmp_path: Path, shot) -> None:
    server = serve(auth__enabled=True, auth__api_keys=("e2e-key-0123456789",))
    with Nginx(tmp_path, server.port, servers=PLAIN) as proxy:
        page = pages.open(f"http://{MAPPED}:{proxy.port}/")
        assert status(page) == "error"
        advice = text(page, "#status-text")
        shot(page, "origin-advice")
    assert f'auth.allowed_origins = ["http://{MAPPED}:{proxy.port}"]' in advice
    assert "proxy_set_header Host $http_host;" in advice


def test_the_content_security_policy_holds_and_the_page_works_under_it(serve: Serve, pages: Pages) -> None:
    server = serve()
    page = pages.open(server.url, setup=watch_csp)
    translate(page, "Under a strict policy.", "en", "es")
    finished_like_the_server(page, server)
    page.click("#copy")
    assert csp_violations(page) == []
    # The policy is really on: an injected inline script does not run.
    page.evaluate("""() => { const s = document.createElement('script');
        s.textContent = 'window.__injected = true'; document.body.append(s); }""")
    page.wait_for_function("() => window.__violations.length > 0")
    assert page.evaluate("window.__injected === undefined")
    assert any(v.startswith("script-src") for v in csp_violations(page))


def test_a_token_that_expires_mid_translation_is_renewed_and_the_translation_resumes(serve: Serve,
                                                                                    pages: Pages) -> None:
    server = serve(auth__enabled=True, auth__api_keys=("e2e-key-0123456789",), auth__token_ttl_s=3,
                   scheduler__max_concurrent=1)
    page = pages.open(server.url)
    page.fill("#api-key", "e2e-key-0123456789")
    page.click("#signin button[type=submit]")
    page.wait_for_function("() => document.getElementById('transport').dataset.transport === 'websocket'")
    page.evaluate("""() => { const el = document.getElementById('status-text'); window.__statuses = [];
        new MutationObserver(() => window.__statuses.push(el.textContent))
            .observe(el, {childList: true, characterData: true, subtree: true}); }""")
    # The only generation slot is taken, as by another user's long translation: this one waits in line while its
    # socket's token expires.
    slot = server.call(hold_the_slot(server))
    translate(page, "Wait for me.", "en", "de")
    session = session_id(page)
    page.wait_for_function("() => window.__statuses.includes('Signing in again to resume…')", timeout=30_000)
    server.call(release(slot))
    assert wait_finished(page) == "done"
    found = server.app[TRANSLATOR].store.get(session)  # (auth is on: the store, not GET /api/sessions)
    assert found is not None
    log = found.log
    assert log[-1].type == "done" and output(page) == log[-1].data["text"] != ""
    assert page.evaluate("window.hmt.translation.seqs") == [event.seq for event in log]
    assert page.evaluate("window.hmt.translation.transport") == "websocket"
    assert not page.is_visible("#signin")
    assert pages.errors == []


async def hold_the_slot(server: LiveServer) -> Ticket:
    return server.app[TRANSLATOR].scheduler.admit(lambda position: None)


async def release(ticket: Ticket) -> None:
    ticket.release()
